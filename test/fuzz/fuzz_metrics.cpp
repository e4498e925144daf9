// What the metrics endpoint reads from any peer that can reach it (core/metrics.cpp): the
// request line, and the listen address of the command line. Never crashes; a request
// accepted has an upper-case method and a target of printable ASCII starting with '/'; a
// refusal says why. A label value, whatever its bytes, stays one sample line.
#include "core/metrics.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    auto r = core::metrics::parse_http_head(text);
    if (r) {
        if (r->method.empty() || r->target.empty() || r->target[0] != '/')
            fuzz::fail("parse_http_head accepted an empty method or a relative target", text);
        for (char c : r->method)
            if (c < 'A' || c > 'Z') fuzz::fail("parse_http_head accepted a method that is not upper-case", text);
        for (char c : r->target)
            if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
                fuzz::fail("parse_http_head accepted a target with a control, space or non-ASCII byte", text);
    } else if (r.message().empty()) {
        fuzz::fail("parse_http_head refused without a reason", text);
    }
    auto a = core::metrics::parse_listen_address(text);
    if (a && !a->none() && a->port == 0) fuzz::fail("parse_listen_address accepted port 0", text);
    if (!a && a.message().empty()) fuzz::fail("parse_listen_address refused without a reason", text);

    core::metrics::Exposition out;
    out.sample("kwarden_fuzz", {{"identity", std::string(text)}}, 1);
    const std::string& line = out.text();
    if (line.find('\n') != line.size() - 1) fuzz::fail("a label value made more than one sample line", text);
    return 0;
}
