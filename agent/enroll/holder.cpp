// The listener holder and the agent's client of it (see holder.h).
#include "enroll/holder.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <thread>

#include "enroll/fd_message.h"
#include "core/json_field.h"

namespace kw::enroll {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxMessage = 64 * 1024;  // a container's facts ride with its listener

Result<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
        return make_error("holder socket path '" + path + "' is empty or longer than " +
                          std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

Result<core::UniqueFd> connect_to(const std::string& path) {
    auto addr = unix_address(path);
    if (!addr) return addr.error();
    core::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return make_error(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0)
        return make_error("no listener holder at " + path + ": " + std::strerror(errno));
    timeval tv{5, 0};  // the holder answers at once; a wedged one must not wedge the agent
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

// ---- the holder process ---------------------------------------------------------------

struct Record {
    uint64_t key;
    pid_t pid;
    uid_t uid;
    std::string command;
    json container;
    core::UniqueFd listener;
    core::UniqueFd journal;
};

struct Peer {
    core::UniqueFd fd;
    pid_t pid = 0;       // SO_PEERCRED
    bool agent = false;  // said hello and holds the agent role
};

class Holder {
public:
    explicit Holder(const HolderOptions& o) : o_(o), started_(Clock::now()) {}
    int run();

private:
    Result<void> bind_socket();
    void accept_peer();
    void serve(Peer& peer);  // one message; closes the peer on error
    void reply(Peer& peer, const json& j, const std::vector<int>& fds = {});
    bool idle() const;

    const HolderOptions& o_;
    core::UniqueFd listen_;
    std::list<Peer> peers_;
    std::list<Record> records_;
    uint64_t next_key_ = 1;
    bool had_agent_ = false;
    Clock::time_point started_;
};

Result<void> Holder::bind_socket() {
    auto addr = unix_address(o_.socket_path);
    if (!addr) return addr.error();
    // A socket that answers belongs to a running holder: never take it over.
    if (auto probe = connect_to(o_.socket_path); probe)
        return make_error("a listener holder already serves " + o_.socket_path);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(o_.socket_path).parent_path(), ec);
    ::unlink(o_.socket_path.c_str());
    listen_ = core::UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_.valid()) return make_error(std::string("socket: ") + std::strerror(errno));
    mode_t old = ::umask(0177);  // 0600 from the start: no window in which others connect
    int rc = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
    ::umask(old);
    if (rc != 0 || ::listen(listen_.get(), 16) != 0)
        return make_error("cannot listen on " + o_.socket_path + ": " + std::strerror(errno));
    return {};
}

void Holder::reply(Peer& peer, const json& j, const std::vector<int>& fds) {
    if (auto r = send_message(peer.fd.get(), core::json_text(j), fds); !r)
        spdlog::warn("holder: answering pid {}: {}", peer.pid, r.message());
}

void Holder::accept_peer() {
    core::UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) {
        // Out of descriptors or memory the connection stays queued and poll() reports it
        // again at once: pause instead of spinning. Any other error: the next one.
        int err = errno;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            spdlog::warn("holder: accept: {}: retrying in 100 ms", std::strerror(err));
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::geteuid()) {
        (void)send_message(fd.get(), core::json_text({{"ok", false}, {"error", "only uid " + std::to_string(::geteuid()) +
                                                                                  " may use the listener holder"}}));
        return;
    }
    timeval tv{2, 0};  // a peer that stops reading cannot stall the holder for long
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    peers_.push_back(Peer{std::move(fd), cred.pid, false});
}

void Holder::serve(Peer& peer) {
    auto msg = receive_message(peer.fd.get(), kMaxMessage, MSG_DONTWAIT);
    if (!msg) {
        if (msg.message() != "closed") spdlog::warn("holder: from pid {}: {}", peer.pid, msg.message());
        if (peer.agent) spdlog::info("holder: agent {} detached; holding {} listener(s)", peer.pid, records_.size());
        peer.fd.reset();
        return;
    }
    auto req = json::parse(msg->text, nullptr, false);
    std::string op = core::json_string(req, "op", "");
    if (op == "hello") {
        for (const Peer& other : peers_)
            if (other.agent && other.fd.valid() && &other != &peer)
                return reply(peer, {{"ok", false},
                                    {"error", "another agent (pid " + std::to_string(other.pid) +
                                                  ") is attached to the listener holder"}});
        peer.agent = true;
        had_agent_ = true;
        reply(peer, {{"ok", true}, {"held", records_.size()}});
        for (const Record& r : records_) {
            std::vector<int> fds{r.listener.get()};
            if (r.journal.valid()) fds.push_back(r.journal.get());
            reply(peer,
                  {{"op", "held"}, {"key", r.key}, {"pid", r.pid}, {"uid", r.uid}, {"command", r.command},
                   {"container", r.container}},
                  fds);
        }
        reply(peer, {{"op", "end"}});
        spdlog::info("holder: agent {} attached; handed it {} listener(s)", peer.pid, records_.size());
        return;
    }
    if (op == "deposit") {
        if (!peer.agent) return reply(peer, {{"ok", false}, {"error", "deposit: say hello first (agents only)"}});
        if (msg->fds.empty() || msg->fds.size() > 2 || !req.contains("pid") || !req["pid"].is_number_integer())
            return reply(peer, {{"ok", false},
                                {"error", "deposit: expected {\"op\":\"deposit\",\"pid\":N,...} with a listener "
                                          "and an optional journal"}});
        json container = req.contains("container") && req["container"].is_object() ? req["container"] : json(nullptr);
        Record r{next_key_++, req["pid"].get<pid_t>(), core::json_int<uid_t>(req, "uid", 0),
                 core::json_string(req, "command", "?"), std::move(container), std::move(msg->fds[0]),
                 msg->fds.size() > 1 ? std::move(msg->fds[1]) : core::UniqueFd()};
        uint64_t key = r.key;
        records_.push_back(std::move(r));
        return reply(peer, {{"ok", true}, {"key", key}});
    }
    if (op == "drop") {
        // A listener the agent refuses to serve: closed here too, so that its process's
        // trapped calls fail (ENOSYS) rather than wait for an agent that will not come.
        if (!peer.agent) return reply(peer, {{"ok", false}, {"error", "drop: say hello first (agents only)"}});
        const uint64_t key = core::json_int<uint64_t>(req, "key", 0);
        auto it = std::find_if(records_.begin(), records_.end(), [&](const Record& r) { return r.key == key; });
        if (key == 0 || it == records_.end())
            return reply(peer, {{"ok", false}, {"error", "drop: no listener held under key " + std::to_string(key)}});
        spdlog::info("holder: dropping the listener of process {} ({}) at the agent's request", it->pid, it->command);
        records_.erase(it);
        return reply(peer, {{"ok", true}});
    }
    if (op == "status") {
        json list = json::array();
        for (const Record& r : records_)
            list.push_back({{"key", r.key}, {"pid", r.pid}, {"uid", r.uid}, {"command", r.command}});
        json agent = nullptr;
        for (const Peer& p : peers_)
            if (p.agent && p.fd.valid()) agent = p.pid;
        return reply(peer, {{"ok", true}, {"held", records_.size()}, {"agent_pid", agent}, {"listeners", list},
                            {"holder_pid", ::getpid()}});
    }
    reply(peer, {{"ok", false}, {"error", "unknown op '" + op + "' (known: hello, deposit, drop, status)"}});
}

bool Holder::idle() const {
    if (!o_.exit_when_idle || !records_.empty()) return false;
    for (const Peer& p : peers_)
        if (p.fd.valid()) return false;
    return had_agent_ || Clock::now() - started_ >= o_.idle_grace;
}

int Holder::run() {
    if (auto r = bind_socket(); !r) {
        spdlog::error("holder: {}", r.message());
        return 1;
    }
    spdlog::info("holder: pid {} serving {}", ::getpid(), o_.socket_path);
    while (true) {
        std::vector<pollfd> fds;
        fds.push_back({listen_.get(), POLLIN, 0});
        fds.push_back({o_.stop_fd, POLLIN, 0});  // -1 is ignored by poll
        for (const Peer& p : peers_) fds.push_back({p.fd.get(), POLLIN, 0});
        // No events asked for: POLLHUP alone says the last task using the filter is gone.
        for (const Record& r : records_) fds.push_back({r.listener.get(), 0, 0});
        int n = ::poll(fds.data(), fds.size(), o_.exit_when_idle ? 1000 : -1);
        if (n < 0 && errno != EINTR) {
            spdlog::error("holder: poll: {}", std::strerror(errno));
            return 1;
        }
        if (fds[1].revents) break;
        // Records first: serving a peer may append records that were not polled.
        size_t i = 2 + peers_.size();
        for (auto it = records_.begin(); it != records_.end() && i < fds.size(); ++i) {
            if (fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
                spdlog::info("holder: process {} ({}) and its children have exited", it->pid, it->command);
                it = records_.erase(it);
            } else {
                ++it;
            }
        }
        i = 2;
        for (Peer& p : peers_)
            if (fds[i++].revents) serve(p);
        peers_.remove_if([](const Peer& p) { return !p.fd.valid(); });
        if (fds[0].revents & POLLIN) accept_peer();
        if (idle()) {
            spdlog::info("holder: nothing held and no agent: exiting");
            break;
        }
    }
    ::unlink(o_.socket_path.c_str());
    return 0;
}

}  // namespace

int run_holder(const HolderOptions& options) {
    // It holds no key, but its descriptors reach every enrolled process: no ptrace.
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    Holder holder(options);
    return holder.run();
}

// ---- the agent's side -----------------------------------------------------------------

// The next message from the holder, within 5 s. The agent watches the same open file
// description with Asio, which makes it non-blocking: wait with poll, not with recvmsg.
static Result<FdMessage> receive_from_holder(int sock) {
    pollfd p{sock, POLLIN, 0};
    int n;
    do n = ::poll(&p, 1, 5000);
    while (n < 0 && errno == EINTR);
    if (n == 0) return make_error("no answer within 5 s");
    return receive_message(sock, kMaxMessage, MSG_DONTWAIT);
}

Result<json> HolderClient::request(const json& message, const std::vector<int>& fds) {
    if (auto r = send_message(sock_.get(), core::json_text(message), fds); !r) return make_error("holder: " + r.message());
    auto answer = receive_from_holder(sock_.get());
    if (!answer) return make_error("holder: " + answer.message());
    auto j = json::parse(answer->text, nullptr, false);
    if (!j.is_object()) return make_error("holder: an answer that is not a JSON object");
    if (!core::json_bool(j, "ok", false)) return make_error("holder: " + core::json_string(j, "error", "refused"));
    return j;
}

Result<HolderClient::Attached> HolderClient::attach(const std::string& path, pid_t agent_pid) {
    auto fd = connect_to(path);
    if (!fd) return fd.error();
    Attached out{HolderClient(std::move(*fd)), {}};
    auto hello = out.client.request({{"op", "hello"}, {"pid", agent_pid}});
    if (!hello) return hello.error();
    while (true) {
        auto msg = receive_from_holder(out.client.fd());
        if (!msg) return make_error("holder: while adopting listeners: " + msg.message());
        auto j = json::parse(msg->text, nullptr, false);
        std::string op = core::json_string(j, "op", "");
        if (op == "end") break;
        if (op != "held" || msg->fds.empty()) return make_error("holder: unexpected message while adopting: " + msg->text);
        HeldListener h;
        h.key = core::json_int<uint64_t>(j, "key", 0);
        h.pid = core::json_int<pid_t>(j, "pid", 0);
        h.uid = core::json_int<uid_t>(j, "uid", 0);
        h.command = core::json_string(j, "command", "?");
        if (j.contains("container") && j["container"].is_object()) h.container = j["container"];
        h.listener = std::move(msg->fds[0]);
        if (msg->fds.size() > 1) h.journal = std::move(msg->fds[1]);
        out.held.push_back(std::move(h));
    }
    return out;
}

namespace {

Result<void> spawn_holder(const std::string& path) {
    std::string exe = "/proc/self/exe";
    pid_t child = ::fork();
    if (child < 0) return make_error(std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        // In a session of its own and reparented to init: the agent's death (or its
        // process group's) does not take it along.
        ::setsid();
        if (::fork() != 0) ::_exit(0);
        ::close_range(3, ~0U, 0);  // nothing of the agent's: no BPF link, no key, no socket
        int null = ::open("/dev/null", O_RDONLY);
        if (null >= 0) ::dup2(null, 0);
        const char* argv[] = {"kwarden", "holder", "--socket", path.c_str(), "--exit-when-idle", nullptr};
        ::execv(exe.c_str(), const_cast<char* const*>(argv));
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return {};
}

}  // namespace

Result<HolderClient::Attached> HolderClient::attach_or_spawn(const std::string& path, pid_t agent_pid) {
    auto first = attach(path, agent_pid);
    if (first || first.message().rfind("no listener holder", 0) != 0) return first;
    spdlog::info("no listener holder at {}: starting one", path);
    if (auto r = spawn_holder(path); !r) return make_error("cannot start a listener holder: " + r.message());
    // It binds within milliseconds; it may also be a holder that was just exiting.
    auto deadline = Clock::now() + std::chrono::seconds(5);
    Result<Attached> again = make_error("no listener holder at " + path);
    while (Clock::now() < deadline) {
        again = attach(path, agent_pid);
        if (again || again.message().rfind("no listener holder", 0) != 0) return again;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return make_error("started a listener holder, but none answers at " + path + ": " + again.message());
}

Result<json> HolderClient::status(const std::string& path) {
    auto fd = connect_to(path);
    if (!fd) return fd.error();
    HolderClient c(std::move(*fd));
    return c.request({{"op", "status"}});
}

Result<uint64_t> HolderClient::deposit(pid_t pid, uid_t uid, const std::string& command, int listener, int journal,
                                       const json& container) {
    std::vector<int> fds{listener};
    if (journal >= 0) fds.push_back(journal);
    auto r = request({{"op", "deposit"}, {"pid", pid}, {"uid", uid}, {"command", command}, {"container", container}},
                     fds);
    if (!r) return r.error();
    return core::json_int<uint64_t>(*r, "key", 0);
}

Result<void> HolderClient::drop(uint64_t key) {
    auto r = request({{"op", "drop"}, {"key", key}});
    if (!r) return r.error();
    return {};
}

}  // namespace kw::enroll
