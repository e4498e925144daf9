// Who may enrol: the checks on an enrolment request (`kwarden exec`'s hello) that need no
// kernel object. A process enrols itself only: the pid it names must be the peer's (from
// SO_PEERCRED), and it hands over exactly one descriptor. The socket, the descriptor's
// kind and its registration with the kernel are enrolment_service.cpp's.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

namespace kw::runtime {

struct Hello {
    std::string command;  // what the process will exec, for logs and events ("?" if unsaid)
};

// REQUEST as received from the peer PEER_PID with FDS descriptors attached: the hello, or
// the error the launcher is answered with.
std::variant<Hello, std::string> check_hello(const nlohmann::json& request, pid_t peer_pid, size_t fds);

}  // namespace kw::runtime
