// Held calls of enrolled processes, and their mutual-TLS sessions (see sessions.h).
#include "runtime/sessions.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/mtls.h"
#include "runtime/handshake_run.h"
#include "runtime/held_call.h"
#include "tls/handshake.h"

namespace kw::runtime {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxSockaddr = 128;

// The kernel of a Context without one: no identity, every mark refused.
class NoKernel final : public KernelPort {
public:
    uint32_t identity_of(int) override { return KW_IDENT_NONE; }
    Result<void> mark_handshake(int, uint32_t) override { return make_error("no kernel port"); }
    Result<void> mark_managed(int, uint32_t) override { return make_error("no kernel port"); }
    Result<void> mark_enrolled(int) override { return make_error("no kernel port"); }
    Result<void> attach_tls(int) override { return make_error("no kernel port"); }
    Result<void> install_keys(int, const tls::TrafficKeys&) override { return make_error("no kernel port"); }
};

KernelPort& kernel_of(const Context& ctx) { return ctx.kernel ? *ctx.kernel : no_kernel(); }

// A descriptor of ours and the loop's watch on it: the watch goes first, then the
// descriptor (the loop must let go of it before it is closed).
struct Watched {
    core::UniqueFd fd;
    std::unique_ptr<Readiness> ready;

    void take(Loop& loop, core::UniqueFd f) {
        close();
        fd = std::move(f);
        ready = loop.watch(fd.get());
    }
    bool open() const { return fd.valid(); }
    int get() const { return fd.get(); }
    void close() {
        ready.reset();
        fd.reset();
    }
    ~Watched() { close(); }
};

std::optional<Target> target_of(const sockaddr_storage& ss, socklen_t len) {
    auto* b = reinterpret_cast<const uint8_t*>(&ss);
    return parse_sockaddr(std::vector<uint8_t>(b, b + len));
}

// The client side of one mutual-TLS connection made for a held connect().
class ClientConnect : public std::enable_shared_from_this<ClientConnect> {
public:
    ClientConnect(const Context& ctx, std::shared_ptr<CallPort> calls, enroll::Call call, Target target,
                  core::MtlsConnect mtls)
        : ctx_(ctx),
          calls_(std::move(calls)),
          call_(call),
          target_(std::move(target)),
          destination_(std::move(mtls.name)),
          expected_(mtls.server_identity),
          required_cipher_(mtls.tls_cipher),
          timer_(ctx.loop->timer()),
          ticket_timer_(ctx.loop->timer()),
          started_(Clock::now()) {}

    void run();

private:
    void wait_connected();
    void drive();
    void finish_ok();
    void read_tickets();
    void install();
    void finish_fail(int error, const std::string& reason);
    void stop_waiting();
    void restore_flags();
    json event(const char* result) const;

    const Context& ctx_;
    std::shared_ptr<CallPort> calls_;
    enroll::Call call_;
    Target target_;
    pid_t tgid_ = 0;
    uint32_t ident_ = KW_IDENT_NONE;  // the kernel's identity of the caller
    std::string spiffe_id_ = "unattested";
    std::string destination_;
    std::string expected_;      // the server's SPIFFE ID, as the policy names it
    uint16_t required_cipher_;  // the destination's "tls_cipher", 0 any
    std::shared_ptr<const identity::Svid> svid_;
    std::optional<core::SpiffeId> expected_id_;
    Watched socket_;  // our copy of the process's socket
    // The caller's pidfd once the handshake runs: readable when the process has exited.
    Watched exit_;
    int saved_flags_ = -1;
    bool connected_ = false;
    bool finished_ = false;
    std::unique_ptr<Timer> timer_;
    std::unique_ptr<Timer> ticket_timer_;
    std::shared_ptr<HandshakeRun> handshake_;
    Clock::time_point started_;
    // After the handshake: the keys kTLS gets once the server's tickets are read.
    std::optional<tls::TrafficKeys> keys_;
    std::string ticket_peer_;  // destination, address and port: what the ticket count is learned for
    std::optional<int> tickets_expected_;
    int tickets_seen_ = 0;
    Clock::time_point handshake_done_;
    Clock::time_point ticket_deadline_;
    bool waiting_ = false;
};

void ClientConnect::run() {
    auto view = ctx_.policy();
    auto caller = calls_->caller(call_);
    if (!caller || !view) return;  // the caller is gone (or no policy: nothing is ours)
    tgid_ = caller->tgid;
    ident_ = kernel_of(ctx_).identity_of(caller->pidfd.get());
    spiffe_id_ = spiffe_name(*view, ident_);
    if (spiffe_id_ == "unattested")
        return finish_fail(EPERM, "the process is unattested: it has no SVID for mutual TLS");
    // The kernel's rule, with the caller's identity: every destination that governs the
    // address must allow it, mutual-TLS or not.
    if (auto decision = decide_mtls(*view, ident_, target_); !decision.allowed)
        return finish_fail(EPERM, decision.refusal);
    svid_ = ctx_.identity ? ctx_.identity->svids().find(spiffe_id_) : nullptr;
    if (!svid_) return finish_fail(EPERM, "no SVID for " + spiffe_id_);
    auto expected = core::parse_spiffe_id(expected_);
    if (!expected) return finish_fail(ECONNREFUSED, "destination identity: " + expected.message());
    expected_id_ = *expected;

    auto taken = calls_->take_fd(*caller, static_cast<int>(call_.args[0]));
    if (!taken) return finish_fail(EBADF, taken.message());
    const int fd = taken->get();
    int type = 0, proto = 0;
    socklen_t sl = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    sl = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &sl);
    if (type != SOCK_STREAM || proto != IPPROTO_TCP) {
        (void)calls_->allow(call_.id);  // not TCP: the mutual-TLS destination is TCP only
        return;
    }
    socket_.take(*ctx_.loop, std::move(*taken));
    // Before the socket goes anywhere: until kTLS is in, the kernel lets only the agent
    // move data on it, so another thread of the app can neither send plaintext to the
    // peer nor read the handshake. Unmarked, it is not connected (fail closed). A failed
    // handshake leaves the mark: that socket never carries plaintext.
    if (auto r = kernel_of(ctx_).mark_handshake(fd, ident_); !r) return finish_fail(ECONNREFUSED, r.message());
    // The app's socket is one open file with ours: the flags are shared. Work
    // non-blocking, and put back what the app had before it sees the socket again.
    saved_flags_ = ::fcntl(fd, F_GETFL);
    calls_->note_saved_flags(call_.id, saved_flags_);  // for the next agent, should this one die now
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
    timer_->after(limit, [self, limit] {
        self->finish_fail(ETIMEDOUT, "no connection and handshake within " + std::to_string(limit.count()) + " ms");
    });
    // The handshake of a process that died is given up, not finished for no one.
    exit_.take(*ctx_.loop, std::move(caller->pidfd));
    exit_.ready->wait(Readiness::For::read,
                      [self] { self->finish_fail(ECONNABORTED, "the process exited during the handshake"); });

    if (::connect(fd, reinterpret_cast<const sockaddr*>(target_.raw.data()),
                  static_cast<socklen_t>(target_.raw.size())) == 0) {
        connected_ = true;
        return drive();
    }
    if (errno != EINPROGRESS) return finish_fail(errno, std::string("connect: ") + std::strerror(errno));
    wait_connected();
}

void ClientConnect::wait_connected() {
    auto self = shared_from_this();
    socket_.ready->wait(Readiness::For::write, [self] {
        if (self->finished_) return;
        int err = 0;
        socklen_t sl = sizeof(err);
        ::getsockopt(self->socket_.get(), SOL_SOCKET, SO_ERROR, &err, &sl);
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
        if (auto r = kernel_of(ctx_).attach_tls(socket_.get()); !r) return finish_fail(ECONNREFUSED, "kTLS: " + r.message());
        tls::HandshakeConfig cfg;
        cfg.role = tls::Role::client;
        cfg.svid = svid_;  // the SVID checked in run(), even if it rotated since
        cfg.trust = ctx_.identity->trust_ptr();
        cfg.contexts = ctx_.contexts;
        cfg.check_peer = tls::expect_peer_id(*expected_id_);
        cfg.cipher = ctx_.cipher;
        if (required_cipher_) cfg.require = static_cast<tls::Cipher>(required_cipher_);
        auto hs = HandshakeRun::start(socket_.get(), std::move(cfg), ctx_.handshakes);
        if (!hs) return finish_fail(ECONNREFUSED, hs.message());
        handshake_ = std::move(*hs);
    }
    auto self = shared_from_this();
    step_handshake(ctx_.handshakes, handshake_,
                   {[self] { return !self->finished_; }, [self] { self->finish_ok(); },
                    [self](const std::string& why) { self->finish_fail(ECONNREFUSED, why); },
                    [self](Readiness::For what, std::function<void()> ready) {
                        self->socket_.ready->wait(what, std::move(ready));
                    }});
}

void ClientConnect::restore_flags() {
    if (saved_flags_ >= 0 && socket_.open()) ::fcntl(socket_.get(), F_SETFL, saved_flags_);
}

json ClientConnect::event(const char* result) const {
    return tls_event({"client", result, call_, tgid_, spiffe_id_, handshake_ ? handshake_->settled() : nullptr, expected_, destination_,
                      target_.text(), target_.port, started_});
}

// The handshake is done. Before kTLS takes the receive side, the server's session tickets
// are read (tls/post_handshake.h). They come once the server has read (and verified) our
// last flight, so the wait scales with the handshake's own duration: for a server not
// known yet, whatever comes within twice that (50 ms to 1 s); for one known to send N,
// until N came, within four times that (200 ms to 2 s).
void ClientConnect::finish_ok() {
    if (finished_) return;
    auto keys = handshake_->hs->traffic_keys();
    if (!keys) return finish_fail(ECONNREFUSED, "traffic keys: " + keys.message());
    keys_ = std::move(*keys);
    handshake_done_ = Clock::now();
    ticket_peer_ = destination_ + "|" + target_.text() + "|" + std::to_string(target_.port);
    tickets_expected_ = ctx_.tickets ? ctx_.tickets->known(ticket_peer_, handshake_done_) : std::nullopt;
    if (tickets_expected_ == 0) return install();
    using std::chrono::milliseconds;
    const auto took = handshake_done_ - started_;
    auto bound = tickets_expected_ ? std::clamp<Clock::duration>(4 * took, milliseconds(200), milliseconds(2000))
                                   : std::clamp<Clock::duration>(2 * took, milliseconds(50), milliseconds(1000));
    ticket_deadline_ = handshake_done_ + bound;
    read_tickets();
}

void ClientConnect::read_tickets() {
    const int fd = socket_.get();
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
        if (Clock::now() >= ticket_deadline_) return install();
        if (waiting_) return;
        waiting_ = true;
        auto self = shared_from_this();
        ticket_timer_->at(ticket_deadline_, [self] {
            if (self->finished_) return;
            self->waiting_ = false;
            self->socket_.ready->cancel();
            self->read_tickets();
        });
        socket_.ready->wait(Readiness::For::read, [self] {
            if (self->finished_) return;
            self->waiting_ = false;
            self->ticket_timer_->cancel();
            self->read_tickets();
        });
        return;
    }
}

void ClientConnect::install() {
    if (finished_) return;
    if (ctx_.tickets) ctx_.tickets->learn(ticket_peer_, tickets_seen_, Clock::now());
    const tls::TrafficKeys& keys = *keys_;
    if (auto r = kernel_of(ctx_).install_keys(socket_.get(), keys); !r)
        return finish_fail(ECONNREFUSED, "kTLS: " + r.message());
    if (ctx_.keys_installed) ctx_.keys_installed("client", tgid_, spiffe_id_, socket_.get(), keys);
    // Fail closed: a socket whose keys the app could read back is not handed over.
    if (auto r = kernel_of(ctx_).mark_managed(socket_.get(), ident_); !r) return finish_fail(ECONNREFUSED, r.message());
    finished_ = true;
    stop_waiting();
    restore_flags();
    socket_.close();  // the app's descriptor is the one left
    json e = event("ok");
    e["session_tickets"] = tickets_seen_;
    e["ticket_wait_us"] =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - handshake_done_).count();
    spdlog::info("mTLS {} -> {} ({}:{}) as {}: {}, kTLS installed", spiffe_id_, e["peer_id"].get<std::string>(),
                 target_.text(), target_.port, "client", e["cipher"].get<std::string>());
    // The event before the answer: the process is still held, so the event can name its
    // container (read from its cgroup); answered, it may exit at once.
    if (ctx_.emit) ctx_.emit(e);
    handshake_.reset();  // its descriptor too: the app's is the one left
    (void)calls_->succeed(call_.id, 0);
}

void ClientConnect::stop_waiting() {
    timer_->cancel();
    ticket_timer_->cancel();
    keys_.reset();
    exit_.close();
}

void ClientConnect::finish_fail(int error, const std::string& reason) {
    if (finished_) return;
    finished_ = true;
    stop_waiting();
    if (socket_.open()) {
        // Whatever state the connection is in, nothing may pass on it in plaintext. The
        // handshake mark stays (the kernel keeps refusing data to the app). A connect
        // still in progress is aborted (AF_UNSPEC disconnects), so it never completes
        // behind the app's back.
        if (connected_) {
            ::shutdown(socket_.get(), SHUT_RDWR);
        } else {
            sockaddr unspec{};
            unspec.sa_family = AF_UNSPEC;
            ::connect(socket_.get(), &unspec, sizeof(unspec));
        }
        restore_flags();
        socket_.close();
    }
    json e = event("failed");
    e["error"] = reason;
    e["errno"] = error;
    spdlog::warn("mTLS for {} (pid {}) to {}:{} failed, connect() gets {}: {}", spiffe_id_, tgid_, target_.text(),
                 target_.port, std::strerror(error), reason);
    if (ctx_.emit) ctx_.emit(e);  // before the answer, as in install()
    handshake_.reset();           // a step still running keeps it until it is over
    (void)calls_->fail(call_.id, error);
}

// The server side: one held accept()/accept4() on a workload's mutual-TLS listen port.
// The agent accepts on its copy of the listener, handshakes as server (client
// certificate required, the client's identity checked against the rules), installs kTLS
// and hands the connection over as the call's result, writing the peer address. A
// connection whose handshake fails is dropped and the next one taken: the app never sees
// it.
class ServerAccept : public std::enable_shared_from_this<ServerAccept> {
public:
    ServerAccept(const Context& ctx, std::shared_ptr<CallPort> calls, enroll::Call call, Caller caller,
                 uint32_t ident, std::string spiffe_id, core::UniqueFd listener, uint16_t port)
        : ctx_(ctx),
          calls_(std::move(calls)),
          call_(call),
          tgid_(caller.tgid),
          ident_(ident),
          spiffe_id_(std::move(spiffe_id)),
          port_(port),
          timer_(ctx.loop->timer()) {
        listener_.take(*ctx.loop, std::move(listener));
        exit_.take(*ctx.loop, std::move(caller.pidfd));
    }

    void run();

private:
    void try_accept();
    void drive();
    void drop(const std::string& reason);
    void finish_ok();
    void finish(int error);
    void abandon_conn();
    void close_all();
    json event(const char* result, const std::string& error) const;

    const Context& ctx_;
    std::shared_ptr<CallPort> calls_;
    enroll::Call call_;
    pid_t tgid_;
    uint32_t ident_;  // the kernel's identity of the server process
    std::string spiffe_id_;
    uint16_t port_;
    Watched listener_;  // our copy of the app's listening socket
    Watched exit_;      // the caller's pidfd: readable when the process has exited
    Watched conn_;
    int listener_flags_ = -1;
    bool app_nonblocking_ = false;
    sockaddr_storage peer_{};
    socklen_t peer_len_ = 0;
    std::string peer_text_;
    std::unique_ptr<Timer> timer_;
    std::shared_ptr<HandshakeRun> handshake_;  // of the connection in conn_
    Clock::time_point started_;
    bool finished_ = false;
};

void ServerAccept::run() {
    // A server killed in accept() must not leave its port listening in the agent (our
    // copy of the listener) until some client happens to connect.
    auto self = shared_from_this();
    exit_.ready->wait(Readiness::For::read, [self] { self->finish(ECONNABORTED); });
    int fd = listener_.get();
    listener_flags_ = ::fcntl(fd, F_GETFL);
    calls_->note_saved_flags(call_.id, listener_flags_);
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
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer_), &peer_len_, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            spdlog::debug("accept on port {} for {}: no connection yet{}", port_, spiffe_id_,
                          app_nonblocking_ ? " (the app's listener is non-blocking: EAGAIN)" : ": waiting");
            if (app_nonblocking_) return finish(EAGAIN);
            // A blocking accept(): the app waits with us for the next connection.
            auto self = shared_from_this();
            listener_.ready->wait(Readiness::For::read, [self] { self->try_accept(); });
            return;
        }
        if (err == ECONNABORTED || err == EINTR) return try_accept();
        return finish(err);
    }
    auto parsed = target_of(peer_, peer_len_);
    peer_text_ = parsed ? parsed->text() + ":" + std::to_string(parsed->port) : "?";
    spdlog::debug("accept on port {} for {}: connection from {}", port_, spiffe_id_, peer_text_);
    conn_.take(*ctx_.loop, core::UniqueFd(fd));
    started_ = Clock::now();
    auto view = ctx_.policy();
    tls::HandshakeConfig cfg;
    cfg.role = tls::Role::server;
    cfg.svid = ctx_.identity ? ctx_.identity->svids().find(spiffe_id_) : nullptr;
    if (!cfg.svid) return finish(ECONNABORTED);
    cfg.trust = ctx_.identity->trust_ptr();
    cfg.contexts = ctx_.contexts;
    cfg.cipher = ctx_.cipher;
    std::string server = spiffe_id_;
    // The rules of the policy in force when the connection came, whatever is applied
    // during its handshake.
    cfg.check_peer = [view, server](const core::SpiffeId& peer) -> Result<void> {
        if (view && core::rule_admitting(view->policy, peer.str(), server)) return {};
        return make_error("no rule lets " + peer.str() + " reach " + server);
    };
    // The ULP goes on before the handshake, while the client waits for our answer: once
    // its Finished is out it may write, half-close or reset at once (`printf ... | nc -N`),
    // and what it wrote must reach the app.
    if (auto r = kernel_of(ctx_).attach_tls(conn_.get()); !r) return drop("kTLS: " + r.message());
    auto hs = HandshakeRun::start(conn_.get(), std::move(cfg), ctx_.handshakes);
    if (!hs) return drop(hs.message());
    handshake_ = std::move(*hs);
    auto self = shared_from_this();
    timer_->after(ctx_.handshake_timeout, [self] {
        self->drop("no handshake within " + std::to_string(self->ctx_.handshake_timeout.count()) + " ms");
    });
    drive();
}

void ServerAccept::drive() {
    if (finished_ || !handshake_) return;
    auto self = shared_from_this();
    step_handshake(ctx_.handshakes, handshake_,
                   {[self, run = handshake_] { return !self->finished_ && self->handshake_ == run; },
                    [self] { self->finish_ok(); }, [self](const std::string& why) { self->drop(why); },
                    [self](Readiness::For what, std::function<void()> ready) {
                        self->conn_.ready->wait(what, std::move(ready));
                    }});
}

json ServerAccept::event(const char* result, const std::string& error) const {
    json e = tls_event({"server", result, call_, tgid_, spiffe_id_, handshake_ ? handshake_->settled() : nullptr, "any client a rule admits",
                        "listen:" + std::to_string(port_), peer_text_, port_, started_});
    if (!error.empty()) e["error"] = error;
    return e;
}

// A connection that failed its handshake never reaches the app: close it, take the next.
void ServerAccept::drop(const std::string& reason) {
    if (finished_) return;
    timer_->cancel();
    json e = event("failed", reason);
    spdlog::warn("mTLS server {} (pid {}) dropped a connection from {}: {}", spiffe_id_, tgid_, peer_text_, reason);
    if (ctx_.emit) ctx_.emit(e);
    abandon_conn();
    try_accept();
}

// The connection in conn_ will not be handed in. Shut down first: a handshake on a
// handshake thread waits on a copy of the descriptor, which closing ours would not wake.
void ServerAccept::abandon_conn() {
    if (conn_.open()) ::shutdown(conn_.get(), SHUT_RDWR);
    handshake_.reset();  // a handshake still away keeps it until it is back
    conn_.close();
}

void ServerAccept::finish_ok() {
    timer_->cancel();
    auto keys = handshake_->hs->traffic_keys();
    if (!keys) return drop("traffic keys: " + keys.message());
    int fd = conn_.get();
    if (auto r = kernel_of(ctx_).install_keys(fd, *keys); !r) return drop("kTLS: " + r.message());
    if (ctx_.keys_installed) ctx_.keys_installed("server", tgid_, spiffe_id_, fd, *keys);
    if (auto r = kernel_of(ctx_).mark_managed(fd, ident_); !r) return drop(r.message());
    // The app asked for these flags with accept4 (none with accept).
    int flags = call_.nr == __NR_accept4 ? static_cast<int>(call_.args[3]) : 0;
    int fl = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, (flags & SOCK_NONBLOCK) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
    if (call_.args[1] && call_.args[2]) {  // the peer address, as accept() writes it
        auto len = calls_->read_memory(call_, call_.args[2], sizeof(socklen_t));
        if (len) {
            socklen_t room = 0;
            std::memcpy(&room, len->data(), sizeof(room));
            (void)calls_->write_memory(call_, call_.args[1], &peer_, std::min(room, peer_len_));
            (void)calls_->write_memory(call_, call_.args[2], &peer_len_, sizeof(peer_len_));
        }
    }
    finished_ = true;
    if (listener_flags_ >= 0) ::fcntl(listener_.get(), F_SETFL, listener_flags_);
    auto sent = calls_->send_fd(call_.id, fd, (flags & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
    json e = event(sent ? "ok" : "failed", sent ? "" : sent.message());
    if (sent)
        spdlog::info("mTLS {} <- {} ({}) as server: {}, kTLS installed", spiffe_id_, handshake_->hs->peer_id().str(),
                     peer_text_, handshake_->hs->cipher_name());
    else
        spdlog::warn("mTLS server {} (pid {}): the connection from {} could not be handed in, closed: {}", spiffe_id_,
                     tgid_, peer_text_, sent.message());
    if (ctx_.emit) ctx_.emit(e);
    close_all();
}

void ServerAccept::finish(int error) {
    if (finished_) return;
    finished_ = true;
    timer_->cancel();
    if (listener_flags_ >= 0) ::fcntl(listener_.get(), F_SETFL, listener_flags_);
    (void)calls_->fail(call_.id, error);
    abandon_conn();
    close_all();
}

void ServerAccept::close_all() {
    exit_.close();
    handshake_.reset();
    conn_.close();
    listener_.close();
}

// ---- dispatch ----------------------------------------------------------------------

void serve_connect(const Context& ctx, std::shared_ptr<CallPort> calls, const enroll::Call& call) {
    size_t len = std::min<uint64_t>(call.args[2], kMaxSockaddr);
    auto raw = calls->read_memory(call, call.args[1], len);
    if (!raw) {  // a bad pointer: let the kernel give the process its EFAULT
        (void)calls->allow(call.id);
        return;
    }
    auto target = parse_sockaddr(std::move(*raw));
    auto view = ctx.policy();
    // Whether a mutual-TLS destination governs it does not depend on who asks.
    auto mtls = target && view ? decide_mtls(*view, KW_IDENT_NONE, *target) : core::MtlsConnect{};
    if (!mtls.ours) {
        (void)calls->allow(call.id);  // not ours: the BPF gate decides as for anyone
        return;
    }
    std::make_shared<ClientConnect>(ctx, std::move(calls), call, std::move(*target), std::move(mtls))->run();
}

void serve_accept(const Context& ctx, std::shared_ptr<CallPort> calls, pid_t pid, const enroll::Call& call) {
    // Ours only when the process is the workload that declares this port as a
    // mutual-TLS listen port; any other accept runs as the process made it.
    auto view = ctx.policy();
    // Most policies declare no mutual-TLS listen port: then no accept is ours, and the
    // lookups below (/proc, pidfd, the listener) are skipped.
    bool any_listen = view && std::any_of(view->policy.workloads.begin(), view->policy.workloads.end(),
                                          [](const core::Workload& w) { return !w.listen.empty(); });
    auto caller = any_listen ? calls->caller(call) : std::nullopt;
    if (!caller) {
        (void)calls->allow(call.id);
        return;
    }
    uint32_t ident = kernel_of(ctx).identity_of(caller->pidfd.get());
    std::string id = spiffe_name(*view, ident);
    auto listener = calls->take_fd(*caller, static_cast<int>(call.args[0]));
    sockaddr_storage ss{};
    socklen_t sl = sizeof(ss);
    uint16_t port = 0;
    if (listener && ::getsockname(listener->get(), reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
        if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
        if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
    if (id == "unattested" || !port || !core::serves_mtls(view->policy, id, port)) {
        spdlog::debug("enrolled process {}: accept on port {} by {} is not a mutual-TLS listen port: continues", pid,
                      port, id);
        (void)calls->allow(call.id);
        return;
    }
    std::make_shared<ServerAccept>(ctx, std::move(calls), call, std::move(*caller), ident, id, std::move(*listener), port)
        ->run();
}

void serve_fastopen(const Context& ctx, CallPort& calls, const enroll::Call& call) {
    // TCP Fast Open sends data before any handshake could run; kTLS refuses it too. To a
    // mutual-TLS destination it fails; elsewhere it continues (the BPF gate decides).
    uint64_t addr = 0, len = 0;
    if (call.nr == __NR_sendto) {
        addr = call.args[4];
        len = call.args[5];
    } else if (auto msg = calls.read_memory(call, call.args[1], sizeof(msghdr)); msg) {
        msghdr m{};
        std::memcpy(&m, msg->data(), sizeof(m));
        addr = reinterpret_cast<uint64_t>(m.msg_name);
        len = m.msg_namelen;
    }
    auto view = ctx.policy();
    if (addr && view) {
        auto raw = calls.read_memory(call, addr, std::min<uint64_t>(len, kMaxSockaddr));
        auto target = raw ? parse_sockaddr(std::move(*raw)) : std::nullopt;
        if (target && decide_mtls(*view, KW_IDENT_NONE, *target).ours) {
            (void)calls.fail(call.id, EOPNOTSUPP);
            return;
        }
    }
    (void)calls.allow(call.id);
}

}  // namespace

KernelPort& no_kernel() {
    static NoKernel none;
    return none;
}

void serve_call(const Context& ctx, std::shared_ptr<CallPort> calls, pid_t pid, const enroll::Call& call) {
    switch (call.nr) {
    case __NR_connect:
        return serve_connect(ctx, std::move(calls), call);
    case __NR_accept:
    case __NR_accept4:
        return serve_accept(ctx, std::move(calls), pid, call);
    case __NR_sendto:
    case __NR_sendmsg:
        return serve_fastopen(ctx, *calls, call);
    default:
        (void)calls->allow(call.id);
    }
}

void resume_call(const Context& ctx, std::shared_ptr<CallPort> calls, pid_t pid, const enroll::JournalEntry& entry) {
    const enroll::Call& call = entry.call;
    spdlog::info("enrolled process {}: call {} (syscall {}) of thread {} was taken by the previous agent and not "
                 "answered: serving it",
                 pid, call.id, call.nr, call.tid);
    bool on_socket = call.nr == __NR_connect || call.nr == __NR_accept || call.nr == __NR_accept4;
    auto caller = on_socket ? calls->caller(call) : std::nullopt;
    auto sock = caller ? calls->take_fd(*caller, static_cast<int>(call.args[0])) : Result<core::UniqueFd>(make_error("none"));
    if (sock && entry.saved_flags >= 0) ::fcntl(sock->get(), F_SETFL, entry.saved_flags);
    if (sock && call.nr == __NR_connect && calls->held(call.id)) {
        tcp_info info{};
        socklen_t len = sizeof(info);
        if (::getsockopt(sock->get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state != TCP_CLOSE) {
            ::shutdown(sock->get(), SHUT_RDWR);
            (void)calls->fail(call.id, ECONNREFUSED);
            sockaddr_storage peer{};
            socklen_t pl = sizeof(peer);
            ::getpeername(sock->get(), reinterpret_cast<sockaddr*>(&peer), &pl);
            auto target = target_of(peer, pl);
            auto view = ctx.policy();
            uint32_t ident = kernel_of(ctx).identity_of(caller->pidfd.get());
            auto mtls = target && view ? decide_mtls(*view, ident, *target) : core::MtlsConnect{};
            std::string name = view ? spiffe_name(*view, ident) : "unattested";
            std::string reason = "the agent restarted during the handshake";
            json e = tls_event({"client", "failed", call, caller->tgid, name, nullptr, mtls.server_identity, mtls.name,
                                target ? target->text() : "?", target ? target->port : uint16_t{0}, Clock::now()});
            e["error"] = reason;
            e["errno"] = ECONNREFUSED;
            spdlog::warn("enrolled process {}: connect() of thread {} gets ECONNREFUSED: {}", pid, call.tid, reason);
            if (ctx.emit) ctx.emit(e);
            return;
        }
    }
    serve_call(ctx, std::move(calls), pid, call);
}

}  // namespace kw::runtime
