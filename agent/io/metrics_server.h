// The /metrics endpoint: HTTP/1.1 on a TCP address (--metrics-address), each scrape
// answered with the text RENDER returns, on the agent's loop. Built to be left open to a
// network: a request head of at most kMaxHead bytes within kRequestTimeout, at most
// kMaxConnections at once (more are closed at accept), one request per connection, GET
// or HEAD of /metrics only; anything else gets its status code and a line saying why.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/metrics.h"
#include "core/result.h"
#include "io/accept_loop.h"

namespace kw::io {

class MetricsServer {
public:
    static constexpr size_t kMaxHead = 8192;
    static constexpr std::chrono::seconds kRequestTimeout{10};
    static constexpr size_t kMaxConnections = 16;

    MetricsServer(boost::asio::io_context& io, std::function<std::string()> render);
    Result<void> listen(const core::metrics::ListenAddress& address);
    std::string address() const { return address_; }
    uint64_t scrapes() const { return scrapes_; }
    uint64_t bad_requests() const { return bad_requests_; }
    uint64_t accept_errors() const { return accept_.errors(); }
    uint64_t turned_away() const { return turned_away_; }

private:
    class Connection;
    void on_socket(boost::asio::ip::tcp::socket socket);

    boost::asio::io_context& io_;
    std::function<std::string()> render_;
    boost::asio::ip::tcp::acceptor acceptor_;
    BasicAcceptLoop<boost::asio::ip::tcp> accept_;
    std::string address_;
    // Shared with the connections it counts: one may outlive the server (a handler still
    // pending when the loop is destroyed).
    std::shared_ptr<size_t> open_ = std::make_shared<size_t>(0);
    uint64_t scrapes_ = 0;
    uint64_t bad_requests_ = 0;
    uint64_t turned_away_ = 0;
};

}  // namespace kw::io
