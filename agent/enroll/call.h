// A call an enrolled process holds: one seccomp user notification, as the agent keeps it.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace kw::enroll {

struct Call {
    uint64_t id = 0;   // the notification's cookie (SECCOMP_IOCTL_NOTIF_ID_VALID)
    pid_t tid = 0;     // the calling thread, in the agent's pid namespace
    int nr = 0;        // the system call number
    uint64_t args[6] = {};
};

}  // namespace kw::enroll
