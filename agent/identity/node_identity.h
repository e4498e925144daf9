// Everything identity the agent holds for its node: the signing authority (a configured
// CA directory, or an ephemeral CA), the SVIDs of the policy's workload identities, and
// the trust bundles (own and federated). A policy change goes through prepare() (which
// can fail and then changes nothing) and commit(); tick() rotates.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/policy.h"
#include "core/result.h"
#include "identity/authority.h"
#include "identity/svid_store.h"
#include "identity/trust_store.h"

namespace kw::identity {

class NodeIdentity {
public:
    struct Staged {
        std::shared_ptr<const SigningAuthority> authority;
        SvidStore::Set svids;
        TrustStore trust;
    };

    explicit NodeIdentity(std::string ca_dir, SvidStore::ClockFn clock = now_seconds);

    // Loads CA_DIR when it holds an intermediate; otherwise the first prepare() makes an
    // ephemeral CA. A CA directory that exists but is broken is an error, never a silent
    // fallback to an ephemeral CA.
    Result<void> load_ca();

    // Authority for POLICY's trust domain, its federation bundles, and a fresh SVID for
    // every workload ID. Errors name the policy field at fault where there is one.
    Result<Staged> prepare(const core::Policy& policy) const;
    void commit(Staged staged);

    // Rotates SVIDs past half-life; returns one log line per rotation or failure.
    struct TickReport {
        std::vector<std::string> rotated;
        std::vector<std::string> errors;
    };
    TickReport tick();

    // Admin views. Never a key: identity, serial, validity, fingerprint and the public
    // certificates only.
    nlohmann::json svid_list() const;
    Result<std::string> bundle_json(const std::optional<std::string>& trust_domain) const;
    nlohmann::json status() const;

    const SvidStore& svids() const { return store_; }
    const TrustStore& trust() const { return trust_; }
    // The same, shared: a handshake keeps the bundles it started with, without a copy.
    std::shared_ptr<const TrustStore> trust_ptr() const { return shared_trust_; }

private:
    std::string ca_dir_;
    std::shared_ptr<const SigningAuthority> configured_;  // from ca_dir_, if any
    SvidStore store_;
    TrustStore trust_;
    std::shared_ptr<const TrustStore> shared_trust_ = std::make_shared<const TrustStore>();
};

}  // namespace kw::identity
