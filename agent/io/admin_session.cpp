#include "io/admin_session.h"

#include <spdlog/spdlog.h>

#include "core/json_field.h"

namespace kw::io {
namespace asio = boost::asio;
using json = nlohmann::json;

void AdminSession::start() {
    std::weak_ptr<AdminSession> weak = shared_from_this();
    first_request_.expires_after(kFirstRequest);
    first_request_.async_wait([weak](boost::system::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->requested_) return;
        self->handler_.idle(0);
        boost::system::error_code ignored;
        self->socket_.close(ignored);  // the pending read ends, and with it the session
    });
    read_next();
}

void AdminSession::read_next() {
    auto self = shared_from_this();
    asio::async_read_until(socket_, in_, '\n', [self](boost::system::error_code ec, size_t n) {
        self->requested_ = true;
        self->first_request_.cancel();
        if (ec == asio::error::not_found) {
            self->send(core::json_text({{"ok", false}, {"error", "request line longer than 17 MiB: refused"}}));
            return;
        }
        if (ec) return;
        std::string line(asio::buffers_begin(self->in_.data()), asio::buffers_begin(self->in_.data()) + n);
        self->in_.consume(n);
        // Whatever the request held, it gets an answer: a parser's message quoting
        // invalid UTF-8 is written with replacement characters, and anything else that
        // throws is an internal error of this request, not of the agent.
        json response;
        try {
            response = self->handler_.handle(json::parse(line), self);
        } catch (const json::parse_error& e) {
            response = {{"ok", false}, {"error", std::string("request is not valid JSON: ") + e.what()}};
        } catch (const std::exception& e) {
            spdlog::error("admin: a request failed: {}", e.what());
            response = {{"ok", false}, {"error", std::string("the agent could not handle the request: ") + e.what()}};
        }
        if (!response.is_null()) self->send(core::json_text(response));
        if (!self->following_ && !self->waiting_) self->read_next();
    });
}

void AdminSession::reply_later(const json& response) {
    waiting_ = false;
    send(core::json_text(response));
    read_next();
}

void AdminSession::send(const std::string& line) {
    out_.push_back(line + "\n");
    if (!writing_) write_next();
}

void AdminSession::write_next() {
    if (out_.empty()) {
        writing_ = false;
        return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_.front()), [self](boost::system::error_code ec, size_t) {
        if (ec) {
            self->out_.clear();
            self->writing_ = false;
            return;
        }
        self->out_.pop_front();
        self->write_next();
    });
}

}  // namespace kw::io
