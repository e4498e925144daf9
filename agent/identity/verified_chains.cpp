// Chains verified before, by their bytes (see verified_chains.h).
#include "identity/verified_chains.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace kw::identity {

VerifiedChains::Key VerifiedChains::key_of(const std::vector<std::span<const uint8_t>>& ders) {
    SHA256_CTX sha;
    SHA256_Init(&sha);
    for (std::span<const uint8_t> der : ders) {
        // Each certificate's length first: two chains that concatenate alike differ.
        const uint64_t len = der.size();
        SHA256_Update(&sha, &len, sizeof len);
        SHA256_Update(&sha, der.data(), der.size());
    }
    Key key;
    SHA256_Final(key.data(), &sha);
    return key;
}

size_t VerifiedChains::KeyHash::operator()(const Key& k) const {
    size_t h;
    std::memcpy(&h, k.data(), sizeof h);  // already a uniform hash
    return h;
}

std::optional<core::SpiffeId> VerifiedChains::find(const Key& key, const TrustStore& trust, TimePoint now) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    const Entry& e = it->second;
    std::shared_ptr<const TrustBundle> verified_by = e.bundle.lock();
    if (!verified_by || verified_by.get() != trust.find(e.id.trust_domain)) {
        entries_.erase(it);  // that bundle is gone or replaced: validate again
        return std::nullopt;
    }
    if (now < e.not_before || now > e.not_after) return std::nullopt;
    hits_++;
    return e.id;
}

void VerifiedChains::remember(const Key& key, const TrustStore& trust, const VerifiedSvid& svid) {
    std::shared_ptr<const TrustBundle> bundle = trust.shared(svid.id.trust_domain);
    if (!bundle || svid.chain.empty()) return;
    Entry e{svid.id, bundle, TimePoint::min(), TimePoint::max()};
    for (const X509Ptr& cert : svid.chain) {
        e.not_before = std::max(e.not_before, not_before(cert.get()));
        e.not_after = std::min(e.not_after, not_after(cert.get()));
    }
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMax && !entries_.contains(key)) entries_.clear();
    entries_.insert_or_assign(key, std::move(e));
}

size_t VerifiedChains::size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
}

uint64_t VerifiedChains::hits() const {
    std::lock_guard lock(mu_);
    return hits_;
}

}  // namespace kw::identity
