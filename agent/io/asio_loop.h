// The runtime's loop (runtime/loop.h) on a Boost.Asio io_context.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>

#include "io/worker.h"
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

// Offload on a pool of THREADS worker threads of STACK_BYTES stack each, started with the
// first work; the continuation is posted to IO. Destroy it before IO: its destructor
// waits for the works running.
class AsioOffload final : public runtime::Offload {
public:
    AsioOffload(boost::asio::io_context& io, size_t threads, size_t stack_bytes)
        : io_(io), workers_(threads, stack_bytes) {}
    void run(std::function<void()> work, std::function<void()> done) override {
        workers_.post([&io = io_, work = std::move(work), done = std::move(done)]() mutable {
            work();
            boost::asio::post(io, std::move(done));
        });
    }
    size_t threads() const { return workers_.threads(); }

private:
    boost::asio::io_context& io_;
    Worker workers_;
};

}  // namespace kw::io
