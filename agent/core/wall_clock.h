// Wall-clock time as events write it.
#pragma once

#include <string>

namespace kw::core {

// Wall-clock time now, RFC 3339 in UTC with nanoseconds ("2026-12-05T08:11:20.821637200Z").
std::string now_rfc3339();

}  // namespace kw::core
