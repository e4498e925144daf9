// The /proc parsers of attestation from /proc (core/proc_facts.cpp): a process's
// environ, exe link and status are written by the process itself. Never crash; the
// loader bits are exactly those the kernel would count.
#include "core/proc_facts.h"

#include "abi.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    uint32_t bits = core::loader_env_bits(text);
    if (bits & ~uint32_t{KW_EXEC_LD_PRELOAD | KW_EXEC_LD_AUDIT | KW_EXEC_LD_LIBRARY_PATH})
        fuzz::fail("loader_env_bits set a bit that is no loader variable");
    // Each bit must come from an entry that starts with NAME=.
    for (const auto& l : core::kLoaderVars) {
        bool present = false;
        std::string_view env = text;
        while (true) {
            size_t end = env.find('\0');
            std::string_view entry = env.substr(0, end);
            present |= entry.size() > l.name.size() && entry.starts_with(l.name) && entry[l.name.size()] == '=';
            if (end == std::string_view::npos) break;
            env.remove_prefix(end + 1);
        }
        if (present != static_cast<bool>(bits & l.var)) fuzz::fail("loader_env_bits disagrees on", l.name);
    }
    (void)core::is_anonymous_exe(text);
    if (auto pid = core::tracer_pid(text); pid && text.find("TracerPid:") == std::string_view::npos)
        fuzz::fail("tracer_pid found a TracerPid in text without one");
    return 0;
}
