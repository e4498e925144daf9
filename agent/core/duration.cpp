// Duration strings (see duration.h).
#include "core/duration.h"

#include <array>
#include <cstdio>
#include <cstdint>
#include <utility>

namespace kw::core {
namespace {

// Largest unit first: a duration lists its components in this order.
constexpr std::array<std::pair<char, int64_t>, 4> kUnits = {{{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}}};
constexpr int64_t kMaxSeconds = int64_t{100} * 365 * 86400;

}  // namespace

Result<std::chrono::seconds> parse_duration(std::string_view text) {
    auto bad = [&](const std::string& why) {
        return make_error("invalid duration '" + std::string(text) + "': " + why +
                          " (write e.g. \"90s\", \"15m\", \"1h30m\", \"7d\")");
    };
    if (text.empty()) return bad("empty");
    int64_t total = 0;
    size_t next_unit = 0;  // index into kUnits: units must come in decreasing order, once each
    size_t pos = 0;
    while (pos < text.size()) {
        int64_t value = 0;
        size_t digits = 0;
        for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, ++digits) {
            value = value * 10 + (text[pos] - '0');
            if (value > kMaxSeconds) return bad("too long (the limit is 100 years)");
        }
        if (digits == 0) return bad("expected a number at offset " + std::to_string(pos));
        if (pos == text.size()) return bad("the number " + std::to_string(value) + " has no unit (d, h, m or s)");
        char unit = text[pos++];
        size_t u = next_unit;
        while (u < kUnits.size() && kUnits[u].first != unit) ++u;
        if (u == kUnits.size()) {
            bool known = false;
            for (auto [c, s] : kUnits) known |= c == unit;
            if (known) return bad("units must appear once each, largest first");
            // One byte of a multi-byte character is not text: name it by its value.
            char hex[5];
            std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(unit));
            return bad((unit >= ' ' && unit <= '~' ? "unknown unit '" + std::string(1, unit) + "'"
                                                   : "unknown unit (byte " + std::string(hex) + ")") +
                       " (use d, h, m or s)");
        }
        next_unit = u + 1;
        total += value * kUnits[u].second;
        if (total > kMaxSeconds) return bad("too long (the limit is 100 years)");
    }
    if (total == 0) return bad("must be longer than zero");
    return std::chrono::seconds(total);
}

std::string format_duration(std::chrono::seconds d) {
    int64_t left = d.count();
    if (left <= 0) return "0s";
    std::string out;
    for (auto [unit, seconds] : kUnits) {
        if (left >= seconds) {
            out += std::to_string(left / seconds) + unit;
            left %= seconds;
        }
    }
    return out;
}

}  // namespace kw::core
