// The runtime's kernel ports on this kernel: identities and marks in kwarden's BPF maps,
// kTLS through the socket options (runtime/kernel_port.h); the policy's tables
// (runtime/policy_service.h).
#pragma once

#include "bpf/enforcer.h"
#include <memory>

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

}  // namespace kw::io
