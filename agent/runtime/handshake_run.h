// A TLS handshake the runtime drives: on the agent's loop, or whole on one of the
// handshake threads when the context has them (Context::handshakes), its outcome coming
// back to the loop. The sessions of held calls run theirs with it, and so does the
// handshake benchmark (bench/handshake_bench.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "core/unique_fd.h"
#include "runtime/loop.h"
#include "tls/handshake.h"

namespace kw::runtime {

// What follows a handshake, on the loop: LIVE says whether the session still wants the
// outcome (it may have given up, or moved on to another connection, meanwhile); then
// DONE when the handshake is finished, FAILED with the reason when it cannot be. WAIT
// waits for the session's socket to be ready for reading or writing, then calls READY
// (used only when the handshake runs on the loop).
struct StepOutcome {
    std::function<bool()> live;
    std::function<void()> done;
    std::function<void(const std::string&)> failed;
    std::function<void(Readiness::For, std::function<void()> ready)> wait;
};

// A handshake, and when it runs on a handshake thread a descriptor of its own for the
// socket: the session may give up meanwhile (a timeout, the process gone) and close its
// descriptor. A session gives up by shutting the connection down, which wakes the thread's
// wait: the handshake fails there and comes back, and only then goes, on the loop.
struct HandshakeRun {
    core::UniqueFd own;
    std::unique_ptr<tls::Handshake> hs;
    std::optional<uint64_t> key;  // the connection's (connection_key), for the thread it goes to
    // The loop's view (only the loop touches these):
    bool away = false;          // on a handshake thread until its outcome comes back
    bool read_waiting = false;  // on the loop: a wait for readable is pending
    bool over = false;          // done, failed or given up: later wake-ups do nothing
    std::shared_ptr<HandshakeRun> keep;  // the loop's hold while away: it goes on the loop
    StepOutcome then;                    // what follows, while away
    // The handshake thread's (only it touches this, while away):
    std::unique_ptr<Readiness> away_ready;

    // The handshake, for events: none while a handshake thread moves it on.
    const tls::Handshake* settled() const { return away ? nullptr : hs.get(); }

    // A handshake on FD (a connected, non-blocking TCP socket the caller keeps open
    // while it runs), on a copy of it when OFFLOAD will run it.
    static Result<std::shared_ptr<HandshakeRun>> start(int fd, tls::HandshakeConfig cfg, const Offload* offload);
};

// The connection of FD (a connected TCP socket) as a number that is the same from both of
// its ends: a hash of its two endpoints in a fixed order, IPv4 taken as IPv4-mapped IPv6.
// The offload sends a handshake whose key it saw shortly before to that handshake's
// thread, so the two ends of a connection inside the node (a client and a server the
// agent both handshakes for) take turns on one reactor, each flight found by the same
// thread's next wait, not handed to the other thread with a wake-up. A collision only
// places a handshake less well. None when FD has no peer (or is not IP).
std::optional<uint64_t> connection_key(int fd);

// Drives RUN until it is done or fails: with OFFLOAD, whole on one of its threads (later
// calls do nothing: the thread waits for the socket itself); without, step by step on
// the loop, waiting for the socket between steps.
void step_handshake(Offload* offload, std::shared_ptr<HandshakeRun> run, StepOutcome then);

}  // namespace kw::runtime
