// The runtime's kernel ports on this kernel: identities and marks in kwarden's BPF maps,
// kTLS through the socket options (runtime/kernel_port.h); the policy's tables
// (runtime/policy_service.h).
#pragma once

#include "bpf/enforcer.h"
#include <memory>
#include <string>
#include <vector>

#include "runtime/containers.h"
#include "runtime/kernel_port.h"
#include "runtime/policy_service.h"

namespace kw::io {

class LinuxKernel final : public runtime::KernelPort {
public:
    explicit LinuxKernel(bpf::Enforcer& enforcer) : enforcer_(enforcer) {}

    uint32_t identity_of(int pidfd) override;
    Result<void> mark_handshake(int fd, uint32_t owner) override;
    Result<void> mark_managed(int fd, uint32_t owner) override;
    Result<void> mark_enrolled(int pidfd) override;
    Result<void> attach_tls(int fd) override;
    Result<void> install_keys(int fd, const tls::TrafficKeys& keys) override;

private:
    bpf::Enforcer& enforcer_;
};

// The policy service's kernel: the identity table and the tables of each generation, in
// the BPF maps of the enforcer the agent loads (after this object is made).
class LinuxPolicyKernel final : public runtime::PolicyKernel {
public:
    explicit LinuxPolicyKernel(const std::unique_ptr<bpf::Enforcer>& enforcer) : enforcer_(enforcer) {}
    Result<void> store_identities(const core::IdentityTable& ids) override { return enforcer_->store_identities(ids); }
    Result<void> publish(const core::CompiledPolicy& compiled) override { return enforcer_->publish(compiled); }
    uint32_t active_generation() const override { return enforcer_->active_generation(); }

private:
    const std::unique_ptr<bpf::Enforcer>& enforcer_;
};

// The containers' host: cgroups under the cgroup2 mount, kw_ctrs in the enforcer's maps,
// late attestation from /proc.
class LinuxContainerHost final : public runtime::ContainerHost {
public:
    LinuxContainerHost(const std::unique_ptr<bpf::Enforcer>& enforcer, std::string cgroup_root)
        : enforcer_(enforcer), cgroup_root_(std::move(cgroup_root)) {}
    Result<Cgroup> cgroup_of(pid_t pid) override;
    Result<void> add(const std::vector<kw_ctr_key>& entries) override { return enforcer_->add_containers(entries); }
    Result<void> remove(const std::vector<kw_ctr_key>& entries) override {
        return enforcer_->remove_containers(entries);
    }
    Late attest_unattested(const std::string& path, const core::CompiledPolicy& compiled) override;

private:
    const std::unique_ptr<bpf::Enforcer>& enforcer_;
    std::string cgroup_root_;
};

}  // namespace kw::io
