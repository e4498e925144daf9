// Enrolment messages: what any local user sends on the enrolment socket (mode 0666), and
// what the listener holder and the agent say to each other. The input is sent as one
// message with descriptors over a real Unix socket pair and received by
// enroll::receive_message as the agent receives it (runtime/enrolment_service.cpp,
// on_hello); the text then goes through the hello's checks (runtime::check_hello),
// through the holder's reading of the same text as a request
// (enroll/holder.cpp, Holder::serve) and as an answer while adopting, and the replies and
// the enrol event are serialised. None of it may throw or crash.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/json_field.h"
#include "enroll/fd_message.h"
#include "fuzz_common.h"
#include "runtime/enrolment.h"

using namespace kw;
using nlohmann::json;

namespace {

// The hello's checks as the agent makes them; the seccomp listener and the journal need a
// real process: the harness stops there.
json hello(const enroll::FdMessage& msg, pid_t peer_pid) {
    auto checked = runtime::check_hello(json::parse(msg.text, nullptr, false), peer_pid, msg.fds.size());
    if (auto* error = std::get_if<std::string>(&checked)) return {{"ok", false}, {"error", *error}};
    (void)fuzz::dump_reply({{"type", "enroll"}, {"time", "2026-12-01T00:00:00Z"}, {"pid", peer_pid}, {"uid", 1000},
                            {"command", std::get<runtime::Hello>(checked).command}});
    return {{"ok", true}};
}

// Holder::serve's reading of a request, and HolderClient::attach's of a held message.
void holder(const enroll::FdMessage& msg) {
    auto req = json::parse(msg.text, nullptr, false);
    std::string op = core::json_string(req, "op", "");
    if (op == "deposit" && !msg.fds.empty() && msg.fds.size() <= 2 && req.contains("pid") &&
        req["pid"].is_number_integer()) {
        (void)req["pid"].get<pid_t>();
        (void)fuzz::dump_reply({{"key", 1}, {"pid", core::json_int<pid_t>(req, "pid", 0)},
                                {"uid", core::json_int<uid_t>(req, "uid", 0)},
                                {"command", core::json_string(req, "command", "?")}});
    } else if (op != "hello" && op != "status") {
        (void)fuzz::dump_reply({{"ok", false}, {"error", "unknown op '" + op + "' (known: hello, deposit, status)"}});
    }
    (void)core::json_int<uint64_t>(req, "key", 0);
    (void)core::json_bool(req, "ok", false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    // The first byte: how many descriptors ride along (0-5; more than 4 cannot be sent)
    // and the socket type (the enrolment socket is a stream, the holder's seqpacket).
    size_t nfds = (data[0] & 0x7) % 6;
    int type = (data[0] & 0x8) ? SOCK_SEQPACKET : SOCK_STREAM;
    std::string text(fuzz::as_text(data + 1, size - 1));
    int sv[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) fuzz::fail("socketpair");
    std::vector<int> fds;
    for (size_t i = 0; i < nfds; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    auto sent = enroll::send_message(sv[0], text, fds);
    if (nfds > 4 && sent) fuzz::fail("sent more than 4 descriptors");
    for (int fd : fds) ::close(fd);
    ::shutdown(sv[0], SHUT_WR);
    // The agent reads at most 4095 bytes of a hello.
    auto msg = enroll::receive_message(sv[1], 4095, MSG_DONTWAIT);
    if (msg) {
        if (msg->fds.size() > 4) fuzz::fail("received more than 4 descriptors");
        if (msg->text.size() > 4095) fuzz::fail("received more than asked for");
        json reply = hello(*msg, ::getpid());
        (void)fuzz::dump_reply(reply);
        holder(*msg);
    }
    ::close(sv[0]);
    ::close(sv[1]);
    return 0;
}
