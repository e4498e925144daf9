// Attests processes that were running before kwarden's programs were first loaded, once,
// from /proc. Weaker than exec attestation (documented in README): the facts are read
// after the fact, a #! script cannot be recognised, and the process may exec meanwhile
// (the pidfd pins the task, and a process that exec'd after we read /proc is caught by
// the kernel's own attestation, which then overwrites what we wrote).
#pragma once

#include <cstddef>

#include "bpf/enforcer.h"
#include "core/compile.h"

namespace kw::bpf {

struct ProcScanStats {
    size_t scanned = 0;
    size_t attested = 0;
};

ProcScanStats attest_running_processes(Enforcer& enforcer, const core::CompiledPolicy& compiled,
                                       const std::string& cgroup_root = "/sys/fs/cgroup");

}  // namespace kw::bpf
