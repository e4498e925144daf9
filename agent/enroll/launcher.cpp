// The enrolling launcher (see launcher.h).
#include "enroll/launcher.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/unique_fd.h"
#include "core/json_field.h"
#include "enroll/fd_message.h"
#include "enroll/filter.h"

namespace kw::enroll {
namespace {

int fail(const std::string& message, int code = 1) {
    std::cerr << "kwarden exec: " << message << "\n";
    return code;
}

Result<std::string> read_line(int sock) {
    std::string line;
    char c;
    while (line.size() < 65536) {
        ssize_t n = ::read(sock, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return make_error(n == 0 ? "the agent closed the enrolment socket" : std::strerror(errno));
        if (c == '\n') return line;
        line += c;
    }
    return make_error("the agent's answer is too long");
}

}  // namespace

int exec_enrolled(const std::string& enroll_socket, const std::vector<std::string>& argv) {
    if (argv.empty()) return fail("no command to run (usage: kwarden exec [--enroll-socket PATH] [--] CMD [ARGS])", 2);
    core::UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (enroll_socket.size() >= sizeof(addr.sun_path)) return fail("enrolment socket path too long: " + enroll_socket, 2);
    std::memcpy(addr.sun_path, enroll_socket.c_str(), enroll_socket.size() + 1);
    if (!sock.valid() || ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
        return fail("no kwarden agent answers on " + enroll_socket + " (" + std::strerror(errno) +
                    "): start it first (kwarden agent, or systemctl start kwarden); '" + argv[0] + "' was not started");

    auto listener = install_filter();
    if (!listener) return fail(listener.message());
    nlohmann::json request = {{"op", "enroll"}, {"pid", ::getpid()}, {"command", argv[0]}};
    if (auto r = send_message(sock.get(), core::json_text(request) + "\n", {listener->get()}); !r) return fail(r.message());
    // The agent must hold the only copy: the kernel registers the listener as the agent's
    // only then (try_claim_listener), and a process exec'd under a listener held by anyone
    // else gets no identity. The message in flight keeps the listener alive.
    listener->reset();
    auto answer = read_line(sock.get());
    if (!answer) return fail("no answer from the agent: " + answer.message());
    auto reply = nlohmann::json::parse(*answer, nullptr, false);
    if (!core::json_bool(reply, "ok", false))
        return fail("the agent refused to enrol this process: " +
                    core::json_string(reply, "error", *answer));
    sock.reset();

    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    int err = errno;
    return fail("cannot run '" + argv[0] + "': " + std::strerror(err), err == ENOENT ? 127 : 126);
}

}  // namespace kw::enroll
