// Parsers of /proc text for attestation from /proc (see proc_facts.h).
#include "core/proc_facts.h"

#include <charconv>

#include "core/policy.h"

namespace kw::core {

uint32_t loader_env_bits(std::string_view env) {
    uint32_t bits = 0;
    while (!env.empty()) {
        size_t end = env.find('\0');
        std::string_view entry = env.substr(0, end);
        for (const LoaderVarName& l : kLoaderVars)
            if (entry.size() > l.name.size() && entry.starts_with(l.name) && entry[l.name.size()] == '=')
                bits |= l.var;  // LoaderVar values are the KW_EXEC_LD_* bits
        if (end == std::string_view::npos) break;
        env.remove_prefix(end + 1);
    }
    return bits;
}

bool is_anonymous_exe(std::string_view exe_link) {
    return exe_link.starts_with("/memfd:") || exe_link.ends_with(" (deleted)");
}

std::optional<uint32_t> tracer_pid(std::string_view status) {
    constexpr std::string_view kKey = "TracerPid:";
    size_t pos = 0;
    while (pos < status.size()) {
        size_t end = status.find('\n', pos);
        if (end == std::string_view::npos) end = status.size();
        std::string_view line = status.substr(pos, end - pos);
        pos = end + 1;
        if (!line.starts_with(kKey)) continue;
        line.remove_prefix(kKey.size());
        while (!line.empty() && (line.front() == '\t' || line.front() == ' ')) line.remove_prefix(1);
        uint32_t pid = 0;
        auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
        if (ec != std::errc{} || ptr != line.data() + line.size()) return std::nullopt;
        return pid;
    }
    return std::nullopt;
}

}  // namespace kw::core
