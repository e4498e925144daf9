// Trust bundles by trust domain (see trust_store.h).
#include "identity/trust_store.h"

#include "identity/bundle.h"

namespace kw::identity {

TrustStore::TrustStore(std::shared_ptr<const TrustBundle> own, std::vector<std::shared_ptr<const TrustBundle>> federated)
    : own_(std::move(own)), federated_(std::move(federated)) {}

BundleSet TrustStore::bundles() const {
    BundleSet set;
    if (own_) set.emplace(own_->trust_domain, own_.get());
    for (const auto& b : federated_) set.emplace(b->trust_domain, b.get());
    return set;
}

// The store holds every bundle it names: the pointer outlives the temporary.
const TrustBundle* TrustStore::find(std::string_view trust_domain) const { return shared(trust_domain).get(); }

std::shared_ptr<const TrustBundle> TrustStore::shared(std::string_view trust_domain) const {
    if (own_ && own_->trust_domain == trust_domain) return own_;
    for (const auto& b : federated_)
        if (b->trust_domain == trust_domain) return b;
    return nullptr;
}

Result<std::vector<std::shared_ptr<const TrustBundle>>> load_federation(const core::Policy& policy) {
    std::vector<std::shared_ptr<const TrustBundle>> out;
    for (size_t i = 0; i < policy.federation.size(); ++i) {
        const core::Federation& f = policy.federation[i];
        auto bundle = load_bundle_file(f.bundle, f.trust_domain);
        if (!bundle) return make_error("/federation/" + std::to_string(i) + "/bundle: " + bundle.message());
        out.push_back(std::make_shared<const TrustBundle>(std::move(*bundle)));
    }
    return out;
}

}  // namespace kw::identity
