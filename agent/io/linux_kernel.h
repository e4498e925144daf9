// The runtime's kernel port (runtime/kernel_port.h) on this kernel: identities and marks
// in kwarden's BPF maps, kTLS through the socket options.
#pragma once

#include "bpf/enforcer.h"
#include "runtime/kernel_port.h"

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

}  // namespace kw::io
