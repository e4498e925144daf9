// `kwarden exec [--] CMD [ARGS]`: enrols the calling process with the agent and becomes
// CMD. Also usable as a systemd ExecStart wrapper.
//
//   1. connect to the agent's enrolment socket (before the filter: our own connect is
//      not to be held), failing clearly when no agent runs;
//   2. install the seccomp filter (filter.h) and get its listener;
//   3. hand the listener to the agent (SCM_RIGHTS), which checks who we are (SO_PEERCRED
//      and a pidfd) and starts serving our held calls;
//   4. exec CMD, which keeps the filter (and no_new_privs) for good.
#pragma once

#include <string>
#include <vector>

namespace kw::enroll {

inline constexpr const char* kDefaultEnrollSocket = "/run/kwarden/enroll.sock";

// Returns only on failure, with the exit status to use (the message is printed).
int exec_enrolled(const std::string& enroll_socket, const std::vector<std::string>& argv);

}  // namespace kw::enroll
