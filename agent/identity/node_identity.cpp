// The node's identity state (see node_identity.h).
#include "identity/node_identity.h"

#include <sys/stat.h>

#include "identity/bundle.h"

namespace kw::identity {

using nlohmann::json;

NodeIdentity::NodeIdentity(std::string ca_dir, SvidStore::ClockFn clock)
    : ca_dir_(std::move(ca_dir)), store_(std::move(clock)) {}

Result<void> NodeIdentity::load_ca() {
    struct stat st {};
    std::string cert = ca_dir_ + "/" + std::string(kIntermediateCertFile);
    if (::stat(cert.c_str(), &st) != 0) return {};  // none configured: ephemeral
    auto ca = SigningAuthority::load_dir(ca_dir_, store_.now());
    if (!ca) return make_error("CA directory " + ca_dir_ + ": " + ca.message());
    configured_ = std::move(*ca);
    return {};
}

Result<NodeIdentity::Staged> NodeIdentity::prepare(const core::Policy& policy) const {
    Staged staged;
    if (configured_) {
        if (configured_->trust_domain() != policy.trust_domain)
            return make_error("/trust_domain: '" + policy.trust_domain + "' is not the trust domain of the node CA in " +
                              ca_dir_ + " ('" + configured_->trust_domain() + "')");
        staged.authority = configured_;
    } else if (store_.authority() && store_.authority()->trust_domain() == policy.trust_domain) {
        staged.authority = store_.authority();
    } else {
        auto eph = SigningAuthority::ephemeral(policy.trust_domain, store_.now());
        if (!eph) return make_error("ephemeral CA for '" + policy.trust_domain + "': " + eph.message());
        staged.authority = std::move(*eph);
    }
    auto federated = load_federation(policy);
    if (!federated) return federated.error();
    auto own = std::shared_ptr<const TrustBundle>(staged.authority, &staged.authority->bundle());
    staged.trust = TrustStore(std::move(own), std::move(*federated));
    auto svids = store_.stage(staged.authority, wanted_svids(policy));
    if (!svids) return svids.error();
    staged.svids = std::move(*svids);
    return staged;
}

void NodeIdentity::commit(Staged staged) {
    store_.commit(std::move(staged.authority), std::move(staged.svids));
    trust_ = std::move(staged.trust);
    shared_trust_ = std::make_shared<const TrustStore>(trust_);
}

NodeIdentity::TickReport NodeIdentity::tick() {
    TickReport report;
    std::map<std::string, std::string> before;
    for (const auto& [id, svid] : store_.all()) before[id] = svid->serial;
    for (const auto& id : store_.rotate_due(&report.errors)) {
        auto svid = store_.find(id);
        report.rotated.push_back("rotated the SVID of " + id + ": serial " + before[id] + " -> " + svid->serial +
                                 ", not after " + format_time(svid->not_after));
    }
    return report;
}

json NodeIdentity::svid_list() const {
    json list = json::array();
    for (const auto& [id, svid] : store_.all()) {
        std::string chain;
        for (const auto& c : svid->intermediates) chain += to_pem(c.get());
        list.push_back({{"spiffe_id", id},
                        {"serial", svid->serial},
                        {"not_before", format_time(not_before(svid->cert.get()))},
                        {"not_after", format_time(svid->not_after)},
                        {"rotate_at", format_time(svid->rotate_at)},
                        {"issued_at", format_time(svid->issued_at)},
                        {"ttl_seconds", svid->ttl.count()},
                        {"sha256", svid->fingerprint},
                        {"certificate_pem", to_pem(svid->cert.get())},
                        {"intermediates_pem", chain}});
    }
    const auto& ca = store_.authority();
    return {{"ok", true},
            {"trust_domain", ca ? ca->trust_domain() : ""},
            {"ca", ca ? ca->source() : "none"},
            {"svids", list}};
}

Result<std::string> NodeIdentity::bundle_json(const std::optional<std::string>& trust_domain) const {
    if (!trust_.own()) return make_error("no trust bundle yet: no policy has been applied");
    std::string td = trust_domain.value_or(trust_.own()->trust_domain);
    const TrustBundle* bundle = trust_.find(td);
    if (!bundle) {
        std::string known = trust_.own()->trust_domain;
        for (const auto& b : trust_.federated()) known += ", " + b->trust_domain;
        return make_error("no trust bundle for trust domain '" + td + "' (known: " + known + ")");
    }
    return bundle_to_json(*bundle);
}

json NodeIdentity::status() const {
    const auto& ca = store_.authority();
    json federated = json::array();
    for (const auto& b : trust_.federated()) federated.push_back(b->trust_domain);
    json s = {{"ca", ca ? ca->source() : "none"}, {"svids", store_.all().size()}, {"federated", federated}};
    if (ca) s["ca_not_after"] = format_time(ca->signer_not_after());
    if (auto next = store_.next_rotation()) s["next_rotation"] = format_time(*next);
    return s;
}

}  // namespace kw::identity
