// What the runtime needs of an event loop, and nothing else: a timer, and a wait for a
// descriptor to become readable or writable. io/asio_loop.h implements it on Boost.Asio
// for the agent and for the unit tests. A wait runs its callback at most once, on the
// loop's thread; cancel() (or destroying the object) drops what is pending, and the
// callback then never runs. Offload runs work on threads with loops of their own, and
// hands results back to this one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

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

// Threads with event loops of their own, where work that takes CPU runs whole (a TLS
// handshake, step after step, waiting on that thread's own reactor between steps): one
// hand-off there and one back per job, however many steps it takes. A job touches
// nothing the agent's loop owns; what it hands back runs on the agent's loop (back()).
class Offload {
public:
    virtual ~Offload() = default;
    // Runs JOB on one of the threads, with that thread's loop: its waits and timers run
    // there too. A job given the KEY of a job started shortly before (the other end of
    // the same connection) goes to that job's thread; any other to the thread with the
    // fewest jobs out. A job hands back once (back()), when it is done: then it is no
    // longer out.
    virtual void run(std::function<void(Loop&)> job, std::optional<uint64_t> key) = 0;
    // Runs FN on the agent's loop. From a job: its last act.
    virtual void back(std::function<void()> fn) = 0;
};

}  // namespace kw::runtime
