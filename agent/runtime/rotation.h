// SVID rotation on a timer of its own, set to the earliest rotation time of the node's
// SVIDs, so that a short svid_ttl is rotated on time rather than on the next tick. A
// failed rotation (the CA expired) is retried every kRetry; the current SVID stays in use
// until it expires.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "identity/node_identity.h"
#include "runtime/loop.h"

namespace kw::runtime {

class Rotation {
public:
    static constexpr std::chrono::seconds kRetry{5};

    // ROTATED runs after each rotation that issued SVIDs (the test build's key dump).
    Rotation(Loop& loop, identity::NodeIdentity& identity, std::function<void()> rotated = {})
        : loop_(loop), identity_(identity), rotated_(std::move(rotated)) {}
    // (Re)sets the timer to the earliest rotation due; call after the SVIDs change.
    void schedule();

private:
    void rotate();

    Loop& loop_;
    identity::NodeIdentity& identity_;
    std::function<void()> rotated_;
    std::unique_ptr<Timer> timer_;
};

}  // namespace kw::runtime
