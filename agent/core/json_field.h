// Reading fields of JSON a peer sent (enrolment requests, holder messages): a missing
// field, or one of another type, gives the fallback. nlohmann's value() throws on a type
// mismatch instead, which in an Asio handler would take the whole agent down.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kw::core {

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
