#include "runtime/handshake_run.h"

#include <fcntl.h>

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
    return run;
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
    offload->run([offload, raw = run.get()](Loop& loop) {
        raw->away_ready = loop.watch(raw->own.get());
        step_away(*offload, raw);
    });
}

}  // namespace kw::runtime
