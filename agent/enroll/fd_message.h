// One message with file descriptors attached (SCM_RIGHTS) over a Unix socket: how
// `kwarden exec` hands its seccomp listener to the agent, and how the agent and the
// listener holder pass listeners and journals to each other.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"

namespace kw::enroll {

struct FdMessage {
    std::string text;
    std::vector<core::UniqueFd> fds;  // received close-on-exec
};

// Sends TEXT with FDS (at most 4) in one sendmsg. EINTR is retried.
Result<void> send_message(int sock, const std::string& text, const std::vector<int>& fds = {});

// Receives one message of at most MAX_TEXT bytes with at most 4 descriptors. FLAGS are
// recvmsg flags (MSG_DONTWAIT). A closed peer is an error ("closed"); a truncated
// message or truncated descriptor list is an error and its descriptors are closed.
Result<FdMessage> receive_message(int sock, size_t max_text = 65536, int flags = 0);

}  // namespace kw::enroll
