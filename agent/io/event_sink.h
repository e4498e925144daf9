// Where events go: the events file (or stdout), the last kRecent for `kwarden events`,
// and every follower of the stream. Kernel events and the agent's own (enrolment,
// handshakes) alike, one JSON line each.
#pragma once

#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "runtime/admin.h"

namespace kw::io {

class EventSink {
public:
    static constexpr size_t kRecent = 1000;

    // PATH: "" nowhere but the admin socket, "-" stdout, else a file appended to.
    Result<void> open(const std::string& path);
    void emit(const nlohmann::json& event);
    // Sends CLIENT the recent events; with FOLLOW, every event from now on too.
    void replay(const std::shared_ptr<runtime::AdminClient>& client, bool follow);

private:
    bool to_stdout_ = false;
    std::ofstream file_;
    std::deque<std::string> recent_;
    std::vector<std::weak_ptr<runtime::AdminClient>> followers_;
};

}  // namespace kw::io
