// What /proc tells about a running process's condition at attestation from /proc, parsed
// from the files' text: the same facts the kernel checks at exec (bpf/kw_attest.bpf.c),
// read after the fact. Reading the files is agent/bpf/proc_attest.cpp's job; parsing them
// here keeps it unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kw::core {

// KW_EXEC_LD_* bits of the loader variables ENV sets: entries (NUL-separated, as in
// /proc/PID/environ) that start with "LD_PRELOAD=", "LD_AUDIT=" or "LD_LIBRARY_PATH=",
// an empty value included, as the kernel counts them.
uint32_t loader_env_bits(std::string_view env);

// Whether the readlink() text of /proc/PID/exe names no file on disk: a memfd
// ("/memfd:NAME (deleted)"), an O_TMPFILE file or a deleted one (" (deleted)" appended).
bool is_anonymous_exe(std::string_view exe_link);

// TracerPid of /proc/PID/status text (0: not traced); nullopt when the line is missing
// or malformed.
std::optional<uint32_t> tracer_pid(std::string_view status);

}  // namespace kw::core
