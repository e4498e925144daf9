#include "io/linux_kernel.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "bpf/proc_attest.h"
#include "core/container_cgroup.h"

namespace kw::io {

uint32_t LinuxKernel::identity_of(int pidfd) {
    auto task = enforcer_.task_identity(pidfd);
    return task ? task->ident : KW_IDENT_NONE;
}

Result<void> LinuxKernel::mark_handshake(int fd, uint32_t owner) { return enforcer_.mark_handshake_socket(fd, owner); }

Result<void> LinuxKernel::mark_managed(int fd, uint32_t owner) { return enforcer_.mark_managed_socket(fd, owner); }

Result<void> LinuxKernel::mark_enrolled(int pidfd) {
    kw_task task = enforcer_.task_identity(pidfd).value_or(kw_task{.pin_id = ~0u});
    task.flags |= KW_TASK_ENROLLED;
    return enforcer_.set_task_identity(pidfd, task);
}

Result<void> LinuxKernel::attach_tls(int fd) { return tls::attach_tls_ulp(fd); }

Result<void> LinuxKernel::install_keys(int fd, const tls::TrafficKeys& keys) { return tls::set_traffic_keys(fd, keys); }

Result<runtime::ContainerHost::Cgroup> LinuxContainerHost::cgroup_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    if (!in) return make_error("no process " + std::to_string(pid));
    std::stringstream text;
    text << in.rdbuf();
    auto path = core::unified_cgroup_path(text.str());
    if (!path) return make_error("process " + std::to_string(pid) + " is in no cgroup v2");
    struct stat st {};
    if (::stat((cgroup_root_ + *path).c_str(), &st) != 0)
        return make_error("cgroup " + *path + ": " + std::strerror(errno));
    return Cgroup{*path, static_cast<uint64_t>(st.st_ino)};
}

runtime::ContainerHost::Late LinuxContainerHost::attest_unattested(const std::string& path,
                                                                    const core::CompiledPolicy& compiled) {
    std::ifstream in(cgroup_root_ + path + "/cgroup.procs");
    std::vector<pid_t> pids;
    for (pid_t pid; in >> pid;) pids.push_back(pid);
    spdlog::debug("container cgroup {}: {} process(es) to attest late", path, pids.size());
    auto stats = bpf::attest_unattested(*enforcer_, compiled, pids, cgroup_root_);
    return Late{stats.attested, std::chrono::milliseconds(stats.longest_wait_ns / 1000000)};
}

}  // namespace kw::io
