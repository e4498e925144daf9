// The /proc parsers of attestation from /proc (core/proc_facts.cpp): a process's
// environ, exe link and status are written by the process itself. Never crash; the
// code-loading bits are exactly those the kernel would count.
#include "core/proc_facts.h"

#include "abi.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    uint32_t bits = core::code_env_bits(text);
    uint32_t known = 0;
    for (const auto& v : core::kCodeEnvVars) known |= v.var;
    if (bits & ~known) fuzz::fail("code_env_bits set a bit that is no code-loading variable");
    // Each bit must come from an entry that starts with NAME= (a family: with its prefix).
    for (const auto& v : core::kCodeEnvVars) {
        const bool family = v.name.ends_with('*');
        const std::string_view prefix = family ? v.name.substr(0, v.name.size() - 1) : v.name;
        bool present = false;
        std::string_view env = text;
        while (true) {
            size_t end = env.find('\0');
            std::string_view entry = env.substr(0, end);
            present |= entry.starts_with(prefix) && (family || (entry.size() > prefix.size() && entry[prefix.size()] == '='));
            if (end == std::string_view::npos) break;
            env.remove_prefix(end + 1);
        }
        if ((family ? !present && (bits & v.var) : present != static_cast<bool>(bits & v.var)))
            fuzz::fail("code_env_bits disagrees on", v.name);
    }
    (void)core::is_anonymous_exe(text);
    if (auto pid = core::tracer_pid(text); pid && text.find("TracerPid:") == std::string_view::npos)
        fuzz::fail("tracer_pid found a TracerPid in text without one");
    return 0;
}
