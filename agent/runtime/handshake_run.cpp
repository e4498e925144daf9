#include "runtime/handshake_run.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace kw::runtime {

Result<std::shared_ptr<HandshakeRun>> HandshakeRun::start(int fd, tls::HandshakeConfig cfg, const Offload* offload) {
    auto run = std::make_shared<HandshakeRun>();
    if (offload) {
        run->own = core::UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!run->own.valid()) return make_error(std::string("handshake descriptor: ") + std::strerror(errno));
        fd = run->own.get();
    }
    auto hs = tls::Handshake::create(fd, std::move(cfg));
    if (!hs) return make_error(hs.message());
    run->hs = std::move(*hs);
    if (offload) run->key = connection_key(fd);
    return run;
}

namespace {

using Endpoint = std::array<unsigned char, 18>;  // IPv6 address (IPv4 mapped), port

std::optional<Endpoint> endpoint(const sockaddr_storage& ss) {
    Endpoint e{};
    if (ss.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
        e[10] = e[11] = 0xff;
        std::memcpy(&e[12], &in.sin_addr, 4);
        std::memcpy(&e[16], &in.sin_port, 2);
    } else if (ss.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
        std::memcpy(&e[0], &in6.sin6_addr, 16);
        std::memcpy(&e[16], &in6.sin6_port, 2);
    } else {
        return std::nullopt;
    }
    return e;
}

}  // namespace

std::optional<uint64_t> connection_key(int fd) {
    sockaddr_storage mine{}, peer{};
    socklen_t mine_len = sizeof mine, peer_len = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &mine_len) != 0 ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0)
        return std::nullopt;
    auto a = endpoint(mine), b = endpoint(peer);
    if (!a || !b) return std::nullopt;
    if (*b < *a) std::swap(a, b);
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits: compared, never reduced to a thread
    for (const Endpoint* e : {&*a, &*b})
        for (unsigned char c : *e) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

namespace {

void settle(HandshakeRun& run, const StepOutcome& then, const Result<tls::Progress>& progress) {
    run.over = true;
    if (!then.live()) return;
    if (!progress) return then.failed(run.hs->failure().empty() ? progress.message() : run.hs->failure());
    then.done();
}

// On the loop, one step at a time.
void step_on_loop(std::shared_ptr<HandshakeRun> run, StepOutcome then) {
    if (run->over) return;
    Result<tls::Progress> progress = run->hs->step();
    if (!progress || *progress == tls::Progress::done || !then.live()) return settle(*run, then, progress);
    auto next = [run, then] { step_on_loop(run, then); };
    if (*progress == tls::Progress::want_write) return then.wait(Readiness::For::write, next);
    if (run->read_waiting) return;  // one wait for readable at a time
    run->read_waiting = true;
    then.wait(Readiness::For::read, [run, next] {
        run->read_waiting = false;
        next();
    });
}

// On a handshake thread: steps, and waits on that thread's loop between them, until the
// handshake is over; then hands it back to the loop. The thread holds no reference of
// its own (the loop's `keep` does), so the run always goes on the loop.
void step_away(Offload& offload, HandshakeRun* run) {
    Result<tls::Progress> progress = run->hs->step();
    if (progress && *progress != tls::Progress::done) {
        run->away_ready->wait(*progress == tls::Progress::want_write ? Readiness::For::write : Readiness::For::read,
                              [&offload, run] { step_away(offload, run); });
        return;
    }
    run->away_ready.reset();  // off this thread's reactor before the descriptor can go
    offload.back([run, progress = std::move(progress)] {
        std::shared_ptr<HandshakeRun> keep = std::move(run->keep);
        StepOutcome then = std::move(run->then);
        run->away = false;
        settle(*run, then, progress);
    });
}

}  // namespace

void step_handshake(Offload* offload, std::shared_ptr<HandshakeRun> run, StepOutcome then) {
    if (run->over || run->away) return;
    if (!offload) return step_on_loop(std::move(run), std::move(then));
    run->away = true;
    run->then = std::move(then);
    run->keep = run;
    offload->run(
        [offload, raw = run.get()](Loop& loop) {
            raw->away_ready = loop.watch(raw->own.get());
            step_away(*offload, raw);
        },
        run->key);
}

}  // namespace kw::runtime
