// See metrics_server.h.
#include "io/metrics_server.h"

#include <spdlog/spdlog.h>

#include <memory>

namespace kw::io {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class MetricsServer::Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(MetricsServer& server, tcp::socket socket)
        : server_(server), open_(server.open_), socket_(std::move(socket)), timer_(server.io_) {}
    ~Connection() { --*open_; }

    void start() {
        auto self = shared_from_this();
        timer_.expires_after(kRequestTimeout);
        timer_.async_wait([self](boost::system::error_code ec) {
            if (!ec) self->close();  // too slow: whatever it sent is dropped
        });
        asio::async_read_until(socket_, asio::dynamic_buffer(head_, kMaxHead), "\r\n\r\n",
                               [self](boost::system::error_code ec, size_t n) { self->on_head(ec, n); });
    }

private:
    void on_head(boost::system::error_code ec, size_t n) {
        if (ec == asio::error::not_found) return respond(431, "Request Header Fields Too Large", "request head over 8 KiB\n");
        if (ec) return close();
        auto request = core::metrics::parse_http_head(std::string_view(head_).substr(0, n));
        if (!request) return respond(400, "Bad Request", request.message() + "\n");
        const bool head = request->method == "HEAD";
        if (request->method != "GET" && !head) return respond(405, "Method Not Allowed", "GET /metrics only\n", "Allow: GET, HEAD\r\n");
        std::string path = request->target.substr(0, request->target.find('?'));
        if (path != "/metrics") return respond(404, "Not Found", "kwarden serves /metrics only\n");
        server_.scrapes_++;
        respond(200, "OK", server_.render_(), "", head);
    }

    void respond(int code, const char* reason, std::string body, const char* extra = "", bool head_only = false) {
        if (code >= 400) server_.bad_requests_++;
        const char* type = code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
        out_ = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "Connection: close\r\n\r\n";
        if (!head_only) out_ += body;
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(out_), [self](boost::system::error_code, size_t) { self->close(); });
    }

    void close() {
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

    MetricsServer& server_;  // used only from handlers, which run while the server lives
    std::shared_ptr<size_t> open_;
    tcp::socket socket_;
    asio::steady_timer timer_;
    std::string head_;
    std::string out_;
};

MetricsServer::MetricsServer(asio::io_context& io, std::function<std::string()> render)
    : io_(io),
      render_(std::move(render)),
      acceptor_(io),
      accept_(io, acceptor_, "metrics endpoint", [this](tcp::socket s) { on_socket(std::move(s)); }) {}

Result<void> MetricsServer::listen(const core::metrics::ListenAddress& address) {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(address.host, ec);
    if (ec) return make_error("--metrics-address: " + address.host + ": " + ec.message());
    tcp::endpoint endpoint(ip, address.port);
    address_ = (ip.is_v6() ? "[" + address.host + "]" : address.host) + ":" + std::to_string(address.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        return make_error("cannot serve metrics on " + address_ + ": " + ec.message());
    }
    accept_.start();
    return {};
}

void MetricsServer::on_socket(tcp::socket socket) {
    if (*open_ >= kMaxConnections) {
        // A scraper opens one at a time: this many at once is someone else.
        if ((turned_away_++ & 1023) == 0)
            spdlog::warn("metrics endpoint: {} connections open, turning more away ({} so far)", *open_, turned_away_);
        boost::system::error_code ignored;
        socket.close(ignored);
        return;
    }
    ++*open_;
    std::make_shared<Connection>(*this, std::move(socket))->start();
}

}  // namespace kw::io
