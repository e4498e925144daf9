// Reading fields of JSON a peer sent (enrolment requests, holder messages): a missing
// field, or one of another type, gives the fallback. nlohmann's value() throws on a type
// mismatch instead, which in an Asio handler would take the whole agent down. Writing
// JSON that holds outside text: json_text().
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kw::core {

// The one way the agent writes JSON that holds text from outside (a peer's request, a
// policy, a command name, a parser's error quoting the input): valid UTF-8 is kept as
// it is and each invalid byte becomes U+FFFD, so that serialising never throws whatever
// the input held. nlohmann's default dump() throws on invalid UTF-8 instead.
inline std::string json_text(const nlohmann::json& j, int indent = -1) {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string json_string(const nlohmann::json& j, const char* key, std::string fallback) {
    if (!j.is_object()) return fallback;
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

template <typename Int>
Int json_int(const nlohmann::json& j, const char* key, Int fallback) {
    if (!j.is_object()) return fallback;
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<Int>() : fallback;
}

inline bool json_bool(const nlohmann::json& j, const char* key, bool fallback) {
    if (!j.is_object()) return fallback;
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace kw::core
