// Attests processes that were running before kwarden's programs were first loaded, once,
// from /proc. Weaker than exec attestation (documented in README): the facts are read
// after the fact, a #! script cannot be recognised, and the process may exec meanwhile
// (the pidfd pins the task, and a process that exec'd after we read /proc is caught by
// the kernel's own attestation, which then overwrites what we wrote).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "bpf/enforcer.h"
#include "core/compile.h"

namespace kw::bpf {

struct ProcScanStats {
    size_t scanned = 0;
    size_t attested = 0;
    // attest_unattested: the longest an attested process had run unattested since its
    // exec (the kernel's record of it), 0 when unknown.
    uint64_t longest_wait_ns = 0;
};

ProcScanStats attest_running_processes(Enforcer& enforcer, const core::CompiledPolicy& compiled,
                                       const std::string& cgroup_root = "/sys/fs/cgroup");

// The processes PIDS that have no identity (none yet, or cleared at exec): attested from
// /proc like the running processes at start, enrolment kept. For facts that arrive after
// the exec they concern (a container's, from its runtime): the kernel's exec-time record
// said "unattested" only because it did not know them yet.
ProcScanStats attest_unattested(Enforcer& enforcer, const core::CompiledPolicy& compiled,
                                const std::vector<pid_t>& pids, const std::string& cgroup_root = "/sys/fs/cgroup");

}  // namespace kw::bpf
