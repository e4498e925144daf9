// What this agent trusts: its own trust domain's bundle (from its signing authority) and
// one bundle per federated trust domain (policy "federation"). Kept per trust domain and
// never merged: verify_svid picks the bundle of the peer's own trust domain.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/policy.h"
#include "core/result.h"
#include "identity/x509.h"

namespace kw::identity {

class TrustStore {
public:
    TrustStore() = default;
    TrustStore(std::shared_ptr<const TrustBundle> own, std::vector<std::shared_ptr<const TrustBundle>> federated);

    BundleSet bundles() const;
    const TrustBundle* find(std::string_view trust_domain) const;
    std::shared_ptr<const TrustBundle> shared(std::string_view trust_domain) const;  // null: none
    const std::shared_ptr<const TrustBundle>& own() const { return own_; }
    const std::vector<std::shared_ptr<const TrustBundle>>& federated() const { return federated_; }

private:
    std::shared_ptr<const TrustBundle> own_;
    std::vector<std::shared_ptr<const TrustBundle>> federated_;
};

// Reads the bundle file of every federation entry of POLICY. Errors name the entry:
// "/federation/0/bundle: cannot read /etc/kwarden/partner.json: No such file or directory".
Result<std::vector<std::shared_ptr<const TrustBundle>>> load_federation(const core::Policy& policy);

}  // namespace kw::identity
