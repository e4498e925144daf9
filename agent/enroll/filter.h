// The seccomp filter of an enrolled process: connect, accept and accept4
// wait in the kernel for the agent (user notification), and so do sendto/sendmsg with
// MSG_FASTOPEN (TCP Fast Open reaches a peer without connect(); TCP_FASTOPEN_CONNECT
// still calls connect()). io_uring_setup fails with ENOSYS: io_uring's connect would skip
// the hold (the BPF gate still refuses it for mutual-TLS destinations). Everything else
// is allowed untouched.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"

namespace kw::enroll {

std::vector<sock_filter> build_filter();

// Sets no_new_privs and installs the filter with NEW_LISTENER and WAIT_KILLABLE_RECV
// (once the agent holds a notification, only SIGKILL interrupts the call, so signal
// storms cannot restart it mid-handshake). Returns the listener.
Result<core::UniqueFd> install_filter();

}  // namespace kw::enroll
