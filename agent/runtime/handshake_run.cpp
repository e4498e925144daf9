#include "runtime/handshake_run.h"

#include <fcntl.h>

#include <spdlog/spdlog.h>

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

// One wait for readable at a time: NEXT once the socket is.
void wait_readable(const std::shared_ptr<HandshakeRun>& run, const StepOutcome& then, std::function<void()> next) {
    if (run->read_waiting) return;
    run->read_waiting = true;
    then.wait(Readiness::For::read, [run, next = std::move(next)] {
        run->read_waiting = false;
        next();
    });
}

}  // namespace

void step_handshake(Offload* offload, std::shared_ptr<HandshakeRun> run, StepOutcome then) {
    if (run->over) return;
    if (run->stepping) {  // the socket became ready while a step runs: one more after it
        run->again = true;
        return;
    }
    auto next = [offload, run, then] { step_handshake(offload, run, then); };
    auto settle = [run, then, next](const Result<tls::Progress>& progress) {
        if (!then.live()) {
            run->over = true;
            return;
        }
        if (!progress || *progress == tls::Progress::done) {
            run->over = true;
            if (!progress) return then.failed(run->hs->failure().empty() ? progress.message() : run->hs->failure());
            return then.done();
        }
        if (std::exchange(run->again, false)) return next();
        if (*progress == tls::Progress::want_write) return then.wait(Readiness::For::write, next);
        wait_readable(run, then, next);
    };
    if (!offload) return settle(run->hs->step());
    // The loop's reactor is edge-triggered: data that arrives while the step runs on a
    // worker, with no wait pending, would wake nothing. The read wait starts before the
    // step; if it fires meanwhile, the step runs again after this one.
    wait_readable(run, then, next);
    run->stepping = true;
    auto outcome = std::make_shared<Result<tls::Progress>>(make_error("not run"));
    offload->run([run, outcome] { *outcome = run->hs->step(); },
                 [run, outcome, settle] {
                     run->stepping = false;
                     settle(*outcome);
                 });
}

}  // namespace kw::runtime
