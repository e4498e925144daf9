// Parsers of /proc text for attestation from /proc (see proc_facts.h).
#include "core/proc_facts.h"

#include <charconv>

#include "core/policy.h"

namespace kw::core {

uint32_t code_env_var(std::string_view e) {
    auto is = [&](std::string_view p) { return e.starts_with(p); };
    if (e.empty()) return 0;
    // The same order of tests as the kernel's switch on the first byte.
    switch (e[0]) {
    case 'L':
        if (!is("LD_")) return 0;
        if (is("LD_PRELOAD=")) return kLdPreload;
        if (is("LD_AUDIT=")) return kLdAudit;
        if (is("LD_LIBRARY_PATH=")) return kLdLibraryPath;
        return kLdOther;
    case 'G':
        if (is("GLIBC_TUNABLES=")) return kGlibcTunables;
        if (is("GCONV_PATH=")) return kGconvPath;
        return 0;
    case 'O': return is("OPENSSL_") ? uint32_t{kOpenssl} : 0u;
    case 'B':
        if (is("BASH_ENV=")) return kBashEnv;
        if (is("BASH_FUNC_")) return kBashFunc;
        if (is("BASHOPTS=")) return kBashopts;
        return 0;
    case 'E': return is("ENV=") ? uint32_t{kShEnv} : 0u;
    case 'S': return is("SHELLOPTS=") ? uint32_t{kShellopts} : 0u;
    case 'P':
        if (is("PS4=")) return kPs4;
        if (is("PERL")) return kPerl;
        if (!is("PYTHON")) return 0;
        if (is("PYTHONUNBUFFERED=") || is("PYTHONDONTWRITEBYTECODE=") || is("PYTHONIOENCODING=")) return 0;
        return kPython;
    case 'N': return is("NODE_") && !is("NODE_ENV=") ? uint32_t{kNode} : 0u;
    case 'R':
        if (is("RUBYOPT=")) return kRubyopt;
        if (is("RUBYLIB=")) return kRubylib;
        return 0;
    case 'J':
        if (is("JAVA_TOOL_OPTIONS=")) return kJavaToolOptions;
        if (is("JDK_JAVA_OPTIONS=")) return kJdkJavaOptions;
        return 0;
    case '_': return is("_JAVA_OPTIONS=") ? uint32_t{kJavaOptions} : 0u;
    case 'C': return is("CLASSPATH=") ? uint32_t{kClasspath} : 0u;
    }
    return 0;
}

uint32_t code_env_bits(std::string_view env) {
    uint32_t bits = 0;
    while (!env.empty()) {
        size_t end = env.find('\0');
        bits |= code_env_var(env.substr(0, end));
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
