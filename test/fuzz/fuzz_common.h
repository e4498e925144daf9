// What the libFuzzer harnesses share: a host without a disk for policy compilation, the
// reply serialisation of the agent's sockets, and the trust anchors the seed corpora were
// issued by. Harnesses abort on a broken invariant, so libFuzzer keeps the input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/compile.h"
#include "core/sha256.h"

namespace kw::fuzz {

[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "fuzz invariant broken: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Every file the policy names exists, with a hash derived from its path (a policy that
// pins another hash gets a warning, as on a real host), except paths containing
// "unreadable"; every cgroup exists except paths containing "missing". Deterministic, so
// that a crash reproduces.
class FakeHostView : public core::HostView {
public:
    Result<core::PinnedContent> pin_file(const std::string& path) override {
        if (path.find("unreadable") != std::string::npos)
            return make_error("cannot open '" + path + "' to pin it: Permission denied");
        core::PinnedContent c;
        c.sha256 = core::sha256_hex(path);
        c.key = kw_file_key{0x800001, std::strtoull(c.sha256.substr(0, 12).c_str(), nullptr, 16)};
        c.ctime_sec = 1000;
        return c;
    }
    std::optional<core::CgroupRef> resolve_cgroup(const std::string& path) override {
        if (path.find("missing") != std::string::npos) return std::nullopt;
        uint32_t level = 0;
        for (char ch : path) level += ch == '/';
        return core::CgroupRef{std::strtoull(core::sha256_hex(path).substr(0, 12).c_str(), nullptr, 16), level};
    }
};

// A reply or event line as the agent writes it. Replies carry text that came from a peer
// (error messages quote what they refuse), which need not be valid UTF-8 even when the
// request was: nlohmann's strict dump() throws on it and, outside the handler's try,
// takes the agent down. The fix serialises with
// error_handler_t::replace; so does this, after noting that strict would have thrown.
// KW_FUZZ_STRICT_UTF8=1 aborts there instead, to find such inputs; =count only says so
// on stderr (for a run over a whole corpus).
inline std::string dump_reply(const nlohmann::json& reply) {
    static const char* strict = std::getenv("KW_FUZZ_STRICT_UTF8");
    try {
        return reply.dump();
    } catch (const nlohmann::json::type_error& e) {
        if (strict && std::string_view(strict) == "count")
            std::fprintf(stderr, "strict dump() of a reply threw: %s: %.200s\n", e.what(),
                         reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        else if (strict)
            fail("strict dump() of a reply threw", e.what());
    }
    std::string line = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    // What the replacement writes must read back: the client parses every line.
    if (!nlohmann::json::accept(line)) fail("a replaced reply is not JSON", line);
    return line;
}

}  // namespace kw::fuzz
