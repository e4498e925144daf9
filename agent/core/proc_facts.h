// What /proc tells about a running process's condition at attestation from /proc, parsed
// from the files' text: the same facts the kernel checks at exec (bpf/kw_attest.bpf.c),
// read after the fact. Reading the files is agent/bpf/proc_attest.cpp's job; parsing them
// here keeps it unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kw::core {

// The code-loading variable (CodeEnvVar bit, 0 none) one environment entry "NAME=value"
// sets: the kernel's kw_env_var_of() (bpf/kw_attest.bpf.c), decided on the name alone,
// an empty value included. Exact names need their '='; a family ("PYTHON*") matches its
// prefix, except the few that name no code (PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE,
// PYTHONIOENCODING, NODE_ENV).
uint32_t code_env_var(std::string_view entry);

// CodeEnvVar bits of all the entries of ENV (NUL-separated, as in /proc/PID/environ).
uint32_t code_env_bits(std::string_view env);

// Whether the readlink() text of /proc/PID/exe names no file on disk: a memfd
// ("/memfd:NAME (deleted)"), an O_TMPFILE file or a deleted one (" (deleted)" appended).
bool is_anonymous_exe(std::string_view exe_link);

// TracerPid of /proc/PID/status text (0: not traced); nullopt when the line is missing
// or malformed.
std::optional<uint32_t> tracer_pid(std::string_view status);

}  // namespace kw::core
