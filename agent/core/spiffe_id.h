// The one SPIFFE ID parser of the agent: policies, rules, SVIDs and the
// CLI all accept or refuse an ID by these rules, and say which rule it broke.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace kw::core {

inline constexpr size_t kSpiffeIdMaxBytes = 2048;
inline constexpr std::string_view kSpiffeScheme = "spiffe://";

struct SpiffeId {
    std::string trust_domain;
    std::string path;  // empty, or "/seg/seg..." (no trailing slash)
    std::string str() const { return std::string(kSpiffeScheme) + trust_domain + path; }
};

// Accepts "spiffe://TRUST_DOMAIN[/SEGMENT...]"; an empty path names the trust domain.
Result<SpiffeId> parse_spiffe_id(std::string_view text);

// A trust domain name as it stands alone (policy `trust_domain`): [a-z0-9._-]+.
Result<void> validate_trust_domain(std::string_view name);

}  // namespace kw::core
