// Address prefixes in the 128-bit space the gate uses (IPv4 as ::ffff:a.b.c.d): shared by
// the policy parser (host-bit checks) and the compiler (set membership of trie nodes).
#pragma once

#include <array>
#include <cstdint>

namespace kw::core {

using Addr16 = std::array<uint8_t, 16>;

inline Addr16 mask_prefix(const Addr16& addr, unsigned prefix_len) {
    Addr16 out{};
    for (unsigned i = 0; i < 16; ++i) {
        unsigned bits = prefix_len > 8 * i ? prefix_len - 8 * i : 0;
        uint8_t keep = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff00u >> bits);
        out[i] = addr[i] & keep;
    }
    return out;
}

// Whether prefix OUTER/OUTER_LEN contains every address of INNER/INNER_LEN.
inline bool prefix_contains(const Addr16& outer, unsigned outer_len, const Addr16& inner,
                            unsigned inner_len) {
    return outer_len <= inner_len && mask_prefix(inner, outer_len) == mask_prefix(outer, outer_len);
}

}  // namespace kw::core
