// Durations as operators write them in policies and on the command line: "90s", "15m",
// "1h", "1h30m", "7d". Whole seconds; every component has a unit; no sign, no spaces.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/result.h"

namespace kw::core {

// Parses DURATION; refuses zero, an empty string, a number without a unit, a repeated or
// out-of-order unit ("1m1h") and anything above 100 years.
Result<std::chrono::seconds> parse_duration(std::string_view text);

// The shortest form parse_duration reads back: 3600s -> "1h", 5400s -> "1h30m".
std::string format_duration(std::chrono::seconds d);

}  // namespace kw::core
