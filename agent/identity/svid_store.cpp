// SVID set and rotation (see svid_store.h).
#include "identity/svid_store.h"

#include <algorithm>

namespace kw::identity {

Result<SvidStore::Set> SvidStore::stage(std::shared_ptr<const SigningAuthority> authority, const Wanted& wanted) const {
    if (!authority) return make_error("no signing authority");
    TimePoint now = clock_();
    Set set;
    for (const auto& [text, ttl] : wanted) {
        auto id = core::parse_spiffe_id(text);
        if (!id) return make_error("SVID for '" + text + "': " + id.message());
        auto svid = authority->issue(*id, ttl, now);
        if (!svid) return svid.error();
        set.emplace(text, std::move(*svid));
    }
    return set;
}

void SvidStore::commit(std::shared_ptr<const SigningAuthority> authority, Set set) {
    authority_ = std::move(authority);
    svids_ = std::move(set);
}

std::vector<std::string> SvidStore::rotate_due(std::vector<std::string>* errors) {
    std::vector<std::string> rotated;
    if (!authority_) return rotated;
    TimePoint now = clock_();
    for (auto& [text, svid] : svids_) {
        if (now < svid->rotate_at) continue;
        auto fresh = authority_->issue(svid->id, svid->ttl, now);
        if (!fresh) {
            if (errors) errors->push_back("rotating the SVID of " + text + ": " + fresh.message());
            continue;
        }
        svid = std::move(*fresh);
        rotated.push_back(text);
    }
    return rotated;
}

std::shared_ptr<const Svid> SvidStore::find(std::string_view id) const {
    auto it = svids_.find(id);
    return it == svids_.end() ? nullptr : it->second;
}

std::optional<TimePoint> SvidStore::next_rotation() const {
    std::optional<TimePoint> next;
    for (const auto& [text, svid] : svids_)
        if (!next || svid->rotate_at < *next) next = svid->rotate_at;
    return next;
}

SvidStore::Wanted wanted_svids(const core::Policy& policy) {
    SvidStore::Wanted wanted;
    for (const core::Workload& w : policy.workloads) wanted.emplace(w.id, core::svid_ttl_of(policy, w.id));
    return wanted;
}

}  // namespace kw::identity
