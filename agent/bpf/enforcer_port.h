// The runtime's kernel port (runtime/kernel_port.h) on kwarden's BPF maps.
#pragma once

#include "bpf/enforcer.h"
#include "runtime/kernel_port.h"

namespace kw::bpf {

class EnforcerPort final : public runtime::KernelPort {
public:
    explicit EnforcerPort(Enforcer& enforcer) : enforcer_(enforcer) {}

    uint32_t identity_of(int pidfd) override {
        auto task = enforcer_.task_identity(pidfd);
        return task ? task->ident : KW_IDENT_NONE;
    }
    Result<void> mark_handshake(int fd, uint32_t owner) override { return enforcer_.mark_handshake_socket(fd, owner); }
    Result<void> mark_managed(int fd, uint32_t owner) override { return enforcer_.mark_managed_socket(fd, owner); }
    Result<void> mark_enrolled(int pidfd) override {
        kw_task task = enforcer_.task_identity(pidfd).value_or(kw_task{.pin_id = ~0u});
        task.flags |= KW_TASK_ENROLLED;
        return enforcer_.set_task_identity(pidfd, task);
    }

private:
    Enforcer& enforcer_;
};

}  // namespace kw::bpf
