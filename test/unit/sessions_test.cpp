// The runtime serving held calls, end to end and without root: a held connect() or
// accept() comes in through a fake CallPort, the session runs a real TLS 1.3 handshake
// over loopback TCP against a peer in another thread, and the test checks what a process
// would see (the call's answer, its socket), what the kernel was asked (a fake
// KernelPort that records marks and kTLS keys, and can refuse each), and the event. Every
// failure branch ends with its errno, its event, and a socket that never carried
// plaintext. The loop is the agent's own Asio adapter.
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <thread>

#include "core/unique_fd.h"
#include "handshake_test_access.h"
#include "identity/node_identity.h"
#include "identity/x509.h"
#include "io/asio_loop.h"
#include "policy_view_fixture.h"
#include "runtime/sessions.h"
#include "tls/handshake.h"

using Catch::Matchers::ContainsSubstring;
using kw::core::UniqueFd;
using nlohmann::json;
using namespace kw;
using namespace std::chrono_literals;

namespace {

// ---- the ports ---------------------------------------------------------------------

class FakeKernel final : public runtime::KernelPort {
public:
    uint32_t ident = KW_IDENT_NONE;  // what every process is attested as
    std::vector<std::string> log;    // what was asked, in order
    std::map<std::string, std::string> refuse;  // operation -> the error it gets
    std::optional<tls::TrafficKeys> installed;

    uint32_t identity_of(int) override { return ident; }
    Result<void> mark_handshake(int, uint32_t owner) override { return record("mark_handshake", owner); }
    Result<void> mark_managed(int, uint32_t owner) override { return record("mark_managed", owner); }
    Result<void> mark_enrolled(int) override { return record("mark_enrolled", 0); }
    Result<void> attach_tls(int) override { return record("attach_tls", 0); }
    Result<void> install_keys(int, const tls::TrafficKeys& keys) override {
        auto r = record("install_keys", 0);
        if (r) installed = keys;
        return r;
    }

private:
    Result<void> record(const std::string& op, uint32_t owner) {
        log.push_back(owner ? op + " " + std::to_string(owner) : op);
        if (auto it = refuse.find(op); it != refuse.end()) return make_error(it->second);
        return {};
    }
};

struct Answer {
    std::string kind;  // allow | fail | succeed | send_fd
    int64_t value = 0;  // the errno, the value, or the descriptor handed in (a dup, kept)
};

// One enrolled process: its descriptors (by the numbers the app uses), its memory (by
// address), and the answers its calls got. The caller's pidfd is an eventfd: exit() makes
// it readable, as a pidfd is once the process has exited.
class FakeCalls final : public runtime::CallPort {
public:
    std::map<int, int> fds;  // the app's descriptor number -> our descriptor of that socket
    std::map<uint64_t, std::vector<uint8_t>> memory;
    std::map<uint64_t, std::vector<uint8_t>> written;
    std::map<uint64_t, Answer> answers;
    std::map<uint64_t, int> saved_flags;
    std::vector<UniqueFd> handed_in;
    int taken = 0;     // descriptors taken from the process
    bool gone = false;  // the caller died before its call was served
    UniqueFd exited{::eventfd(0, EFD_CLOEXEC)};

    void exit() {
        uint64_t one = 1;
        REQUIRE(::write(exited.get(), &one, sizeof one) == sizeof one);
    }
    bool held(uint64_t id) override { return !gone && !answers.count(id); }
    Result<std::vector<uint8_t>> read_memory(const enroll::Call& call, uint64_t addr, size_t len) override {
        auto it = memory.find(addr);
        if (it == memory.end() || !held(call.id)) return make_error("EFAULT");
        return std::vector<uint8_t>(it->second.begin(), it->second.begin() + std::min(len, it->second.size()));
    }
    Result<void> write_memory(const enroll::Call&, uint64_t addr, const void* bytes, size_t len) override {
        auto* b = static_cast<const uint8_t*>(bytes);
        written[addr].assign(b, b + len);
        return {};
    }
    Result<void> allow(uint64_t id) override { return answer(id, {"allow", 0}); }
    Result<void> fail(uint64_t id, int error) override { return answer(id, {"fail", error}); }
    Result<void> succeed(uint64_t id, int64_t value) override { return answer(id, {"succeed", value}); }
    Result<int> send_fd(uint64_t id, int fd, unsigned int) override {
        handed_in.emplace_back(::dup(fd));
        (void)answer(id, {"send_fd", handed_in.back().get()});
        return handed_in.back().get();
    }
    void note_saved_flags(uint64_t id, int flags) override { saved_flags[id] = flags; }
    std::optional<runtime::Caller> caller(const enroll::Call& call) override {
        if (!held(call.id)) return std::nullopt;
        return runtime::Caller{::getpid(), UniqueFd(::dup(exited.get()))};
    }
    Result<UniqueFd> take_fd(const runtime::Caller&, int fd) override {
        auto it = fds.find(fd);
        if (it == fds.end()) return make_error("pidfd_getfd: Bad file descriptor");
        ++taken;
        return UniqueFd(::dup(it->second));
    }

private:
    Result<void> answer(uint64_t id, Answer a) {
        REQUIRE(!answers.count(id));  // a call is answered once
        answers[id] = a;
        return {};
    }
};

// ---- a TLS peer on loopback --------------------------------------------------------

UniqueFd listening_socket(uint16_t& port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&in), sizeof in) == 0);
    REQUIRE(::listen(fd.get(), 8) == 0);
    socklen_t len = sizeof in;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&in), &len) == 0);
    port = ntohs(in.sin_port);
    return fd;
}

std::vector<uint8_t> sockaddr_bytes(uint16_t port) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto* b = reinterpret_cast<uint8_t*>(&in);
    return {b, b + sizeof in};
}

struct PeerResult {
    bool done = false;
    std::string failure;
    std::string peer_id;
    std::optional<tls::TrafficKeys> keys;
    std::string peer_serial;  // of the leaf certificate the other end presented
};

// The serial of the leaf certificate the other end of HS presented.
std::string peer_leaf_serial(const tls::Handshake& hs) {
    const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(tls::HandshakeTestAccess::ssl(hs));
    if (chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) return "";
    identity::X509Ptr leaf(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(chain, 0)));
    return leaf ? identity::serial_hex(leaf.get()) : "";
}

// Runs a whole handshake on the connected socket FD (made non-blocking), within 5 s.
PeerResult handshake_on(int fd, tls::HandshakeConfig cfg) {
    PeerResult out;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    auto hs = tls::Handshake::create(fd, std::move(cfg));
    if (!hs) {
        out.failure = hs.message();
        return out;
    }
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
        auto p = (*hs)->step();
        if (!p) {
            out.failure = (*hs)->failure().empty() ? p.message() : (*hs)->failure();
            return out;
        }
        if (*p == tls::Progress::done) {
            out.done = true;
            out.peer_id = (*hs)->peer_id().str();
            out.peer_serial = peer_leaf_serial(**hs);
            if (auto k = (*hs)->traffic_keys(); k) out.keys = *k;
            return out;
        }
        pollfd pfd{fd, static_cast<short>(*p == tls::Progress::want_read ? POLLIN : POLLOUT), 0};
        ::poll(&pfd, 1, 100);
    }
    out.failure = "peer: no handshake within 5 s";
    return out;
}

UniqueFd accept_within(int listener, std::chrono::milliseconds wait) {
    pollfd pfd{listener, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(wait.count())) != 1) return UniqueFd();
    return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

// ---- the runtime under test --------------------------------------------------------

const char* kApp = "spiffe://t.org/app";
const char* kDb = "spiffe://t.org/db";

std::string policy_text(uint16_t db_port, uint16_t listen_port, const std::string& db_name = "db") {
    return R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } },
                 { "id": "spiffe://t.org/other", "selectors": { "uid": 1001 } },
                 { "id": "spiffe://t.org/db", "selectors": { "uid": 1002 },
                   "listen": [ { "port": )" +
           std::to_string(listen_port) + R"(, "tls": "mutual" } ] } ],
  "destinations": [ { "name": ")" + db_name +
           R"(", "cidrs": ["127.0.0.1/32"], "ports": [)" + std::to_string(db_port) +
           R"(], "protocol": "tcp", "tls": "mutual", "identity": "spiffe://t.org/db" },
                    { "name": "plain", "cidrs": ["127.0.0.2/32"], "ports": [80], "protocol": "tcp" } ],
  "rules": [ { "from": "spiffe://t.org/app", "to": ")" +
           db_name + R"(" }, { "from": "spiffe://t.org/app", "to": "plain" } ] })";
}

struct Runtime {
    boost::asio::io_context io;
    io::AsioLoop loop{io};
    core::IdentityTable ids;
    std::shared_ptr<const runtime::PolicyView> view;
    // How far the identity's clock runs behind the real one. A fixture made with a lag
    // issues SVIDs that are already that old when the test starts; setting it back to
    // zero lets the test bring rotation due without waiting, while every certificate is
    // still checked against the real time.
    identity::Seconds identity_lag;
    identity::NodeIdentity identity{"/nonexistent/kwarden-test-ca",
                                    [this] { return identity::now_seconds() - identity_lag; }};
    FakeKernel kernel;
    std::shared_ptr<FakeCalls> calls = std::make_shared<FakeCalls>();
    tls::TicketMemory tickets;
    std::vector<json> events;
    runtime::Context ctx;
    std::unique_ptr<io::AsioOffload> offload;  // after io: destroyed (its works waited for) first
    uint16_t db_port = 0;
    uint16_t listen_port = 0;
    UniqueFd db_listener = listening_socket(db_port);  // the mutual-TLS destination's server
    UniqueFd app_listener = listening_socket(listen_port);  // the enrolled server's listener

    explicit Runtime(identity::Seconds lag = identity::Seconds{0}) : identity_lag(lag) {
        view = test::policy_view(policy_text(db_port, listen_port), ids);
        REQUIRE(identity.load_ca());
        auto staged = identity.prepare(view->policy);
        REQUIRE(staged);
        identity.commit(std::move(*staged));
        ctx.policy = [this] { return view; };
        ctx.kernel = &kernel;
        ctx.identity = &identity;
        ctx.emit = [this](const json& e) { events.push_back(e); };
        ctx.loop = &loop;
        ctx.tickets = &tickets;
        ctx.handshake_timeout = 3000ms;
        kernel.ident = ident(kApp);
    }
    uint32_t ident(const std::string& id) const { return *view->ids.find(id); }

    // Handshake steps on N worker threads, as the agent runs them (0: on the loop).
    void with_workers(size_t n) {
        if (!n) return;
        offload = std::make_unique<io::AsioOffload>(io, n, tls::kHandshakeStackBytes);
        ctx.handshakes = offload.get();
    }

    // The enrolled server (kDb), its listener at descriptor 5.
    void serve_as_db() {
        kernel.ident = ident(kDb);
        calls->fds[5] = app_listener.get();
    }

    tls::HandshakeConfig peer_config(tls::Role role, const std::string& as, const std::string& expects) const {
        tls::HandshakeConfig cfg;
        cfg.role = role;
        cfg.svid = identity.svids().find(as);
        cfg.trust = std::make_shared<const identity::TrustStore>(identity.trust());
        auto want = *core::parse_spiffe_id(expects);
        cfg.check_peer = tls::expect_peer_id(want);
        return cfg;
    }

    // A held connect() of the app's socket (descriptor 7) to ADDR.
    enroll::Call connect_call(uint64_t id, int app_fd, std::vector<uint8_t> addr) {
        const uint64_t where = 0x1000 + id * 0x100;
        calls->memory[where] = std::move(addr);
        enroll::Call call;
        call.id = id;
        call.tid = static_cast<pid_t>(::syscall(SYS_gettid));
        call.nr = __NR_connect;
        call.args[0] = static_cast<uint64_t>(app_fd);
        call.args[1] = where;
        call.args[2] = calls->memory[where].size();
        return call;
    }

    void serve(const enroll::Call& call) { runtime::serve_call(ctx, calls, 4242, call); }

    // Runs the loop until call ID is answered (at most WAIT).
    void run_until_answered(uint64_t id, std::chrono::milliseconds wait = 8000ms) {
        auto deadline = std::chrono::steady_clock::now() + wait;
        while (!calls->answers.count(id) && std::chrono::steady_clock::now() < deadline) {
            io.restart();
            io.run_for(20ms);
        }
        REQUIRE(calls->answers.count(id));
    }
    // Runs whatever the loop still has (events after an answer, closes).
    void settle() {
        io.restart();
        io.run_for(50ms);
    }
    const json& last_event() const {
        REQUIRE(!events.empty());
        return events.back();
    }
};

// The app's own socket, as it made it: blocking TCP.
UniqueFd app_socket(Runtime& rt, int app_fd) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    rt.calls->fds[app_fd] = s.get();
    return s;
}

// The mutual-TLS destination's server, as ID, in its own thread: accepts one connection
// and handshakes on it.
std::future<PeerResult> db_server(Runtime& rt, const std::string& id) {
    return std::async(std::launch::async, [&rt, id] {
        auto conn = accept_within(rt.db_listener.get(), 5000ms);
        return conn.valid() ? handshake_on(conn.get(), rt.peer_config(tls::Role::server, id, kApp)) : PeerResult{};
    });
}

bool connected(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    return ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0;
}

}  // namespace

// ---- held connect() -----------------------------------------------------------------

TEST_CASE("a held connect to a mutual-TLS destination returns 0 with kTLS keys the server agrees with",
          "[runtime][sessions]") {
    const size_t workers = GENERATE(0, 2);  // handshakes on the loop, then on two threads
    CAPTURE(workers);
    Runtime rt;
    rt.with_workers(workers);
    auto app = app_socket(rt, 7);
    auto server = db_server(rt, kDb);
    auto call = rt.connect_call(1, 7, sockaddr_bytes(rt.db_port));
    rt.serve(call);
    rt.run_until_answered(1);
    auto peer = server.get();
    rt.settle();

    REQUIRE(peer.done);
    CHECK(peer.peer_id == kApp);  // the server saw the app's SVID
    CHECK(rt.calls->answers[1].kind == "succeed");
    CHECK(rt.calls->answers[1].value == 0);
    // Marked before anything moved, ULP before the handshake, keys, then managed: the
    // owner each time is the caller's kernel identity.
    const auto owner = std::to_string(rt.ident(kApp));
    CHECK(rt.kernel.log == std::vector<std::string>{"mark_handshake " + owner, "attach_tls", "install_keys",
                                                    "mark_managed " + owner});
    REQUIRE(rt.kernel.installed);
    REQUIRE(peer.keys);
    CHECK(rt.kernel.installed->tx_secret == peer.keys->rx_secret);
    CHECK(rt.kernel.installed->rx_secret == peer.keys->tx_secret);
    // The app's descriptor is the connected socket, blocking again as the app made it.
    CHECK(connected(app.get()));
    CHECK((::fcntl(app.get(), F_GETFL) & O_NONBLOCK) == 0);
    CHECK(rt.calls->saved_flags.count(1));  // journaled for a next agent
    const json& e = rt.last_event();
    CHECK(e["type"] == "tls");
    CHECK(e["result"] == "ok");
    CHECK(e["role"] == "client");
    CHECK(e["spiffe_id"] == kApp);
    CHECK(e["peer_id"] == kDb);
    CHECK(e["destination"] == "db");
    CHECK(e["session_tickets"] == 0);  // BoringSSL's server here sends none
}

TEST_CASE("held connects that are not the agent's continue untouched", "[runtime][sessions]") {
    Runtime rt;
    auto app = app_socket(rt, 7);
    SECTION("a destination without mutual TLS") {
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_port = htons(80);
        inet_pton(AF_INET, "127.0.0.2", &in.sin_addr);
        auto* b = reinterpret_cast<uint8_t*>(&in);
        rt.serve(rt.connect_call(1, 7, {b, b + sizeof in}));
    }
    SECTION("a sockaddr that is not a whole sockaddr_in") { rt.serve(rt.connect_call(1, 7, {2, 0, 1})); }
    SECTION("a bad pointer: the kernel gives the process its EFAULT") {
        auto call = rt.connect_call(1, 7, sockaddr_bytes(rt.db_port));
        call.args[1] = 0xdead;
        rt.serve(call);
    }
    REQUIRE(rt.calls->answers.count(1));
    CHECK(rt.calls->answers[1].kind == "allow");
    CHECK(rt.calls->taken == 0);
    CHECK(rt.kernel.log.empty());
    CHECK(rt.events.empty());
}

TEST_CASE("a held connect refused before any packet: EPERM, the socket never taken", "[runtime][sessions]") {
    Runtime rt;
    auto app = app_socket(rt, 7);
    std::string why;
    SECTION("unattested") {
        rt.kernel.ident = KW_IDENT_NONE;
        why = "unattested";
    }
    SECTION("an identity the policy does not know") {
        rt.kernel.ident = 999;
        why = "unattested";
    }
    SECTION("no rule lets the caller reach the destination") {
        rt.kernel.ident = rt.ident("spiffe://t.org/other");
        why = "spiffe://t.org/other";
    }
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    rt.run_until_answered(1);
    CHECK(rt.calls->answers[1].kind == "fail");
    CHECK(rt.calls->answers[1].value == EPERM);
    CHECK(rt.calls->taken == 0);
    CHECK(rt.kernel.log.empty());
    CHECK(!accept_within(rt.db_listener.get(), 0ms).valid());  // nothing reached the server
    CHECK(rt.last_event()["result"] == "failed");
    CHECK(rt.last_event()["errno"] == EPERM);
    CHECK_THAT(rt.last_event()["error"].get<std::string>(), ContainsSubstring(why));
}

TEST_CASE("a held connect whose socket the kernel will not mark is never connected", "[runtime][sessions]") {
    Runtime rt;
    auto app = app_socket(rt, 7);
    rt.kernel.refuse["mark_handshake"] = "the socket map is full";
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    rt.run_until_answered(1);
    CHECK(rt.calls->answers[1].value == ECONNREFUSED);
    CHECK(!connected(app.get()));
    CHECK(!accept_within(rt.db_listener.get(), 100ms).valid());
    CHECK_THAT(rt.last_event()["error"].get<std::string>(), ContainsSubstring("the socket map is full"));
}

TEST_CASE("a held connect that fails after the socket was taken: its errno, its event, the socket shut down",
          "[runtime][sessions]") {
    const size_t workers = GENERATE(0, 2);  // handshakes on the loop, then on two threads
    CAPTURE(workers);
    Runtime rt;
    rt.with_workers(workers);
    auto app = app_socket(rt, 7);
    int expected_errno = ECONNREFUSED;
    std::string why;
    std::future<PeerResult> server;
    auto serve_as = [&](const std::string& id) { server = db_server(rt, id); };
    SECTION("the server presents another identity") {
        serve_as("spiffe://t.org/other");
        why = "spiffe://t.org/other";
    }
    SECTION("the kernel refuses the ULP") {
        rt.kernel.refuse["attach_tls"] = "no tls module";
        serve_as(kDb);
        why = "kTLS: no tls module";
    }
    SECTION("the kernel refuses the keys") {
        rt.kernel.refuse["install_keys"] = "unsupported cipher";
        serve_as(kDb);
        why = "kTLS: unsupported cipher";
    }
    SECTION("the keys cannot be guarded: never handed over") {
        rt.kernel.refuse["mark_managed"] = "socket storage refused";
        serve_as(kDb);
        why = "socket storage refused";
    }
    SECTION("nothing listens: the connect's own errno") {
        rt.db_listener.reset();  // the port is closed now
        expected_errno = ECONNREFUSED;
        why = "connect:";
    }
    SECTION("the server never answers: ETIMEDOUT within the handshake timeout") {
        rt.ctx.handshake_timeout = 300ms;
        expected_errno = ETIMEDOUT;
        why = "within 300 ms";  // the server's backlog holds the connection, silent
    }
    SECTION("the app's SO_SNDTIMEO is shorter: it bounds the handshake") {
        timeval tv{0, 200000};
        REQUIRE(::setsockopt(app.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
        expected_errno = ETIMEDOUT;
        why = "within 200 ms";
    }
    auto started = std::chrono::steady_clock::now();
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    rt.run_until_answered(1);
    if (server.valid()) server.wait();
    rt.settle();
    CHECK(rt.calls->answers[1].kind == "fail");
    CHECK(rt.calls->answers[1].value == expected_errno);
    CHECK(std::chrono::steady_clock::now() - started < 3000ms);
    const json& e = rt.last_event();
    CHECK(e["result"] == "failed");
    CHECK(e["errno"] == expected_errno);
    CHECK_THAT(e["error"].get<std::string>(), ContainsSubstring(why));
    // Never managed, and nothing the app could read or write in plaintext: the socket is
    // shut down (or never connected), and the handshake mark stays on it.
    const std::string managed = "mark_managed " + std::to_string(rt.ident(kApp));
    if (!rt.kernel.refuse.count("mark_managed"))
        CHECK(std::find(rt.kernel.log.begin(), rt.kernel.log.end(), managed) == rt.kernel.log.end());
    char byte = 0;
    CHECK(::send(app.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0);
}

TEST_CASE("a process killed during its handshake: the session gives up at once, ECONNABORTED",
          "[runtime][sessions]") {
    const size_t workers = GENERATE(0, 2);  // handshakes on the loop, then on two threads
    CAPTURE(workers);
    Runtime rt;
    rt.with_workers(workers);
    auto app = app_socket(rt, 7);
    // The server accepts and stays silent; the process dies a moment later.
    std::thread killer([&] {
        auto conn = accept_within(rt.db_listener.get(), 5000ms);
        std::this_thread::sleep_for(100ms);
        rt.calls->exit();
        std::this_thread::sleep_for(500ms);  // keep the connection open past the exit
    });
    auto started = std::chrono::steady_clock::now();
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    rt.run_until_answered(1);
    killer.join();
    CHECK(rt.calls->answers[1].value == ECONNABORTED);
    CHECK(std::chrono::steady_clock::now() - started < rt.ctx.handshake_timeout);
    CHECK_THAT(rt.last_event()["error"].get<std::string>(), ContainsSubstring("exited"));
}

TEST_CASE("a policy applied during a handshake: the session and its event keep the policy it was decided under",
          "[runtime][sessions]") {
    Runtime rt;
    auto app = app_socket(rt, 7);
    std::promise<void> applied;
    auto server = std::async(std::launch::async, [&] {
        auto conn = accept_within(rt.db_listener.get(), 5000ms);
        applied.get_future().wait_for(5s);  // the handshake starts under the new policy's reign
        return handshake_on(conn.get(), rt.peer_config(tls::Role::server, kDb, kApp));
    });
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    // The destination is renamed by the next policy before the server answers.
    for (int i = 0; i < 10; ++i) {
        rt.io.restart();
        rt.io.run_for(10ms);
    }
    rt.view = test::policy_view(policy_text(rt.db_port, rt.listen_port, "db-renamed"), rt.ids);
    applied.set_value();
    rt.run_until_answered(1);
    REQUIRE(server.get().done);
    CHECK(rt.calls->answers[1].kind == "succeed");
    CHECK(rt.last_event()["destination"] == "db");
}

TEST_CASE("an SVID rotated during a handshake: that handshake finishes with the SVID it began with, the next "
          "connect presents the new one",
          "[runtime][sessions]") {
    // Issued 2000 s ago with the default one-hour TTL: past half-life, so the next tick
    // rotates them, and still valid for another 1600 s, so the old SVID is good to the end.
    Runtime rt(2000s);
    const auto old_svid = rt.identity.svids().find(kApp);
    REQUIRE(old_svid);
    REQUIRE(old_svid->not_after > identity::now_seconds() + 60s);
    auto app = app_socket(rt, 7);
    std::promise<void> hello_seen, rotated;
    auto hello = hello_seen.get_future();
    auto go_on = rotated.get_future();
    auto server = std::async(std::launch::async, [&] {
        auto conn = accept_within(rt.db_listener.get(), 5000ms);
        if (!conn.valid()) return PeerResult{};
        // Once the ClientHello is here, the session has built its handshake. In TLS 1.3
        // the client's certificate goes out only after the server's first flight, so the
        // old SVID crosses the wire after the rotation: the handshake must keep the one
        // it was built with, key included.
        pollfd pfd{conn.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 5000) != 1) return PeerResult{};
        hello_seen.set_value();
        go_on.wait_for(5s);
        return handshake_on(conn.get(), rt.peer_config(tls::Role::server, kDb, kApp));
    });
    rt.serve(rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)));
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (hello.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < deadline) {
        rt.io.restart();
        rt.io.run_for(10ms);
    }
    REQUIRE(hello.wait_for(0s) == std::future_status::ready);
    REQUIRE(rt.calls->answers.empty());  // the handshake is still in flight

    rt.identity_lag = 0s;
    const auto report = rt.identity.tick();
    CHECK(report.errors.empty());
    const auto new_svid = rt.identity.svids().find(kApp);
    REQUIRE(new_svid);
    REQUIRE(new_svid->serial != old_svid->serial);  // otherwise the test would prove nothing
    rotated.set_value();

    rt.run_until_answered(1);
    auto first = server.get();
    rt.settle();
    REQUIRE(first.done);
    CHECK(first.peer_id == kApp);
    CHECK(first.peer_serial == old_svid->serial);
    CHECK(rt.calls->answers[1].kind == "succeed");
    CHECK(rt.calls->answers[1].value == 0);
    REQUIRE(rt.kernel.installed);
    REQUIRE(first.keys);
    CHECK(rt.kernel.installed->tx_secret == first.keys->rx_secret);
    CHECK(rt.kernel.installed->rx_secret == first.keys->tx_secret);
    CHECK(rt.last_event()["result"] == "ok");

    // A connect served after the rotation takes the SVID the store holds now.
    auto app2 = app_socket(rt, 8);
    auto second_server = db_server(rt, kDb);
    rt.serve(rt.connect_call(2, 8, sockaddr_bytes(rt.db_port)));
    rt.run_until_answered(2);
    auto second = second_server.get();
    rt.settle();
    REQUIRE(second.done);
    CHECK(second.peer_id == kApp);
    CHECK(second.peer_serial == new_svid->serial);
    CHECK(rt.calls->answers[2].kind == "succeed");
    CHECK(rt.calls->answers[2].value == 0);
    REQUIRE(second.keys);
    CHECK(rt.kernel.installed->tx_secret == second.keys->rx_secret);
    CHECK(rt.kernel.installed->rx_secret == second.keys->tx_secret);
    CHECK(rt.last_event()["result"] == "ok");
}

TEST_CASE("TCP Fast Open to a mutual-TLS destination fails; elsewhere it continues", "[runtime][sessions]") {
    Runtime rt;
    auto dest = sockaddr_bytes(rt.db_port);
    rt.calls->memory[0x5000] = dest;
    enroll::Call call;
    call.id = 3;
    call.nr = __NR_sendto;
    call.args[4] = 0x5000;
    call.args[5] = dest.size();
    rt.serve(call);
    CHECK(rt.calls->answers[3].kind == "fail");
    CHECK(rt.calls->answers[3].value == EOPNOTSUPP);
    call.id = 4;
    call.args[4] = 0;  // no address: a connected socket's send
    rt.serve(call);
    CHECK(rt.calls->answers[4].kind == "allow");
}

// ---- held accept() ------------------------------------------------------------------

namespace {

enroll::Call accept_call(uint64_t id, int app_fd) {
    enroll::Call call;
    call.id = id;
    call.tid = static_cast<pid_t>(::syscall(SYS_gettid));
    call.nr = __NR_accept4;
    call.args[0] = static_cast<uint64_t>(app_fd);
    call.args[3] = SOCK_CLOEXEC;
    return call;
}

PeerResult client_handshake(Runtime& rt, const std::string& as) {
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto addr = sockaddr_bytes(rt.listen_port);
    if (::connect(c.get(), reinterpret_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) != 0)
        return PeerResult{false, "connect failed", "", std::nullopt};
    return handshake_on(c.get(), rt.peer_config(tls::Role::client, as, kDb));
}

}  // namespace

TEST_CASE("a held accept on a mutual-TLS listen port: clients a rule admits are handed in, others never reach the app",
          "[runtime][sessions]") {
    const size_t workers = GENERATE(0, 2);  // handshakes on the loop, then on two threads
    CAPTURE(workers);
    Runtime rt;
    rt.with_workers(workers);
    rt.serve_as_db();
    auto clients = std::async(std::launch::async, [&] {
        auto refused = client_handshake(rt, "spiffe://t.org/other");  // no rule lets "other" reach db
        auto admitted = client_handshake(rt, kApp);
        return std::make_pair(refused, admitted);
    });
    rt.serve(accept_call(1, 5));
    rt.run_until_answered(1);
    auto [refused, admitted] = clients.get();
    rt.settle();
    REQUIRE(admitted.done);
    CHECK(admitted.peer_id == kDb);
    REQUIRE(rt.calls->answers[1].kind == "send_fd");
    int conn = static_cast<int>(rt.calls->answers[1].value);
    CHECK(connected(conn));
    CHECK((::fcntl(conn, F_GETFL) & O_NONBLOCK) == 0);  // accept4 without SOCK_NONBLOCK
    REQUIRE(rt.kernel.installed);
    CHECK(rt.kernel.installed->rx_secret == admitted.keys->tx_secret);
    const auto owner = std::to_string(rt.ident(kDb));
    CHECK(rt.kernel.log == std::vector<std::string>{"attach_tls", "attach_tls", "install_keys", "mark_managed " + owner});
    REQUIRE(rt.events.size() == 2);
    CHECK(rt.events[0]["result"] == "failed");
    CHECK_THAT(rt.events[0]["error"].get<std::string>(), ContainsSubstring("spiffe://t.org/other"));
    CHECK(rt.events[1]["result"] == "ok");
    CHECK(rt.events[1]["peer_id"] == kApp);
    CHECK(rt.events[1]["destination"] == "listen:" + std::to_string(rt.listen_port));
}

TEST_CASE("held accepts that are not the agent's, and a server killed while it waits", "[runtime][sessions]") {
    Runtime rt;
    rt.calls->fds[5] = rt.app_listener.get();
    SECTION("a process of another workload accepts on the port: continues") {
        rt.kernel.ident = rt.ident(kApp);
        rt.serve(accept_call(1, 5));
        CHECK(rt.calls->answers[1].kind == "allow");
    }
    SECTION("an unattested process: continues") {
        rt.kernel.ident = KW_IDENT_NONE;
        rt.serve(accept_call(1, 5));
        CHECK(rt.calls->answers[1].kind == "allow");
    }
    SECTION("a non-blocking listener with no connection waiting: EAGAIN, as the kernel would say") {
        rt.kernel.ident = rt.ident(kDb);
        ::fcntl(rt.app_listener.get(), F_SETFL, O_NONBLOCK);
        rt.serve(accept_call(1, 5));
        rt.run_until_answered(1);
        CHECK(rt.calls->answers[1].value == EAGAIN);
        CHECK(::fcntl(rt.app_listener.get(), F_GETFL) & O_NONBLOCK);  // the app's flags, put back
    }
    SECTION("the server is killed while it waits: ECONNABORTED, the agent's copy of the listener closed") {
        rt.kernel.ident = rt.ident(kDb);
        rt.serve(accept_call(1, 5));
        rt.settle();
        CHECK(rt.calls->answers.empty());
        rt.calls->exit();
        rt.run_until_answered(1);
        CHECK(rt.calls->answers[1].value == ECONNABORTED);
        CHECK((::fcntl(rt.app_listener.get(), F_GETFL) & O_NONBLOCK) == 0);
    }
    CHECK(rt.events.empty());
}

// A client that sends the start of a ClientHello and stalls (accepted: data came).
UniqueFd stalled_client(Runtime& rt) {
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto addr = sockaddr_bytes(rt.listen_port);
    REQUIRE(::connect(c.get(), reinterpret_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) == 0);
    const unsigned char start[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};  // a record of 512 bytes: 1 came
    REQUIRE(::write(c.get(), start, sizeof start) == static_cast<ssize_t>(sizeof start));
    return c;
}

// Whether the peer shut FD's connection down within WAIT (end of file or reset).
bool shut_by_peer(int fd, std::chrono::milliseconds wait) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) != 1) return false;
    char byte;
    return ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

TEST_CASE("a held accept whose handshake stalls: the server killed, ECONNABORTED at once; a timeout, the next "
          "client handed in; the stalled connection shut either way",
          "[runtime][sessions]") {
    const size_t workers = GENERATE(0, 2);  // handshakes on the loop, then on two threads
    CAPTURE(workers);
    Runtime rt;
    rt.with_workers(workers);
    rt.serve_as_db();
    UniqueFd stalled = stalled_client(rt);  // accepted first: it is in the queue, its data came
    const auto started = std::chrono::steady_clock::now();
    SECTION("the server is killed mid-handshake") {
        rt.serve(accept_call(1, 5));
        rt.settle();
        CHECK(rt.calls->answers.empty());
        rt.calls->exit();
        rt.run_until_answered(1);
        CHECK(rt.calls->answers[1].value == ECONNABORTED);
        CHECK(std::chrono::steady_clock::now() - started < rt.ctx.handshake_timeout);
        // Shut down by the agent, not left open on the handshake thread's descriptor.
        CHECK(shut_by_peer(stalled.get(), 2000ms));
    }
    SECTION("the handshake times out: that connection dropped, the next one taken") {
        rt.ctx.handshake_timeout = 300ms;
        rt.serve(accept_call(1, 5));
        auto admitted = std::async(std::launch::async, [&] { return client_handshake(rt, kApp); });
        rt.run_until_answered(1);
        CHECK(admitted.get().done);
        CHECK(rt.calls->answers[1].kind == "send_fd");
        CHECK(shut_by_peer(stalled.get(), 2000ms));
        REQUIRE(rt.events.size() == 2);
        CHECK_THAT(rt.events[0]["error"].get<std::string>(), ContainsSubstring("no handshake within"));
        CHECK(rt.events[1]["result"] == "ok");
    }
    rt.settle();
}

// ---- journal adoption ---------------------------------------------------------------

TEST_CASE("calls a previous agent held: a cut handshake fails, a call it never started is served anew",
          "[runtime][sessions]") {
    Runtime rt;
    auto app = app_socket(rt, 7);
    SECTION("the previous agent had connected the socket: shut down, ECONNREFUSED, named") {
        auto addr = sockaddr_bytes(rt.db_port);
        REQUIRE(::connect(app.get(), reinterpret_cast<const sockaddr*>(addr.data()), addr.size()) == 0);
        auto peer = accept_within(rt.db_listener.get(), 1000ms);
        enroll::JournalEntry entry{rt.connect_call(1, 7, addr), O_RDWR};
        ::fcntl(app.get(), F_SETFL, O_RDWR | O_NONBLOCK);  // as the previous agent left it
        runtime::resume_call(rt.ctx, rt.calls, 4242, entry);
        CHECK(rt.calls->answers[1].value == ECONNREFUSED);
        CHECK((::fcntl(app.get(), F_GETFL) & O_NONBLOCK) == 0);  // the app's flags, from the journal
        char byte;
        CHECK(::recv(peer.get(), &byte, 1, 0) == 0);  // the server sees the end, no byte
        CHECK(rt.last_event()["destination"] == "db");
        CHECK_THAT(rt.last_event()["error"].get<std::string>(), ContainsSubstring("agent restarted"));
    }
    SECTION("the socket was never connected: the call is served from the start") {
        auto server = db_server(rt, kDb);
        enroll::JournalEntry entry{rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)), O_RDWR};
        runtime::resume_call(rt.ctx, rt.calls, 4242, entry);
        rt.run_until_answered(1);
        CHECK(server.get().done);
        CHECK(rt.calls->answers[1].kind == "succeed");
    }
    SECTION("the caller died meanwhile: nothing is taken, nothing runs") {
        rt.calls->gone = true;
        enroll::JournalEntry entry{rt.connect_call(1, 7, sockaddr_bytes(rt.db_port)), O_RDWR};
        runtime::resume_call(rt.ctx, rt.calls, 4242, entry);
        rt.settle();
        CHECK(rt.calls->taken == 0);
        CHECK(rt.kernel.log.empty());
        CHECK(rt.events.empty());
    }
}
