// What the runtime needs of an event loop, and nothing else: a timer, and a wait for a
// descriptor to become readable or writable. io/asio_loop.h implements it on Boost.Asio
// for the agent and for the unit tests. A wait runs its callback at most once, on the
// loop's thread; cancel() (or destroying the object) drops what is pending, and the
// callback then never runs. Offload runs work on other threads and its continuation back
// on the loop.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace kw::runtime {

class Timer {
public:
    virtual ~Timer() = default;
    // Replaces any pending wake-up.
    virtual void at(std::chrono::steady_clock::time_point when, std::function<void()> fire) = 0;
    void after(std::chrono::steady_clock::duration d, std::function<void()> fire) {
        at(std::chrono::steady_clock::now() + d, std::move(fire));
    }
    virtual void cancel() = 0;
};

// Readiness of one descriptor, which the caller keeps open while it waits on it.
class Readiness {
public:
    enum class For { read, write };
    virtual ~Readiness() = default;
    virtual void wait(For what, std::function<void()> ready) = 0;
    virtual void cancel() = 0;
};

class Loop {
public:
    virtual ~Loop() = default;
    virtual std::unique_ptr<Timer> timer() = 0;
    virtual std::unique_ptr<Readiness> watch(int fd) = 0;
};

// Work that takes CPU and touches nothing the loop owns (a TLS handshake's next flight):
// WORK runs on one of the offload's threads, then DONE on the loop's thread. Several
// works may run at once.
class Offload {
public:
    virtual ~Offload() = default;
    virtual void run(std::function<void()> work, std::function<void()> done) = 0;
};

}  // namespace kw::runtime
