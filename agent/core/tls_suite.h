// The TLS 1.3 cipher suites kTLS carries, by IANA number and name: one table for the
// agent's --tls-cipher, a destination's "tls_cipher" and the handshake's checks.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace kw::core {

struct TlsSuite {
    uint16_t id;                  // IANA number
    std::string_view iana;        // e.g. TLS_AES_128_GCM_SHA256
    std::string_view short_name;  // e.g. aes-128-gcm
};

inline constexpr std::array<TlsSuite, 3> kTlsSuites = {{
    {0x1301, "TLS_AES_128_GCM_SHA256", "aes-128-gcm"},
    {0x1302, "TLS_AES_256_GCM_SHA384", "aes-256-gcm"},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", "chacha20-poly1305"},
}};

// The suite NAME names (IANA or short form), or an error that lists the names.
inline Result<uint16_t> parse_tls_suite(std::string_view name) {
    for (const TlsSuite& s : kTlsSuites)
        if (name == s.iana || name == s.short_name) return s.id;
    return make_error("unknown cipher '" + std::string(name) +
                      "': expected aes-128-gcm, aes-256-gcm or chacha20-poly1305 (or the IANA name)");
}

// The IANA name of ID, or "" for a suite kTLS does not carry.
inline std::string_view tls_suite_name(uint16_t id) {
    for (const TlsSuite& s : kTlsSuites)
        if (s.id == id) return s.iana;
    return {};
}

}  // namespace kw::core
