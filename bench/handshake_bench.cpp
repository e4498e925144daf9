// The agent's handshake engine alone, on the host (no BPF, no kTLS): how many mutual TLS
// 1.3 connections per second it completes when its handshakes run on the event loop's
// thread (0 workers) and on 1 and 2 handshake threads (each handshake whole on one, with
// that thread's own loop; both ends of a connection on the same one, as the agent's
// connection key puts them), with the same driver the agent's sessions use
// (runtime/handshake_run.h), the same shared contexts (one per SVID and role) and
// P-256 X.509-SVIDs of one trust domain. Each connection is both ends' handshakes over
// loopback TCP, as one agent runs them for a client and a server on its node; the TCP
// connections are made before the clock starts (the workloads' work, not the engine's).
// Several connections are in flight at once (--concurrency), as under load.
//
//   build/kw_bench_handshake [--count N] [--repeats R] [--concurrency K] [--only WORKERS]
//                            [--cipher SUITE] [--json FILE]
//
// --only runs one setup (0, 1 or 2 workers), to profile it; the table then lacks the rest.
// --cipher picks the suite both ends use (aes-128-gcm, the agent's default, or aes-256-gcm
// or chacha20-poly1305).
//
// Prints a table; --json writes every repeat, for bench/run's report:
// {"figures": [{"name": ..., "workers": W, "per_second": [...], "cpu_us": [...]}, ...]}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/tls_suite.h"
#include "core/unique_fd.h"
#include "identity/authority.h"
#include "io/asio_loop.h"
#include "runtime/handshake_run.h"

namespace {

using namespace kw;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "kw_bench_handshake: %s\n", what.c_str());
    std::exit(1);
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Identities {
    std::shared_ptr<const identity::Svid> client, server;
    std::shared_ptr<const identity::TrustStore> trust;
    core::SpiffeId server_id;
};

Identities make_identities() {
    auto now = identity::now_seconds();
    auto ca = identity::SigningAuthority::ephemeral("bench.example", now);
    if (!ca) die(ca.message());
    std::shared_ptr<const identity::TrustBundle> bundle(*ca, &(*ca)->bundle());
    Identities ids;
    ids.trust = std::make_shared<const identity::TrustStore>(bundle, std::vector<std::shared_ptr<const identity::TrustBundle>>{});
    ids.server_id = core::SpiffeId{"bench.example", "/ns/bench/sa/db"};
    auto c = (*ca)->issue(core::SpiffeId{"bench.example", "/ns/bench/sa/app"}, identity::Seconds(3600), now);
    auto s = (*ca)->issue(ids.server_id, identity::Seconds(3600), now);
    if (!c || !s) die("cannot issue the SVIDs");
    ids.client = *c;
    ids.server = *s;
    return ids;
}

// One run: COUNT connections, CONCURRENCY at a time, steps on OFFLOAD (null: the loop).
class Engine {
public:
    Engine(boost::asio::io_context& io, runtime::Offload* offload, const Identities& ids, tls::ContextCache& contexts,
           tls::Cipher cipher, int count, int concurrency)
        : io_(io),
          loop_(io),
          offload_(offload),
          ids_(ids),
          contexts_(contexts),
          cipher_(cipher),
          count_(count),
          concurrency_(concurrency) {
        listener_ = core::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(listener_.get(), 1024) != 0 ||
            ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            die(std::string("listener: ") + std::strerror(errno));
        addr_ = addr;
    }

    // The TCP connections, all made before the clock starts: connect and accept are the
    // workloads' and the kernel's work, not the engine's, and on the loop's thread they
    // would run beside one handshake thread on the other core, flattering it.
    void prepare() {
        for (int i = 0; i < count_; ++i) {
            core::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0)
                die(std::string("connect: ") + std::strerror(errno));
            core::UniqueFd server(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
            if (!server.valid()) die(std::string("accept: ") + std::strerror(errno));
            ::fcntl(client.get(), F_SETFL, ::fcntl(client.get(), F_GETFL) | O_NONBLOCK);
            int one = 1;
            ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ::setsockopt(server.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            pairs_.emplace_back(std::move(client), std::move(server));
        }
    }

    void run() {
        // Handshakes on other threads leave the loop nothing to wait on for a while: it
        // runs until stopped.
        auto busy = boost::asio::make_work_guard(io_);
        for (int i = 0; i < concurrency_ && started_ < count_; ++i) start();
        io_.run();
        io_.restart();
        if (failed_) die("a handshake failed: " + failure_);
        if (finished_ != count_) die("the loop stopped before every connection was done");
    }

private:
    // One end of one connection.
    struct End : std::enable_shared_from_this<End> {
        Engine* engine;
        core::UniqueFd fd;
        std::unique_ptr<runtime::Readiness> ready;
        std::shared_ptr<runtime::HandshakeRun> run;
        std::shared_ptr<int> pending;  // the connection's ends not done yet

        void drive() {
            auto self = shared_from_this();
            runtime::step_handshake(engine->offload_, run,
                                    {[] { return true; }, [self] { self->engine->end_done(*self); },
                                     [self](const std::string& why) { self->engine->fail(why); },
                                     [self](runtime::Readiness::For what, std::function<void()> ready) {
                                         self->ready->wait(what, std::move(ready));
                                     }});
        }
    };

    void start() {
        auto [client, server] = std::move(pairs_.at(started_));
        ++started_;
        auto pending = std::make_shared<int>(2);
        tls::HandshakeConfig c;
        c.role = tls::Role::client;
        c.svid = ids_.client;
        c.trust = ids_.trust;
        c.check_peer = tls::expect_peer_id(ids_.server_id);
        c.contexts = &contexts_;
        c.cipher = cipher_;
        c.require = cipher_;
        tls::HandshakeConfig s;
        s.role = tls::Role::server;
        s.svid = ids_.server;
        s.trust = ids_.trust;
        s.check_peer = [](const core::SpiffeId&) -> Result<void> { return {}; };
        s.contexts = &contexts_;
        s.cipher = cipher_;
        for (auto [fd, cfg] : {std::pair{&client, &c}, std::pair{&server, &s}}) {
            auto end = std::make_shared<End>();
            end->engine = this;
            end->fd = std::move(*fd);
            end->ready = loop_.watch(end->fd.get());
            auto r = runtime::HandshakeRun::start(end->fd.get(), std::move(*cfg), offload_);
            if (!r) die(r.message());
            end->run = std::move(*r);
            end->pending = pending;
            end->drive();
        }
    }

    void end_done(End& end) {
        // The socket stays open until the clock has stopped: closing the last descriptor
        // of a TCP connection is its teardown, the workloads' work (the agent closes only
        // copies: the app's descriptor is the last).
        spent_.push_back(std::move(end.fd));
        if (--*end.pending) return;
        if (++finished_ == count_) return io_.stop();
        if (started_ < count_) start();
    }

    void fail(const std::string& why) {
        failed_ = true;
        failure_ = why;
        io_.stop();
    }

    boost::asio::io_context& io_;
    io::AsioLoop loop_;
    runtime::Offload* offload_;
    const Identities& ids_;
    tls::ContextCache& contexts_;
    const tls::Cipher cipher_;
    const int count_;
    const int concurrency_;
    core::UniqueFd listener_;
    sockaddr_in addr_{};
    std::vector<std::pair<core::UniqueFd, core::UniqueFd>> pairs_;  // client, server
    std::vector<core::UniqueFd> spent_;  // the ends done, closed with the engine
    int started_ = 0;
    int finished_ = 0;
    bool failed_ = false;
    std::string failure_;
};

struct Figure {
    std::string name;
    size_t workers;
    std::vector<double> per_second;
    std::vector<double> cpu_us;  // process CPU per connection (both ends)
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int count = 200, repeats = 5, concurrency = 8, only = -1;
    const char* json_path = nullptr;
    auto cipher = tls::Cipher::aes_128_gcm;
    for (int i = 1; i < argc; ++i) {
        auto number = [&](int& out) {
            if (i + 1 >= argc || (out = std::atoi(argv[++i])) <= 0) die(std::string(argv[i - 1]) + " takes a positive number");
        };
        if (std::strcmp(argv[i], "--count") == 0) {
            number(count);
        } else if (std::strcmp(argv[i], "--repeats") == 0) {
            number(repeats);
        } else if (std::strcmp(argv[i], "--concurrency") == 0) {
            number(concurrency);
        } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = std::atoi(argv[++i]);
        } else if (std::strcmp(argv[i], "--cipher") == 0 && i + 1 < argc) {
            auto id = core::parse_tls_suite(argv[++i]);
            if (!id) die(id.message());
            cipher = static_cast<tls::Cipher>(*id);
        } else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            std::fprintf(stderr, "usage: kw_bench_handshake [--count N] [--repeats R] [--concurrency K] [--only WORKERS] "
                                 "[--cipher SUITE] [--json FILE]\n");
            return 2;
        }
    }
    // Every connection is made before its run's clock starts: two descriptors each.
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
    if (files.rlim_cur < static_cast<rlim_t>(2 * count + 64))
        die("--count " + std::to_string(count) + " needs " + std::to_string(2 * count + 64) +
            " descriptors; the limit is " + std::to_string(files.rlim_cur));
    spdlog::set_level(spdlog::level::warn);
    Identities ids = make_identities();
    tls::ContextCache contexts;
    std::vector<Figure> figures = {{"handshake engine, steps on the loop", 0, {}, {}},
                                   {"handshake engine, 1 worker", 1, {}, {}},
                                   {"handshake engine, 2 workers", 2, {}, {}}};
    // Repeats interleaved (0, 1, 2 workers, then again): a drift of the machine's speed
    // touches every setup alike.
    for (int r = 0; r < repeats; ++r) {
        for (Figure& f : figures) {
            if (only >= 0 && f.workers != static_cast<size_t>(only)) continue;
            boost::asio::io_context io;
            std::unique_ptr<io::AsioOffload> offload;
            if (f.workers) offload = std::make_unique<io::AsioOffload>(io, f.workers, tls::kHandshakeStackBytes);
            Engine engine(io, offload.get(), ids, contexts, cipher, count, concurrency);
            engine.prepare();
            const double cpu = cpu_seconds();
            const auto start = Clock::now();
            engine.run();
            std::chrono::duration<double> took = Clock::now() - start;
            f.per_second.push_back(count / took.count());
            f.cpu_us.push_back((cpu_seconds() - cpu) * 1e6 / count);
        }
    }
    std::printf("kwarden handshake engine on the host: %d connections (both ends) x %d repeats, %d in flight, %s, %ld CPUs\n",
                count, repeats, concurrency, std::string(core::tls_suite_name(static_cast<uint16_t>(cipher))).c_str(),
                ::sysconf(_SC_NPROCESSORS_ONLN));
    std::printf("%-40s %12s %14s %12s\n", "figure", "conn/s", "CPU us/conn", "vs 1 worker");
    const double one = figures[1].per_second.empty() ? 0 : median(figures[1].per_second);
    for (const Figure& f : figures)
        if (!f.per_second.empty())
            std::printf("%-40s %12.1f %14.0f %11.2fx\n", f.name.c_str(), median(f.per_second), median(f.cpu_us),
                        one ? median(f.per_second) / one : 0);
    if (json_path) {
        nlohmann::json doc = {{"count", count}, {"concurrency", concurrency}, {"figures", nlohmann::json::array()}};
        for (const Figure& f : figures)
            doc["figures"].push_back(
                {{"name", f.name}, {"workers", f.workers}, {"per_second", f.per_second}, {"cpu_us", f.cpu_us}});
        std::ofstream out(json_path);
        out << doc.dump() << "\n";
        if (!out) die(std::string("cannot write ") + json_path);
    }
    return 0;
}
