// The runtime's loop (runtime/loop.h) on a Boost.Asio io_context.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>

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

}  // namespace kw::io
