#include "io/event_sink.h"

#include <cerrno>
#include <cstring>
#include <iostream>

#include "core/json_field.h"

namespace kw::io {

Result<void> EventSink::open(const std::string& path) {
    to_stdout_ = path == "-";
    if (path.empty() || to_stdout_) return {};
    file_.open(path, std::ios::app);
    if (!file_) return make_error("cannot open events file " + path + ": " + std::strerror(errno));
    return {};
}

void EventSink::emit(const nlohmann::json& event) {
    std::string line = core::json_text(event);
    if (file_.is_open()) {
        file_ << line << '\n';
        file_.flush();
    } else if (to_stdout_) {
        std::cout << line << std::endl;
    }
    recent_.push_back(line);
    if (recent_.size() > kRecent) recent_.pop_front();
    for (auto it = followers_.begin(); it != followers_.end();) {
        if (auto s = it->lock()) {
            s->send(line);
            ++it;
        } else {
            it = followers_.erase(it);
        }
    }
}

void EventSink::replay(const std::shared_ptr<runtime::AdminClient>& client, bool follow) {
    for (const auto& recent : recent_) client->send(recent);
    if (follow) {
        client->set_following();
        followers_.push_back(client);
    }
}

}  // namespace kw::io
