// Chains of X.509-SVIDs that passed verify_svid, remembered by their exact bytes, so
// that a peer presenting the same chain again is not path-validated again: one agent
// sees the same few SVIDs on thousands of connections, and validating a leaf and its
// intermediate (two ECDSA signatures, a certificate store built per call) is about a
// third of a handshake's CPU. What a hit still requires, per connection:
//   - the same bytes: the key is SHA-256 over every certificate as presented, in order;
//   - the same trust bundle object it was verified against (a bundle rotated, reloaded
//     or dropped misses: entries hold the bundle weakly, a new one never matches);
//   - NOW inside the validity of every certificate of the verified chain, anchor included;
//   - the handshake itself still checks the peer's CertificateVerify (possession of the
//     leaf's key) and the caller's check of the ID: only path validation is skipped.
// Failures are not remembered. Bounded (kMax entries; full: emptied). Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/spiffe_id.h"
#include "identity/trust_store.h"
#include "identity/x509.h"

namespace kw::identity {

class VerifiedChains {
public:
    static constexpr size_t kMax = 1024;
    using Key = std::array<uint8_t, 32>;

    // The key of a presented chain: DER certificates, leaf first.
    static Key key_of(const std::vector<std::span<const uint8_t>>& ders);

    // The SPIFFE ID of the chain KEY when it verified against TRUST's current bundle of
    // its trust domain and NOW is within its validity.
    std::optional<core::SpiffeId> find(const Key& key, const TrustStore& trust, TimePoint now);
    // Remembers a chain verify_svid accepted against TRUST.
    void remember(const Key& key, const TrustStore& trust, const VerifiedSvid& svid);

    size_t size() const;
    uint64_t hits() const;

private:
    struct Entry {
        core::SpiffeId id;
        std::weak_ptr<const TrustBundle> bundle;
        TimePoint not_before, not_after;
    };
    struct KeyHash {
        size_t operator()(const Key& k) const;
    };
    mutable std::mutex mu_;
    std::unordered_map<Key, Entry, KeyHash> entries_;
    uint64_t hits_ = 0;
};

}  // namespace kw::identity
