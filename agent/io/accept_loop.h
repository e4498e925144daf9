// Accepting on a socket any local user may connect to (the enrolment and admin unix
// sockets, the metrics TCP port), so that no error ends the service: every failed accept is counted and the
// accept re-armed. Out of descriptors or memory, the connection stays in the backlog and
// an immediate retry would spin: the retry waits a short back-off instead.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <spdlog/spdlog.h>
#include <string>

namespace kw::io {

template <typename Protocol>
class BasicAcceptLoop {
public:
    static constexpr std::chrono::milliseconds kBackoff{100};

    BasicAcceptLoop(boost::asio::io_context& io, typename Protocol::acceptor& acceptor, std::string name,
                    std::function<void(typename Protocol::socket)> on_socket)
        : acceptor_(acceptor), backoff_(io), name_(std::move(name)), on_socket_(std::move(on_socket)) {}

    void start() { arm(); }
    // Failed accepts (and connections whose handling threw) since start.
    uint64_t errors() const { return errors_; }

private:
    void arm() {
        acceptor_.async_accept([this](boost::system::error_code ec, typename Protocol::socket socket) {
            if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;  // closed: stopping
            if (ec) return failed(ec);
            try {
                on_socket_(std::move(socket));
            } catch (const std::exception& e) {
                // The connection is dropped with what threw; the socket keeps serving.
                ++errors_;
                spdlog::error("{}: a connection's handling failed: {}", name_, e.what());
            }
            arm();
        });
    }

    void failed(const boost::system::error_code& ec) {
        ++errors_;
        // The first failure and then every power of two: a flood is seen, not a log per try.
        if ((errors_ & (errors_ - 1)) == 0) spdlog::warn("{}: accept failed ({} so far): {}", name_, errors_, ec.message());
        const int e = ec.value();
        const bool transient = ec.category() == boost::asio::error::get_system_category() &&
                               (e == ECONNABORTED || e == EINTR || e == EPROTO || e == EAGAIN);
        if (transient) return arm();
        backoff_.expires_after(kBackoff);
        backoff_.async_wait([this](boost::system::error_code wait_ec) {
            if (!wait_ec) arm();
        });
    }

    typename Protocol::acceptor& acceptor_;
    boost::asio::steady_timer backoff_;
    std::string name_;
    std::function<void(typename Protocol::socket)> on_socket_;
    uint64_t errors_ = 0;
};

using AcceptLoop = BasicAcceptLoop<boost::asio::local::stream_protocol>;

}  // namespace kw::io
