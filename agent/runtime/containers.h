// The containers the agent enrolled through the runtime's seccomp-agent socket: what their
// runtime said of them (core/oci_state.h), the cgroup their processes run in, and the
// kernel's kw_ctrs entries that let an exec there match a workload's container selector.
//
// A container's facts arrive when its runtime hands over the listener, which may be after
// the first exec in it (crun run, a slow agent): those processes were left unattested by
// the kernel because it did not know the facts yet. Once the entries are in, the processes
// of the cgroup that have no identity are attested from /proc (weaker than at exec, as for
// processes running at agent start); the window is reported. Until then their connections
// to declared destinations are refused, like any unattested process's.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abi.h"
#include "core/compile.h"
#include "core/oci_state.h"
#include "core/policy.h"
#include "core/result.h"

namespace kw::runtime {

// What the containers need of the kernel and the host.
class ContainerHost {
public:
    virtual ~ContainerHost() = default;
    struct Cgroup {
        std::string path;  // below the cgroup2 mount, as /proc/PID/cgroup's "0::" line
        uint64_t id = 0;   // its inode number: the kernel's cgroup id
    };
    // The cgroup v2 the process PID runs in now.
    virtual Result<Cgroup> cgroup_of(pid_t pid) = 0;
    // kw_ctrs of the generation in force.
    virtual Result<void> add(const std::vector<kw_ctr_key>& entries) = 0;
    virtual Result<void> remove(const std::vector<kw_ctr_key>& entries) = 0;
    struct Late {
        size_t attested = 0;
        std::chrono::milliseconds window{0};  // the oldest attested process's age
    };
    // The processes of cgroup PATH that have no identity, attested from /proc against
    // COMPILED (its containers included).
    virtual Late attest_unattested(const std::string& path, const core::CompiledPolicy& compiled) = 0;
};

class Containers {
public:
    explicit Containers(ContainerHost& host) : host_(host) {}

    struct Started {
        ContainerHost::Cgroup cgroup;
        std::vector<std::string> workloads;  // SPIFFE IDs whose container selector it meets
        ContainerHost::Late late;
    };
    // Checks that process PID runs in the cgroup of the container FACTS describes (when its
    // path names a container, by id). The error names what does not hold.
    Result<ContainerHost::Cgroup> locate(pid_t pid, const core::ContainerFacts& facts);
    // A process of the container in CGROUP was enrolled (the init, or one exec'd into it):
    // its entries are written for POLICY (compiled as COMPILED), and the cgroup's unattested
    // processes attested. Counted: the entries go when the last process is released.
    Result<Started> started(const ContainerHost::Cgroup& cgroup, const core::ContainerFacts& facts,
                            const core::Policy& policy, const core::CompiledPolicy& compiled);
    void released(uint64_t cgroup_id);

    // The entries of every known container for POLICY (a policy about to be published).
    std::vector<kw_ctr_key> entries(const core::Policy& policy) const;
    // After a publish for POLICY: what the kernel has now.
    void published(const core::Policy& policy);
    size_t size() const { return known_.size(); }
    // What the runtime said of the container in cgroup CGROUP_ID, for naming it in events:
    // known now, or among the last kRecentlyGone that went (a process's last event often
    // comes after its container's end). Null when none.
    const core::ContainerFacts* facts_of(uint64_t cgroup_id) const;
    static constexpr size_t kRecentlyGone = 256;

private:
    struct Known {
        core::ContainerFacts facts;
        std::string path;
        size_t processes = 0;
        std::vector<kw_ctr_key> in_kernel;
    };
    ContainerHost& host_;
    std::map<uint64_t, Known> known_;  // by cgroup id
    std::deque<std::pair<uint64_t, core::ContainerFacts>> gone_;  // newest first
};

}  // namespace kw::runtime
