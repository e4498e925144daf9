// SPIFFE IDs (core/spiffe_id.cpp), the one parser behind policies, rules, peers' SVIDs and
// the CLI: never crashes, and what it accepts is canonical (str() parses back to itself)
// and within the rules it promises.
#include "core/spiffe_id.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    auto id = core::parse_spiffe_id(text);
    if (id) {
        std::string s = id->str();
        if (s.size() > core::kSpiffeIdMaxBytes) fuzz::fail("accepted an ID over the size limit", s);
        if (!core::validate_trust_domain(id->trust_domain)) fuzz::fail("accepted an invalid trust domain", s);
        if (!id->path.empty() && (id->path.front() != '/' || id->path.back() == '/'))
            fuzz::fail("accepted a path that is not /seg[/seg...]", s);
        auto again = core::parse_spiffe_id(s);
        if (!again || again->str() != s) fuzz::fail("str() of an accepted ID does not parse back", s);
    } else if (id.message().empty()) {
        fuzz::fail("refused without a reason", text);
    }
    auto td = core::validate_trust_domain(text);
    if (td) {
        std::string whole = std::string(core::kSpiffeScheme) + std::string(text);
        if (whole.size() <= core::kSpiffeIdMaxBytes) {
            auto as_id = core::parse_spiffe_id(whole);
            if (!as_id || as_id->trust_domain != text || !as_id->path.empty())
                fuzz::fail("a valid trust domain is not a valid ID without a path", text);
        }
    }
    return 0;
}
