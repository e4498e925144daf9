// One client of the admin socket: request lines in, one reply line each, in order; a
// follower of the event stream gets event lines until it goes away.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <sys/types.h>

#include <nlohmann/json.hpp>

#include "runtime/admin.h"

namespace kw::io {

// The requests are answered by runtime::AdminService.
class AdminSession final : public runtime::AdminClient, public std::enable_shared_from_this<AdminSession> {
public:
    // A request line may carry a policy (the parser refuses more than 16 MiB); a peer
    // that sends more without a newline is cut off rather than buffered forever.
    static constexpr size_t kMaxRequest = 17u << 20;
    // A client that connects and says nothing holds a descriptor: its first request line
    // must be complete within this.
    static constexpr std::chrono::seconds kFirstRequest{5};
    AdminSession(boost::asio::local::stream_protocol::socket socket, runtime::AdminService& handler)
        : socket_(std::move(socket)), handler_(handler), in_(kMaxRequest), first_request_(socket_.get_executor()) {}
    void start();
    void send(const std::string& line) override;
    bool following() const { return following_; }
    void set_following() override { following_ = true; }
    // The reply comes later (a policy apply compiling off the loop): no further request
    // is read until it is sent, so that replies keep the order of requests.
    void set_waiting() override { waiting_ = true; }
    void reply_later(const nlohmann::json& response) override;

private:
    void read_next();
    void write_next();

    boost::asio::local::stream_protocol::socket socket_;
    runtime::AdminService& handler_;
    boost::asio::streambuf in_;
    boost::asio::steady_timer first_request_;
    std::deque<std::string> out_;
    bool following_ = false;
    bool waiting_ = false;
    bool writing_ = false;
    bool requested_ = false;  // a request line (or an error) came: no idle timeout any more
};

}  // namespace kw::io
