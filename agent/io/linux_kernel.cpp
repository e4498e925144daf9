#include "io/linux_kernel.h"

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

}  // namespace kw::io
