// The runtime's loop (runtime/loop.h) on a Boost.Asio io_context.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>

#include <array>
#include <memory>
#include <vector>

#include "runtime/loop.h"

namespace kw::io {

class AsioLoop final : public runtime::Loop {
public:
    explicit AsioLoop(boost::asio::io_context& io) : io_(io) {}
    std::unique_ptr<runtime::Timer> timer() override;
    // The descriptor is registered with the reactor until the watch is destroyed, and
    // never closed by it: destroy the watch before closing FD. One watch per descriptor.
    std::unique_ptr<runtime::Readiness> watch(int fd) override;

private:
    boost::asio::io_context& io_;
};

// Offload on THREADS threads of STACK_BYTES stack each, each running an io_context and
// loop of its own (three descriptors each: epoll, eventfd, timerfd), all started here
// (if none can start, jobs run on IO's loop: slower, still correct); back() posts to IO.
// Destroy it before IO: its destructor stops the threads and waits for them; jobs still
// waiting there are dropped.
class AsioOffload final : public runtime::Offload {
public:
    AsioOffload(boost::asio::io_context& io, size_t threads, size_t stack_bytes);
    ~AsioOffload() override;
    AsioOffload(const AsioOffload&) = delete;
    AsioOffload& operator=(const AsioOffload&) = delete;

    void run(std::function<void(runtime::Loop&)> job, std::optional<uint64_t> key) override;  // from IO's thread only
    void back(std::function<void()> fn) override;
    size_t threads() const { return wanted_; }
    size_t stack_bytes() const { return stack_bytes_; }

private:
    struct Thread;
    void start();

    boost::asio::io_context& io_;
    AsioLoop home_;  // where jobs run when no thread could start
    const size_t wanted_;
    const size_t stack_bytes_;
    size_t next_ = 0;
    std::vector<std::unique_ptr<Thread>> threads_;
    // The keys of the last jobs, and their threads (IO's thread only): where the other
    // end of a connection goes. A connection's two ends start within a round trip or
    // so; when more jobs came between, the second end is placed like any job.
    struct Recent {
        uint64_t key = 0;
        Thread* thread = nullptr;
    };
    std::array<Recent, 256> recent_{};
    size_t recent_next_ = 0;
};

}  // namespace kw::io
