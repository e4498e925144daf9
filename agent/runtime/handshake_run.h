// A TLS handshake the runtime drives on the loop, each step on the handshake threads
// when the context has them (Context::handshakes): the sessions of held calls run theirs
// with it, and so does the handshake benchmark (bench/handshake_bench.cpp).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/result.h"
#include "core/unique_fd.h"
#include "runtime/loop.h"
#include "tls/handshake.h"

namespace kw::runtime {

// A handshake, and when its steps run on other threads a descriptor of its own for the
// socket: a step on a worker holds both, so the session may give up meanwhile (a timeout,
// the process gone) and close its descriptor; the handshake and its descriptor go when
// the last of the session and the step lets go. On the loop alone no copy is made.
struct HandshakeRun {
    core::UniqueFd own;
    std::unique_ptr<tls::Handshake> hs;
    // The loop's view (only the loop touches these):
    bool stepping = false;      // a step is running on a worker
    bool again = false;         // the socket became ready meanwhile: step once more
    bool read_waiting = false;  // a wait for readable is pending
    bool over = false;          // done, failed or given up: later wake-ups do nothing

    // The handshake, for events: none while a worker moves it on.
    const tls::Handshake* settled() const { return stepping ? nullptr : hs.get(); }

    // A handshake on FD (a connected, non-blocking TCP socket the caller keeps open
    // while it runs), on a copy of it when OFFLOAD will run its steps.
    static Result<std::shared_ptr<HandshakeRun>> start(int fd, tls::HandshakeConfig cfg, const Offload* offload);
};

// What follows a step, on the loop: LIVE says whether the session still wants the
// outcome (it may have given up, or moved on to another connection, meanwhile); then
// DONE when the handshake is finished, FAILED with the reason when it cannot be. WAIT
// waits for the session's socket to be ready for reading or writing, then calls READY.
struct StepOutcome {
    std::function<bool()> live;
    std::function<void()> done;
    std::function<void(const std::string&)> failed;
    std::function<void(Readiness::For, std::function<void()> ready)> wait;
};

// Steps RUN until it is done or fails, each step on OFFLOAD's threads when there is one
// (what follows it on the loop), else on the loop; between steps it waits for the
// socket. Called again while a step runs (the socket became ready), it steps once more
// after that one.
void step_handshake(Offload* offload, std::shared_ptr<HandshakeRun> run, StepOutcome then);

}  // namespace kw::runtime
