// What the runtime asks of the kernel while it serves enrolled processes, and nothing
// else: the identity the kernel assigned to a process, the marks that keep a socket out
// of the app's hands while the agent handshakes on it and its keys out of reach once kTLS
// is in, and kTLS itself. io/linux_kernel.h implements it with the BPF maps and the
// socket options; unit tests with a fake. Identities are the kernel's numbers (KW_IDENT_NONE: unattested); a
// SPIFFE ID is looked up in the policy view only where a name is needed.
#pragma once

#include <cstdint>

#include "core/result.h"
#include "tls/ktls.h"

namespace kw::runtime {

class KernelPort {
public:
    virtual ~KernelPort() = default;
    // The identity the kernel recorded for the process behind PIDFD; KW_IDENT_NONE when
    // it has none (unattested, or the process is gone).
    virtual uint32_t identity_of(int pidfd) = 0;
    // Before the agent connects the app's socket FD for a handshake: until mark_managed,
    // only the agent moves data on it; a failed handshake leaves it so. OWNER is the
    // identity of the process the socket is for: only processes of that identity may
    // receive it by fd passing from then on.
    virtual Result<void> mark_handshake(int fd, uint32_t owner) = 0;
    // After kTLS is installed on FD: only the agent may touch SOL_TLS on it from now on.
    virtual Result<void> mark_managed(int fd, uint32_t owner) = 0;
    // Records that the process behind PIDFD is enrolled: its memory is guarded like an
    // attested process's, across fork and exec.
    virtual Result<void> mark_enrolled(int pidfd) = 0;
    // kTLS on the TCP socket FD, in its two steps (tls/ktls.h): the "tls" ULP while it is
    // ESTABLISHED, before the handshake; the traffic keys once the handshake is done.
    virtual Result<void> attach_tls(int fd) = 0;
    virtual Result<void> install_keys(int fd, const tls::TrafficKeys& keys) = 0;
};

}  // namespace kw::runtime
