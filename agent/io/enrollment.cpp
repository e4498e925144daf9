// Enrolment socket and held calls of enrolled processes (see enrollment.h).
#include "io/enrollment.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/kcmp.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <ctime>
#include <filesystem>
#include <string_view>

#include "core/mtls.h"
#include "runtime/held_call.h"
#include "core/json_field.h"
#include "core/unique_fd.h"
#include "enroll/fd_message.h"
#include "enroll/notifier.h"
#include "tls/handshake.h"
#ifdef KW_TEST_HOOKS
#include "testhooks/key_dump.h"
#endif

namespace kw::io {
namespace asio = boost::asio;
using runtime::parse_sockaddr;
using runtime::Target;
using runtime::TlsEventFacts;
using runtime::decide_mtls;
using runtime::tls_event;
using local = asio::local::stream_protocol;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxSockaddr = 128;

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

// Whether descriptors A and B of this process are the same open file (kcmp(2)).
bool same_open_file(int a, int b) {
    pid_t self = ::getpid();
    return ::syscall(SYS_kcmp, self, self, KCMP_FILE, a, b) == 0;
}

bool is_seccomp_listener(int fd) {
    char link[64] = {};
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
    return n > 0 && std::string_view(link, static_cast<size_t>(n)) == "anon_inode:seccomp notify";
}

// One step of HS on the socket SD: DONE when the handshake is finished, FAILED with the
// reason when it cannot be, else AGAIN once SD is ready for what the handshake waits on.
void step_handshake(tls::Handshake& hs, asio::posix::stream_descriptor& sd, const std::function<void()>& done,
                    const std::function<void(const std::string&)>& failed, std::function<void()> again) {
    auto progress = hs.step();
    if (!progress) return failed(hs.failure().empty() ? progress.message() : hs.failure());
    if (*progress == tls::Progress::done) return done();
    auto wait = *progress == tls::Progress::want_read ? asio::posix::stream_descriptor::wait_read
                                                       : asio::posix::stream_descriptor::wait_write;
    sd.async_wait(wait, [again = std::move(again)](boost::system::error_code ec) {
        if (!ec) again();
    });
}

// Calls GONE once the process of PIDFD has exited (a pidfd is readable then), taking
// PIDFD into WATCH. SIGKILL is the one signal that ends a held call: work the agent does
// for that call stops at once, and nothing of it (a connection, a listener copy) outlives
// the process. Without a watch (the pidfd cannot be polled), the timeouts still bound it.
void watch_exit(asio::posix::stream_descriptor& watch, core::UniqueFd& pidfd, std::function<void()> gone) {
    boost::system::error_code ec;
    watch.assign(pidfd.get(), ec);
    if (ec) return;
    (void)pidfd.release();  // WATCH owns it now
    watch.async_wait(asio::posix::stream_descriptor::wait_read, [gone = std::move(gone)](boost::system::error_code e) {
        if (!e) gone();
    });
}

}  // namespace

// One enrolled process tree (the filter is inherited by its children): its listener and
// the calls it holds.
class EnrolledProcess : public std::enable_shared_from_this<EnrolledProcess> {
public:
    EnrolledProcess(EnrollmentService& service, core::UniqueFd listener, std::optional<enroll::Journal> journal,
                    pid_t pid, uid_t uid, std::string command)
        : service_(service),
          notifier_(std::move(listener), std::move(journal)),
          watch_(service.io(), ::dup(notifier_.fd())),
          pid_(pid),
          uid_(uid),
          command_(std::move(command)) {}

    // Serves the calls the process makes from now on, after answering those a previous
    // agent had taken and not answered. Returns how many of those there were.
    size_t start();
    const enroll::Notifier& notifier() const { return notifier_; }
    EnrollmentService& service() { return service_; }
    pid_t pid() const { return pid_; }
    uid_t uid() const { return uid_; }
    const std::string& command() const { return command_; }

private:
    void resume(const enroll::JournalEntry& entry);
    void wait_next();
    void handle(const enroll::Call& call);
    void handle_connect(const enroll::Call& call);
    void handle_accept(const enroll::Call& call);
    void handle_fastopen(const enroll::Call& call);
    EnrollmentService& service_;
    enroll::Notifier notifier_;
    asio::posix::stream_descriptor watch_;
    pid_t pid_;
    uid_t uid_;
    std::string command_;
};

// The client side of one mTLS connection made for a held connect().
class ClientConnect : public std::enable_shared_from_this<ClientConnect> {
public:
    ClientConnect(std::shared_ptr<EnrolledProcess> process, enroll::Call call, Target target,
                  core::MtlsConnect mtls)
        : process_(std::move(process)),
          ctx_(process_->service().context()),
          call_(call),
          target_(std::move(target)),
          destination_(std::move(mtls.name)),
          expected_(mtls.server_identity),
          required_cipher_(mtls.tls_cipher),
          socket_(process_->service().io()),
          timer_(process_->service().io()),
          exit_watch_(process_->service().io()),
          started_(std::chrono::steady_clock::now()) {}

    void run();

private:
    void wait_connected();
    void drive();
    void finish_ok();
    void read_tickets();
    void install();
    void finish_fail(int error, const std::string& reason);
    void restore_flags();
    json event(const char* result) const;

    std::shared_ptr<EnrolledProcess> process_;
    const EnrollContext& ctx_;
    enroll::Call call_;
    Target target_;
    pid_t tgid_ = 0;
    core::UniqueFd pidfd_;
    uint32_t ident_ = KW_IDENT_NONE;  // the kernel's identity of the caller
    std::string spiffe_id_ = "unattested";
    std::string destination_;
    std::string expected_;  // the server's SPIFFE ID, as the policy names it
    uint16_t required_cipher_;  // the destination's "tls_cipher", 0 any
    std::shared_ptr<const identity::Svid> svid_;
    std::optional<core::SpiffeId> expected_id_;
    asio::posix::stream_descriptor socket_;  // our pidfd_getfd copy of the process's socket
    int saved_flags_ = -1;
    bool connected_ = false;
    bool finished_ = false;
    asio::steady_timer timer_;
    // The caller's pidfd once the handshake runs: readable when the process has exited.
    asio::posix::stream_descriptor exit_watch_;
    std::unique_ptr<tls::Handshake> handshake_;
    std::chrono::steady_clock::time_point started_;
    // After the handshake: the keys kTLS gets once the server's tickets are read.
    std::optional<tls::TrafficKeys> keys_;
    std::string ticket_peer_;  // destination, address and port: what the ticket count is learned for
    std::optional<int> tickets_expected_;
    int tickets_seen_ = 0;
    std::chrono::steady_clock::time_point handshake_done_;
    std::chrono::steady_clock::time_point ticket_deadline_;
    asio::steady_timer ticket_timer_{process_->service().io()};
    bool waiting_ = false;
};

// The server side: one held accept()/accept4() on a workload's mutual-TLS listen port.
// The agent accepts on its copy of the listener, handshakes as server (client
// certificate required, the client's identity checked against the rules), installs kTLS
// and hands the connection over with ADDFD|SEND, writing the peer address. A connection
// whose handshake fails is dropped and the next one taken: the app never sees it.
class ServerAccept : public std::enable_shared_from_this<ServerAccept> {
public:
    ServerAccept(std::shared_ptr<EnrolledProcess> process, enroll::Call call, pid_t tgid, uint32_t ident,
                 std::string spiffe_id, core::UniqueFd listener, uint16_t port)
        : process_(std::move(process)),
          ctx_(process_->service().context()),
          call_(call),
          tgid_(tgid),
          ident_(ident),
          spiffe_id_(std::move(spiffe_id)),
          port_(port),
          listener_(process_->service().io(), listener.release()),
          conn_(process_->service().io()),
          timer_(process_->service().io()),
          exit_watch_(process_->service().io()) {}

    void run();

private:
    void try_accept();
    void drive();
    void drop(const std::string& reason);
    void finish_ok();
    void finish(int error);
    json event(const char* result, const std::string& error) const;

    std::shared_ptr<EnrolledProcess> process_;
    const EnrollContext& ctx_;
    enroll::Call call_;
    pid_t tgid_;
    uint32_t ident_;  // the kernel's identity of the server process
    std::string spiffe_id_;
    uint16_t port_;
    asio::posix::stream_descriptor listener_;  // our copy of the app's listening socket
    int listener_flags_ = -1;
    bool app_nonblocking_ = false;
    asio::posix::stream_descriptor conn_;
    sockaddr_storage peer_{};
    socklen_t peer_len_ = 0;
    std::string peer_text_;
    asio::steady_timer timer_;
    // The caller's pidfd: readable when the process has exited.
    asio::posix::stream_descriptor exit_watch_;
    std::unique_ptr<tls::Handshake> handshake_;
    std::chrono::steady_clock::time_point started_;
    bool finished_ = false;
};

// ---- EnrolledProcess ---------------------------------------------------------------

size_t EnrolledProcess::start() {
    size_t resumed = 0;
    if (notifier_.journal()) {
        for (const auto& entry : notifier_.journal()->held()) {
            if (!notifier_.valid(entry.call.id)) {  // answered, or the caller is gone
                notifier_.note_answered(entry.call.id);
                continue;
            }
            ++resumed;
            resume(entry);
        }
    }
    wait_next();
    return resumed;
}

// A call the previous agent received and died before answering. Nothing was handed to
// the app yet: the app's socket flags are put back, and the call is served anew, except
// a connect whose socket the previous agent had already connected (a handshake cut in
// the middle cannot be resumed): that one is shut down and fails.
void EnrolledProcess::resume(const enroll::JournalEntry& entry) {
    const enroll::Call& call = entry.call;
    spdlog::info("enrolled process {}: call {} (syscall {}) of thread {} was taken by the previous agent and not "
                 "answered: serving it",
                 pid_, call.id, call.nr, call.tid);
    bool on_socket = call.nr == __NR_connect || call.nr == __NR_accept || call.nr == __NR_accept4;
    auto tgid = on_socket ? enroll::tgid_of(call.tid) : Result<pid_t>(make_error("not a socket call"));
    core::UniqueFd pidfd(tgid ? pidfd_open(*tgid) : -1);
    core::UniqueFd sock(pidfd.valid() ? pidfd_getfd(pidfd.get(), static_cast<int>(call.args[0])) : -1);
    if (sock.valid() && entry.saved_flags >= 0) ::fcntl(sock.get(), F_SETFL, entry.saved_flags);
    if (sock.valid() && call.nr == __NR_connect && notifier_.valid(call.id)) {
        tcp_info info{};
        socklen_t len = sizeof(info);
        if (::getsockopt(sock.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state != TCP_CLOSE) {
            ::shutdown(sock.get(), SHUT_RDWR);
            (void)notifier_.fail(call.id, ECONNREFUSED);
            sockaddr_storage peer{};
            socklen_t pl = sizeof(peer);
            ::getpeername(sock.get(), reinterpret_cast<sockaddr*>(&peer), &pl);
            auto target = parse_sockaddr(std::vector<uint8_t>(reinterpret_cast<uint8_t*>(&peer),
                                                              reinterpret_cast<uint8_t*>(&peer) + pl));
            auto view = service_.context().policy();
            uint32_t ident = service_.identity_of(pidfd.get());
            auto mtls = target && view ? decide_mtls(*view, ident, *target) : core::MtlsConnect{};
            std::string name = view ? runtime::spiffe_name(*view, ident) : "unattested";
            std::string reason = "the agent restarted during the handshake";
            json e = tls_event({"client", "failed", call, *tgid, name, nullptr,
                                mtls.server_identity, mtls.name, target ? target->text() : "?",
                                target ? target->port : uint16_t{0}, std::chrono::steady_clock::now()});
            e["error"] = reason;
            e["errno"] = ECONNREFUSED;
            spdlog::warn("enrolled process {}: connect() of thread {} gets ECONNREFUSED: {}", pid_, call.tid, reason);
            service_.context().emit(e);
            return;
        }
    }
    handle(call);
}

void EnrolledProcess::wait_next() {
    auto self = shared_from_this();
    watch_.async_wait(asio::posix::stream_descriptor::wait_read, [self](boost::system::error_code ec) {
        if (ec) return;
        // No task uses the filter any more: the whole process tree is gone.
        pollfd p{self->notifier_.fd(), POLLIN, 0};
        const bool ready = ::poll(&p, 1, 0) == 1;
        if (ready && (p.revents & POLLHUP) && !(p.revents & POLLIN)) {
            spdlog::info("enrolled process {} ({}) and its children have exited", self->pid_, self->command_);
            self->service_.forget(self.get());
            return;
        }
        // SECCOMP_IOCTL_NOTIF_RECV ignores O_NONBLOCK: with no notification pending it
        // sleeps until one comes, and the whole event loop with it (admin requests, every
        // other enrolled process). A wake-up that finds nothing to receive waits again.
        if (!ready || !(p.revents & POLLIN)) return self->wait_next();
        auto call = self->notifier_.receive();
        if (!call) {
            spdlog::error("enrolled process {}: {}", self->pid_, call.message());
            self->service_.forget(self.get());
            return;
        }
        if (*call) self->handle(**call);
        self->wait_next();
    });
}

void EnrolledProcess::handle(const enroll::Call& call) {
    switch (call.nr) {
        case __NR_connect:
            handle_connect(call);
            return;
        case __NR_accept:
        case __NR_accept4:
            handle_accept(call);
            return;
        case __NR_sendto:
        case __NR_sendmsg:
            handle_fastopen(call);
            return;
        default:
            (void)notifier_.allow(call.id);
    }
}

void EnrolledProcess::handle_connect(const enroll::Call& call) {
    size_t len = std::min<uint64_t>(call.args[2], kMaxSockaddr);
    auto raw = notifier_.read_memory(call, call.args[1], len);
    if (!raw) {  // a bad pointer: let the kernel give the process its EFAULT
        (void)notifier_.allow(call.id);
        return;
    }
    auto target = parse_sockaddr(std::move(*raw));
    auto view = service_.context().policy();
    // Whether a mutual-TLS destination governs it does not depend on who asks.
    auto mtls = target && view ? decide_mtls(*view, KW_IDENT_NONE, *target) : core::MtlsConnect{};
    if (!mtls.ours) {
        (void)notifier_.allow(call.id);  // not ours: the BPF gate decides as for anyone
        return;
    }
    std::make_shared<ClientConnect>(shared_from_this(), call, std::move(*target), std::move(mtls))->run();
}

void EnrolledProcess::handle_accept(const enroll::Call& call) {
    // Ours only when the process is the workload that declares this port as a
    // mutual-TLS listen port; any other accept runs as the process made it.
    auto view = service_.context().policy();
    // Most policies declare no mutual-TLS listen port: then no accept is ours, and the
    // lookups below (/proc, pidfd, the listener) are skipped.
    bool any_listen = view && std::any_of(view->policy.workloads.begin(), view->policy.workloads.end(),
                                          [](const core::Workload& w) { return !w.listen.empty(); });
    if (!any_listen) {
        (void)notifier_.allow(call.id);
        return;
    }
    auto tgid = enroll::tgid_of(call.tid);
    core::UniqueFd pidfd(tgid ? pidfd_open(*tgid) : -1);
    if (!pidfd.valid() || !notifier_.valid(call.id)) {
        (void)notifier_.allow(call.id);
        return;
    }
    uint32_t ident = service_.identity_of(pidfd.get());
    std::optional<std::string> id;
    if (ident != KW_IDENT_NONE && view) id = runtime::spiffe_name(*view, ident);
    if (id == "unattested") id.reset();
    core::UniqueFd listener(pidfd_getfd(pidfd.get(), static_cast<int>(call.args[0])));
    sockaddr_storage ss{};
    socklen_t sl = sizeof(ss);
    uint16_t port = 0;
    if (listener.valid() && ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
        if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
        if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
    if (!id || !port || !core::serves_mtls(view->policy, *id, port)) {
        spdlog::debug("enrolled process {}: accept on port {} by {} is not a mutual-TLS listen port: continues", pid_,
                      port, id.value_or("unattested"));
        (void)notifier_.allow(call.id);
        return;
    }
    std::make_shared<ServerAccept>(shared_from_this(), call, *tgid, ident, *id, std::move(listener), port)->run();
}

void EnrolledProcess::handle_fastopen(const enroll::Call& call) {
    // TCP Fast Open sends data before any handshake could run; kTLS refuses it too. To a
    // mutual-TLS destination it fails; elsewhere it continues (the BPF gate decides).
    uint64_t addr = 0, len = 0;
    if (call.nr == __NR_sendto) {
        addr = call.args[4];
        len = call.args[5];
    } else if (auto msg = notifier_.read_memory(call, call.args[1], sizeof(msghdr)); msg) {
        msghdr m{};
        std::memcpy(&m, msg->data(), sizeof(m));
        addr = reinterpret_cast<uint64_t>(m.msg_name);
        len = m.msg_namelen;
    }
    auto view = service_.context().policy();
    if (addr && view) {
        auto raw = notifier_.read_memory(call, addr, std::min<uint64_t>(len, kMaxSockaddr));
        auto target = raw ? parse_sockaddr(std::move(*raw)) : std::nullopt;
        if (target && decide_mtls(*view, KW_IDENT_NONE, *target).ours) {
            (void)notifier_.fail(call.id, EOPNOTSUPP);
            return;
        }
    }
    (void)notifier_.allow(call.id);
}

// ---- ClientConnect -----------------------------------------------------------------

void ClientConnect::run() {
    const enroll::Notifier& n = process_->notifier();
    auto view = ctx_.policy();

    // Thread -> process -> kernel-assigned identity, race-free: the pidfd is taken first,
    // then the call is checked to be still held (so the thread, hence its tgid, is alive).
    auto tgid = enroll::tgid_of(call_.tid);
    if (tgid) {
        tgid_ = *tgid;
        pidfd_ = core::UniqueFd(pidfd_open(tgid_));
    }
    if (!pidfd_.valid() || !n.valid(call_.id)) return;  // the caller is gone
    ident_ = process_->service().identity_of(pidfd_.get());
    spiffe_id_ = runtime::spiffe_name(*view, ident_);
    if (spiffe_id_ == "unattested")
        return finish_fail(EPERM, "the process is unattested: it has no SVID for mutual TLS");
    // The kernel's rule, with the caller's identity: every destination that governs the
    // address must allow it, mutual-TLS or not.
    if (auto decision = decide_mtls(*view, ident_, target_); !decision.allowed)
        return finish_fail(EPERM, decision.refusal);
    svid_ = ctx_.identity->svids().find(spiffe_id_);
    if (!svid_) return finish_fail(EPERM, "no SVID for " + spiffe_id_);
    auto expected = core::parse_spiffe_id(expected_);
    if (!expected) return finish_fail(ECONNREFUSED, "destination identity: " + expected.message());
    expected_id_ = *expected;

    int fd = pidfd_getfd(pidfd_.get(), static_cast<int>(call_.args[0]));
    if (fd < 0) return finish_fail(EBADF, std::string("pidfd_getfd: ") + std::strerror(errno));
    socket_.assign(fd);
    int type = 0, proto = 0;
    socklen_t sl = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    sl = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &sl);
    if (type != SOCK_STREAM || proto != IPPROTO_TCP) {
        socket_.close();
        (void)n.allow(call_.id);  // not TCP: the mutual-TLS destination is TCP only
        return;
    }
    // Before the socket goes anywhere: until kTLS is in, the kernel lets only the agent
    // move data on it, so another thread of the app can neither send plaintext to the
    // peer nor read the handshake. Unmarked, it is not connected (fail closed). A failed
    // handshake leaves the mark: that socket never carries plaintext.
    if (auto r = ctx_.kernel->mark_handshake(fd, ident_); !r) return finish_fail(ECONNREFUSED, r.message());
    // The app's socket is one open file with ours: the flags are shared. Work
    // non-blocking, and put back what the app had before it sees the socket again.
    saved_flags_ = ::fcntl(fd, F_GETFL);
    n.note_saved_flags(call_.id, saved_flags_);  // for the next agent, should this one die now
    ::fcntl(fd, F_SETFL, saved_flags_ | O_NONBLOCK);

    // The handshake is bounded by the agent's timeout and by the app's SO_SNDTIMEO: once
    // we hold the call, only SIGKILL interrupts the app.
    auto limit = ctx_.handshake_timeout;
    timeval tv{};
    sl = sizeof(tv);
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &sl) == 0 && (tv.tv_sec || tv.tv_usec)) {
        auto app = std::chrono::milliseconds(tv.tv_sec * 1000 + tv.tv_usec / 1000);
        if (app > std::chrono::milliseconds(0) && app < limit) limit = app;
    }
    auto self = shared_from_this();
    timer_.expires_after(limit);
    timer_.async_wait([self, limit](boost::system::error_code ec) {
        if (!ec) self->finish_fail(ETIMEDOUT, "no connection and handshake within " + std::to_string(limit.count()) + " ms");
    });
    // The handshake of a process that died is given up, not finished for no one.
    watch_exit(exit_watch_, pidfd_,
               [self] { self->finish_fail(ECONNABORTED, "the process exited during the handshake"); });

    if (::connect(fd, reinterpret_cast<const sockaddr*>(target_.raw.data()), static_cast<socklen_t>(target_.raw.size())) ==
        0) {
        connected_ = true;
        return drive();
    }
    if (errno != EINPROGRESS) return finish_fail(errno, std::string("connect: ") + std::strerror(errno));
    wait_connected();
}

void ClientConnect::wait_connected() {
    auto self = shared_from_this();
    socket_.async_wait(asio::posix::stream_descriptor::wait_write, [self](boost::system::error_code ec) {
        if (ec || self->finished_) return;
        int err = 0;
        socklen_t sl = sizeof(err);
        ::getsockopt(self->socket_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &sl);
        if (err) return self->finish_fail(err, std::string("connect: ") + std::strerror(err));
        self->connected_ = true;
        self->drive();
    });
}

void ClientConnect::drive() {
    if (finished_) return;
    if (!handshake_) {
        // The ULP goes on now, while the socket is ESTABLISHED: the server may answer and
        // close its side before our handshake is done, and what it sent must reach the app.
        if (auto r = tls::attach_tls_ulp(socket_.native_handle()); !r)
            return finish_fail(ECONNREFUSED, "kTLS: " + r.message());
        tls::HandshakeConfig cfg;
        cfg.role = tls::Role::client;
        cfg.svid = svid_;  // the SVID checked in run(), even if it rotated since
        cfg.trust = std::make_shared<const identity::TrustStore>(ctx_.identity->trust());
        cfg.check_peer = tls::expect_peer_id(*expected_id_);
        cfg.cipher = ctx_.cipher;
        if (required_cipher_) cfg.require = static_cast<tls::Cipher>(required_cipher_);
        auto hs = tls::Handshake::create(socket_.native_handle(), std::move(cfg));
        if (!hs) return finish_fail(ECONNREFUSED, hs.message());
        handshake_ = std::move(*hs);
    }
    auto self = shared_from_this();
    step_handshake(
        *handshake_, socket_, [self] { self->finish_ok(); },
        [self](const std::string& why) { self->finish_fail(ECONNREFUSED, why); }, [self] { self->drive(); });
}

void ClientConnect::restore_flags() {
    if (saved_flags_ >= 0 && socket_.is_open()) ::fcntl(socket_.native_handle(), F_SETFL, saved_flags_);
}

json ClientConnect::event(const char* result) const {
    return tls_event({"client", result, call_, tgid_, spiffe_id_, handshake_.get(), expected_, destination_,
                      target_.text(), target_.port, started_});
}

// The handshake is done. Before kTLS takes the receive side, the server's session tickets
// are read (tls/post_handshake.h). They come once the server has read (and verified) our
// last flight, so the wait scales with the handshake's own duration: for a server not
// known yet, whatever comes within twice that (50 ms to 1 s); for one known to send N,
// until N came, within four times that (200 ms to 2 s).
void ClientConnect::finish_ok() {
    if (finished_) return;
    auto keys = handshake_->traffic_keys();
    if (!keys) return finish_fail(ECONNREFUSED, "traffic keys: " + keys.message());
    keys_ = std::move(*keys);
    handshake_done_ = std::chrono::steady_clock::now();
    ticket_peer_ = destination_ + "|" + target_.text() + "|" + std::to_string(target_.port);
    tickets_expected_ = process_->service().tickets().known(ticket_peer_, handshake_done_);
    if (tickets_expected_ == 0) return install();
    using std::chrono::milliseconds;
    const auto took = handshake_done_ - started_;
    auto bound = tickets_expected_
                     ? std::clamp<std::chrono::steady_clock::duration>(4 * took, milliseconds(200), milliseconds(2000))
                     : std::clamp<std::chrono::steady_clock::duration>(2 * took, milliseconds(50), milliseconds(1000));
    ticket_deadline_ = handshake_done_ + bound;
    read_tickets();
}

void ClientConnect::read_tickets() {
    const int fd = socket_.native_handle();
    while (!finished_) {
        auto next = tls::peek_record(fd, *keys_);
        if (!next) return finish_fail(ECONNRESET, next.message());
        switch (next->kind) {
        case tls::NextRecord::ticket_record:
            if (auto r = tls::consume_record(fd, next->length); !r) return finish_fail(ECONNRESET, r.message());
            keys_->rx_sequence++;
            tickets_seen_ += next->tickets;
            if (tickets_expected_ && tickets_seen_ >= *tickets_expected_) return install();
            continue;
        case tls::NextRecord::key_update:
            return finish_fail(ECONNRESET, "the server sent KeyUpdate right after the handshake: kTLS here cannot "
                                           "take new receive keys");
        case tls::NextRecord::closed:
        case tls::NextRecord::other:
            return install();  // data, an alert or the end: kTLS delivers it to the app
        case tls::NextRecord::incomplete:
            break;
        }
        if (std::chrono::steady_clock::now() >= ticket_deadline_) return install();
        if (waiting_) return;
        waiting_ = true;
        auto self = shared_from_this();
        ticket_timer_.expires_at(ticket_deadline_);
        ticket_timer_.async_wait([self](boost::system::error_code ec) {
            if (ec || self->finished_) return;
            self->waiting_ = false;
            boost::system::error_code ignored;
            self->socket_.cancel(ignored);
            self->read_tickets();
        });
        socket_.async_wait(asio::posix::stream_descriptor::wait_read, [self](boost::system::error_code ec) {
            if (ec || self->finished_) return;
            self->waiting_ = false;
            self->ticket_timer_.cancel();
            self->read_tickets();
        });
        return;
    }
}

void ClientConnect::install() {
    if (finished_) return;
    process_->service().tickets().learn(ticket_peer_, tickets_seen_, std::chrono::steady_clock::now());
    const tls::TrafficKeys& keys = *keys_;
    if (auto r = tls::set_traffic_keys(socket_.native_handle(), keys); !r)
        return finish_fail(ECONNREFUSED, "kTLS: " + r.message());
#ifdef KW_TEST_HOOKS
    testhooks::dump_traffic_keys("client", tgid_, spiffe_id_, socket_.native_handle(), keys);
#endif
    // Fail closed: a socket whose keys the app could read back is not handed over.
    if (auto r = ctx_.kernel->mark_managed(socket_.native_handle(), ident_); !r)
        return finish_fail(ECONNREFUSED, r.message());
    finished_ = true;
    timer_.cancel();
    ticket_timer_.cancel();
    keys_.reset();
    restore_flags();
    boost::system::error_code ignored;
    exit_watch_.close(ignored);
    socket_.close(ignored);  // the app's descriptor is the one left
    (void)process_->notifier().succeed(call_.id, 0);
    json e = event("ok");
    e["session_tickets"] = tickets_seen_;
    e["ticket_wait_us"] = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                                handshake_done_)
                              .count();
    spdlog::info("mTLS {} -> {} ({}:{}) as {}: {}, kTLS installed", spiffe_id_, e["peer_id"].get<std::string>(),
                 target_.text(), target_.port, "client", e["cipher"].get<std::string>());
    ctx_.emit(e);
}

void ClientConnect::finish_fail(int error, const std::string& reason) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    ticket_timer_.cancel();
    keys_.reset();
    boost::system::error_code closed;
    exit_watch_.close(closed);
    if (socket_.is_open()) {
        // Whatever state the connection is in, nothing may pass on it in plaintext. The
        // handshake mark stays (the kernel keeps refusing data to the app). A connect
        // still in progress is aborted (AF_UNSPEC disconnects), so it never completes
        // behind the app's back.
        if (connected_) {
            ::shutdown(socket_.native_handle(), SHUT_RDWR);
        } else {
            sockaddr unspec{};
            unspec.sa_family = AF_UNSPEC;
            ::connect(socket_.native_handle(), &unspec, sizeof(unspec));
        }
        restore_flags();
        boost::system::error_code ignored;
        socket_.cancel(ignored);
        socket_.close(ignored);
    }
    (void)process_->notifier().fail(call_.id, error);
    json e = event("failed");
    e["error"] = reason;
    e["errno"] = error;
    spdlog::warn("mTLS for {} (pid {}) to {}:{} failed, connect() gets {}: {}", spiffe_id_, tgid_, target_.text(),
                 target_.port, std::strerror(error), reason);
    ctx_.emit(e);
}

// ---- ServerAccept ------------------------------------------------------------------

void ServerAccept::run() {
    // A server killed in accept() must not leave its port listening in the agent (our
    // copy of the listener) until some client happens to connect.
    core::UniqueFd pidfd(pidfd_open(tgid_));
    if (!pidfd.valid() || !process_->notifier().valid(call_.id)) return finish(ECONNABORTED);  // the caller is gone
    auto self = shared_from_this();
    watch_exit(exit_watch_, pidfd, [self] { self->finish(ECONNABORTED); });
    int fd = listener_.native_handle();
    listener_flags_ = ::fcntl(fd, F_GETFL);
    process_->notifier().note_saved_flags(call_.id, listener_flags_);
    app_nonblocking_ = listener_flags_ >= 0 && (listener_flags_ & O_NONBLOCK);
    ::fcntl(fd, F_SETFL, listener_flags_ | O_NONBLOCK);
    // A client that connects and stays silent is not accepted until its ClientHello
    // arrives (or the timeout passes), so it cannot hold the app's accept().
    int defer = static_cast<int>(std::max<int64_t>(1, ctx_.handshake_timeout.count() / 1000));
    ::setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    try_accept();
}

void ServerAccept::try_accept() {
    if (finished_) return;
    peer_len_ = sizeof(peer_);
    int fd = ::accept4(listener_.native_handle(), reinterpret_cast<sockaddr*>(&peer_), &peer_len_,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            if (app_nonblocking_) return finish(EAGAIN);
            // A blocking accept(): the app waits with us for the next connection.
            auto self = shared_from_this();
            listener_.async_wait(asio::posix::stream_descriptor::wait_read, [self](boost::system::error_code ec) {
                if (!ec) self->try_accept();
            });
            return;
        }
        if (err == ECONNABORTED || err == EINTR) return try_accept();
        return finish(err);
    }
    auto parsed = parse_sockaddr(std::vector<uint8_t>(reinterpret_cast<uint8_t*>(&peer_),
                                                      reinterpret_cast<uint8_t*>(&peer_) + peer_len_));
    peer_text_ = parsed ? parsed->text() + ":" + std::to_string(parsed->port) : "?";
    conn_.assign(fd);
    started_ = std::chrono::steady_clock::now();
    auto view = ctx_.policy();
    tls::HandshakeConfig cfg;
    cfg.role = tls::Role::server;
    cfg.svid = ctx_.identity->svids().find(spiffe_id_);
    cfg.trust = std::make_shared<const identity::TrustStore>(ctx_.identity->trust());
    cfg.cipher = ctx_.cipher;
    std::string server = spiffe_id_;
    cfg.check_peer = [view, server](const core::SpiffeId& peer) -> Result<void> {
        if (view && core::rule_admitting(view->policy, peer.str(), server)) return {};
        return make_error("no rule lets " + peer.str() + " reach " + server);
    };
    if (!cfg.svid) return finish(ECONNABORTED);
    // The ULP goes on before the handshake, while the client waits for our answer: once
    // its Finished is out it may write, half-close or reset at once (`printf ... | nc -N`),
    // and what it wrote must reach the app.
    if (auto r = tls::attach_tls_ulp(conn_.native_handle()); !r) return drop("kTLS: " + r.message());
    auto hs = tls::Handshake::create(conn_.native_handle(), std::move(cfg));
    if (!hs) return drop(hs.message());
    handshake_ = std::move(*hs);
    auto self = shared_from_this();
    timer_.expires_after(ctx_.handshake_timeout);
    timer_.async_wait([self](boost::system::error_code ec) {
        if (!ec) self->drop("no handshake within " + std::to_string(self->ctx_.handshake_timeout.count()) + " ms");
    });
    drive();
}

void ServerAccept::drive() {
    if (finished_ || !handshake_) return;
    auto self = shared_from_this();
    step_handshake(
        *handshake_, conn_, [self] { self->finish_ok(); }, [self](const std::string& why) { self->drop(why); },
        [self] { self->drive(); });
}

json ServerAccept::event(const char* result, const std::string& error) const {
    json e = tls_event({"server", result, call_, tgid_, spiffe_id_, handshake_.get(), "any client a rule admits",
                        "listen:" + std::to_string(port_), peer_text_, port_, started_});
    if (!error.empty()) e["error"] = error;
    return e;
}

// A connection that failed its handshake never reaches the app: close it, take the next.
void ServerAccept::drop(const std::string& reason) {
    if (finished_) return;
    timer_.cancel();
    json e = event("failed", reason);
    spdlog::warn("mTLS server {} (pid {}) dropped a connection from {}: {}", spiffe_id_, tgid_, peer_text_, reason);
    ctx_.emit(e);
    handshake_.reset();
    boost::system::error_code ignored;
    conn_.cancel(ignored);
    conn_.close(ignored);
    try_accept();
}

void ServerAccept::finish_ok() {
    timer_.cancel();
    auto keys = handshake_->traffic_keys();
    if (!keys) return drop("traffic keys: " + keys.message());
    int fd = conn_.native_handle();
    if (auto r = tls::set_traffic_keys(fd, *keys); !r) return drop("kTLS: " + r.message());
#ifdef KW_TEST_HOOKS
    testhooks::dump_traffic_keys("server", tgid_, spiffe_id_, fd, *keys);
#endif
    if (auto r = ctx_.kernel->mark_managed(fd, ident_); !r) return drop(r.message());
    // The app asked for these flags with accept4 (none with accept).
    int flags = call_.nr == __NR_accept4 ? static_cast<int>(call_.args[3]) : 0;
    int fl = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, (flags & SOCK_NONBLOCK) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
    const enroll::Notifier& n = process_->notifier();
    if (call_.args[1] && call_.args[2]) {  // the peer address, as accept() writes it
        auto len = n.read_memory(call_, call_.args[2], sizeof(socklen_t));
        if (len) {
            socklen_t room = 0;
            std::memcpy(&room, len->data(), sizeof(room));
            (void)n.write_memory(call_, call_.args[1], &peer_, std::min(room, peer_len_));
            (void)n.write_memory(call_, call_.args[2], &peer_len_, sizeof(peer_len_));
        }
    }
    finished_ = true;
    if (listener_flags_ >= 0) ::fcntl(listener_.native_handle(), F_SETFL, listener_flags_);
    auto sent = n.send_fd(call_.id, fd, (flags & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
    json e = event(sent ? "ok" : "failed", sent ? "" : sent.message());
    if (sent)
        spdlog::info("mTLS {} <- {} ({}) as server: {}, kTLS installed", spiffe_id_, handshake_->peer_id().str(),
                     peer_text_, handshake_->cipher_name());
    ctx_.emit(e);
    boost::system::error_code ignored;
    exit_watch_.close(ignored);
    conn_.close(ignored);
    listener_.close(ignored);
}

void ServerAccept::finish(int error) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    if (listener_flags_ >= 0) ::fcntl(listener_.native_handle(), F_SETFL, listener_flags_);
    (void)process_->notifier().fail(call_.id, error);
    boost::system::error_code ignored;
    exit_watch_.close(ignored);
    conn_.close(ignored);
    listener_.close(ignored);
}

// ---- EnrollmentService -------------------------------------------------------------

namespace {

// The kernel of an EnrollContext without one: no identity, every mark refused.
class NoKernel final : public runtime::KernelPort {
public:
    uint32_t identity_of(int) override { return KW_IDENT_NONE; }
    Result<void> mark_handshake(int, uint32_t) override { return make_error("no kernel port"); }
    Result<void> mark_managed(int, uint32_t) override { return make_error("no kernel port"); }
    Result<void> mark_enrolled(int) override { return make_error("no kernel port"); }
};

runtime::KernelPort* no_kernel() {
    static NoKernel none;
    return &none;
}

}  // namespace

EnrollmentService::EnrollmentService(asio::io_context& io, EnrollContext context)
    : io_(io),
      context_(std::move(context)),
      limits_(std::make_shared<core::PeerLimits>(kPendingPerUid, core::kRefusalReportInterval)),
      acceptor_(io),
      accept_(io, acceptor_, "enrolment socket", [this](local::socket s) { on_connection(std::move(s)); }) {
    if (!context_.kernel) context_.kernel = no_kernel();
}

EnrollmentService::~EnrollmentService() = default;

Result<void> EnrollmentService::listen(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    ::unlink(path.c_str());
    boost::system::error_code bec;
    acceptor_.open(local(), bec);
    if (!bec) acceptor_.bind(local::endpoint(path), bec);
    if (!bec) acceptor_.listen(asio::socket_base::max_listen_connections, bec);
    if (bec) return make_error("cannot listen on enrolment socket " + path + ": " + bec.message());
    ::chmod(path.c_str(), 0666);  // any user enrols their own processes; the agent checks who
    accept_.start();
    return {};
}

void EnrollmentService::on_connection(local::socket socket) {
    ucred cred{};
    socklen_t cl = sizeof(cred);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) return;
    auto slot = limits_->admit(cred.uid);
    if (!slot) {
        // Answered without waiting (the line fits a fresh socket's buffer) and closed.
        std::string line = core::json_text({{"ok", false},
                                            {"error", "too many connections from uid " + std::to_string(cred.uid) +
                                                          " waiting to enrol (limit " +
                                                          std::to_string(kPendingPerUid) + "): refused"}}) +
                           "\n";
        (void)::send(socket.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        return refused(cred.uid, "peer_limit");
    }
    on_hello(std::make_shared<local::socket>(std::move(socket)), std::move(slot));
}

void EnrollmentService::refused(uid_t uid, const std::string& reason) {
    auto r = limits_->refuse(uid, reason, core::PeerLimits::Clock::now());
    if (r.count == 0) return;
    spdlog::warn("enrolment socket: refused uid {}: {} (this uid's first in {} s; the rest are summed up)", uid,
                 reason == "idle" ? "no hello within " + std::to_string(kHelloTimeout.count()) + " s"
                                  : "more than " + std::to_string(kPendingPerUid) + " connections waiting",
                 core::kRefusalReportInterval.count());
    context_.emit(refused_event("enroll", r));
}

void EnrollmentService::report_refusals(core::PeerLimits::Clock::time_point now) {
    for (const auto& r : limits_->flush(now)) context_.emit(refused_event("enroll", r));
}

json EnrollmentService::socket_status() const {
    return {{"accept_errors", accept_.errors()},
            {"refused_peer_limit", limits_->refused("peer_limit")},
            {"idle_timeouts", limits_->refused("idle")},
            {"pending_per_uid_limit", kPendingPerUid}};
}

void EnrollmentService::forget(EnrolledProcess* process) { processes_.erase(process); }

Result<size_t> EnrollmentService::adopt() {
    if (context_.holder_socket.empty()) return size_t{0};
    auto attached = enroll::HolderClient::attach_or_spawn(context_.holder_socket, ::getpid());
    if (!attached) return attached.error();
    holder_.emplace(std::move(attached->client));
    watch_holder();
    size_t adopted = 0;
    for (auto& held : attached->held) {
        std::optional<enroll::Journal> journal;
        if (held.journal.valid()) {
            auto j = enroll::Journal::adopt(std::move(held.journal));
            if (j)
                journal.emplace(std::move(*j));
            else
                spdlog::warn("adopted process {}: its journal is unusable ({}): calls the previous agent held are lost",
                             held.pid, j.message());
        }
        auto process = std::make_shared<EnrolledProcess>(*this, std::move(held.listener), std::move(journal), held.pid,
                                                         held.uid, held.command);
        processes_[process.get()] = process;
        size_t resumed = process->start();
        ++adopted;
        spdlog::info("adopted enrolled process {} (uid {}, {}) from the listener holder, {} held call(s) resumed",
                     held.pid, held.uid, held.command, resumed);
        context_.emit({{"type", "enroll"},
                       {"time", now_rfc3339()},
                       {"pid", held.pid},
                       {"uid", held.uid},
                       {"command", held.command},
                       {"adopted", true},
                       {"resumed_calls", resumed}});
    }
    return adopted;
}

// The holder's end of our connection closes only when it died: a new one is started and
// given every listener again, before this agent could die too and take them along.
void EnrollmentService::watch_holder() {
    if (!holder_) return;
    if (!holder_watch_) holder_watch_.emplace(io_, ::dup(holder_->fd()));
    holder_watch_->async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
        if (ec || !holder_) return;
        char byte;
        ssize_t n = ::recv(holder_->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != 0 && !(n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return watch_holder();
        spdlog::error("the listener holder went away: starting a new one and depositing {} listener(s) again",
                      processes_.size());
        if (auto r = reattach(); !r) spdlog::error("{}", r.message());
    });
}

Result<void> EnrollmentService::reattach() {
    holder_watch_.reset();
    holder_.reset();
    auto attached = enroll::HolderClient::attach_or_spawn(context_.holder_socket, ::getpid());
    if (!attached)
        return make_error("no listener holder (" + attached.message() +
                          "): enrolled processes would not survive an agent restart");
    holder_.emplace(std::move(attached->client));
    watch_holder();
    for (auto& [raw, process] : processes_) {
        const auto& n = process->notifier();
        // The same holder, met again (our connection failed, not the holder): what it
        // still keeps is not deposited twice.
        bool kept = std::any_of(attached->held.begin(), attached->held.end(), [&](const enroll::HeldListener& h) {
            return same_open_file(h.listener.get(), n.fd());
        });
        if (kept) continue;
        auto key = holder_->deposit(process->pid(), process->uid(), process->command(), n.fd(),
                                    n.journal() ? n.journal()->fd() : -1);
        if (!key) return make_error("depositing the listener of process " + std::to_string(process->pid()) + ": " +
                                    key.message());
    }
    return {};
}

Result<void> EnrollmentService::deposit(EnrolledProcess& process) {
    if (context_.holder_socket.empty()) return {};
    const auto& n = process.notifier();
    if (holder_) {
        auto key = holder_->deposit(process.pid(), process.uid(), process.command(), n.fd(),
                                    n.journal() ? n.journal()->fd() : -1);
        if (key) return {};
        spdlog::warn("listener holder: {}: attaching again", key.message());
    }
    // Re-attaching deposits every listener we serve, this one included.
    return reattach();
}

struct EnrollmentService::Hello {
    core::UniqueFd listener;
    core::UniqueFd pidfd;
    ucred cred;
    std::string command;
    std::shared_ptr<core::PeerLimits::Slot> slot;  // held until the hello is answered
};

namespace {

void reply_to(local::socket& socket, const json& j) {
    std::string line = core::json_text(j) + "\n";
    boost::system::error_code ignored;
    asio::write(socket, asio::buffer(line), ignored);
}

}  // namespace

void EnrollmentService::on_hello(std::shared_ptr<local::socket> socket, std::shared_ptr<core::PeerLimits::Slot> slot) {
    // The slot is held until the hello is answered or the peer is timed out.
    auto timer = std::make_shared<asio::steady_timer>(io_, kHelloTimeout);
    timer->async_wait([this, socket, slot](boost::system::error_code ec) {
        if (ec || !socket->is_open()) return;
        ucred cred{};
        socklen_t cl = sizeof(cred);
        if (::getsockopt(socket->native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) refused(cred.uid, "idle");
        boost::system::error_code ignored;
        socket->close(ignored);  // the wait below ends with an error
    });
    socket->async_wait(local::socket::wait_read, [this, socket, slot, timer](boost::system::error_code ec) {
        timer->cancel();
        if (ec) return;
        auto reply = [&](const json& j) {
            std::string line = core::json_text(j) + "\n";
            boost::system::error_code ignored;
            asio::write(*socket, asio::buffer(line), ignored);
        };
        auto msg = enroll::receive_message(socket->native_handle(), 4095, MSG_DONTWAIT);
        if (!msg) return;
        auto request = json::parse(msg->text, nullptr, false);
        ucred cred{};
        socklen_t cl = sizeof(cred);
        if (::getsockopt(socket->native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0)
            return reply({{"ok", false}, {"error", "cannot read the peer's credentials"}});
        if (!request.is_object() || core::json_string(request, "op", "") != "enroll" || !request.contains("pid") ||
            !request["pid"].is_number_integer())
            return reply({{"ok", false}, {"error", "expected {\"op\":\"enroll\",\"pid\":N} with one listener fd"}});
        if (msg->fds.size() != 1)
            return reply({{"ok", false}, {"error", "expected exactly one file descriptor, the seccomp listener"}});
        // A process enrols itself: the pid it names is the one on the other end.
        if (request["pid"].get<int64_t>() != cred.pid)
            return reply({{"ok", false}, {"error", "the pid in the request is not the caller's"}});
        core::UniqueFd pidfd(pidfd_open(cred.pid));
        if (!pidfd.valid()) return reply({{"ok", false}, {"error", "the caller is gone"}});
        // The descriptor must be a seccomp listener, told by its anonymous inode before any
        // ioctl is sent to it (an ioctl on an arbitrary file could do anything).
        if (!is_seccomp_listener(msg->fds[0].get()))
            return reply({{"ok", false}, {"error", "the descriptor is not a seccomp listener"}});
        auto hello = std::make_shared<Hello>(Hello{std::move(msg->fds[0]), std::move(pidfd), cred,
                                                    core::json_string(request, "command", "?"), slot});
        claim_then_enrol(socket, std::move(hello), std::chrono::steady_clock::now() + kClaimWait);
    });
}


// Before the reply lets the launcher exec: an exec under a listener the kernel does not
// know as the agent's alone gets no identity. The launcher closes its copy right after
// sending it; until that close lands the claim is retried on a timer, so that a slow
// launcher (or many at once) never stalls the loop.
void EnrollmentService::claim_then_enrol(std::shared_ptr<local::socket> socket, std::shared_ptr<Hello> hello,
                                         std::chrono::steady_clock::time_point deadline) {
    if (!socket->is_open()) return;
    auto claimed = enroll::try_claim_listener(hello->listener.get());
    if (!claimed) return reply_to(*socket, {{"ok", false}, {"error", claimed.message()}});
    if (!*claimed) {
        if (std::chrono::steady_clock::now() >= deadline)
            return reply_to(*socket, {{"ok", false},
                                      {"error", "another copy of the seccomp listener is still open (the enrolling "
                                                "process kept or passed one on): whoever holds it could answer the "
                                                "process's calls"}});
        auto timer = std::make_shared<asio::steady_timer>(io_, kClaimRetry);
        timer->async_wait([this, socket, hello, deadline, timer](boost::system::error_code ec) {
            if (!ec) claim_then_enrol(socket, hello, deadline);
        });
        return;
    }
    enrol(*socket, *hello);
}

void EnrollmentService::enrol(local::socket& socket, Hello& hello) {
    auto reply = [&](const json& j) { reply_to(socket, j); };
    const ucred& cred = hello.cred;
    const std::string& command = hello.command;
    std::optional<enroll::Journal> journal;
    if (!context_.holder_socket.empty()) {
        auto j = enroll::Journal::create();
        if (!j) return reply({{"ok", false}, {"error", "the agent cannot journal held calls: " + j.message()}});
        journal.emplace(std::move(*j));
    }
    auto process = std::make_shared<EnrolledProcess>(*this, std::move(hello.listener), std::move(journal), cred.pid,
                                                     cred.uid, command);
    // Fail closed on availability too: a listener the holder does not keep would make
    // every trapped call of the process fail with ENOSYS after an agent restart.
    processes_[process.get()] = process;
    if (auto r = deposit(*process); !r) {
        processes_.erase(process.get());
        spdlog::error("refusing to enrol process {} ({}): {}", cred.pid, command, r.message());
        return reply({{"ok", false}, {"error", "the agent cannot keep the listener across restarts: " + r.message()}});
    }
    if (auto r = context_.kernel->mark_enrolled(hello.pidfd.get()); !r)
        spdlog::warn("enrolled process {}: {}", cred.pid, r.message());
    process->start();
    spdlog::info("enrolled process {} (uid {}, {})", cred.pid, cred.uid, command);
    context_.emit({{"type", "enroll"}, {"time", now_rfc3339()}, {"pid", cred.pid}, {"uid", cred.uid}, {"command", command}});
    reply({{"ok", true}});
}

}  // namespace kw::io
