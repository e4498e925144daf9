// The SVIDs this node holds, one per workload identity of the policy, and their rotation.
// The clock is injected so tests can walk through half-lives without waiting.
//
// Every change is all-or-nothing: stage() issues a complete new set or fails and leaves
// the current one in place, so a CA problem never leaves some identities without SVIDs.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/policy.h"
#include "core/result.h"
#include "identity/authority.h"

namespace kw::identity {

class SvidStore {
public:
    using ClockFn = std::function<TimePoint()>;
    using Wanted = std::map<std::string, Seconds>;  // SPIFFE ID -> TTL
    using Set = std::map<std::string, std::shared_ptr<const Svid>, std::less<>>;

    explicit SvidStore(ClockFn clock = now_seconds) : clock_(std::move(clock)) {}

    // A fresh SVID (new key, new serial) for every ID of WANTED from AUTHORITY: what a
    // policy change or a new CA calls for. Nothing changes until commit().
    Result<Set> stage(std::shared_ptr<const SigningAuthority> authority, const Wanted& wanted) const;
    void commit(std::shared_ptr<const SigningAuthority> authority, Set set);

    // Replaces every SVID whose rotation time (half of its lifetime) has come. An ID whose
    // re-issue fails keeps its current SVID and is retried at the next call. Returns the
    // IDs rotated; errors go to ERRORS.
    std::vector<std::string> rotate_due(std::vector<std::string>* errors = nullptr);

    std::shared_ptr<const Svid> find(std::string_view id) const;
    const Set& all() const { return svids_; }
    const std::shared_ptr<const SigningAuthority>& authority() const { return authority_; }
    std::optional<TimePoint> next_rotation() const;
    TimePoint now() const { return clock_(); }

private:
    ClockFn clock_;
    std::shared_ptr<const SigningAuthority> authority_;
    Set svids_;
};

// One entry per distinct workload ID of POLICY, with its svid_ttl (or the default).
SvidStore::Wanted wanted_svids(const core::Policy& policy);

}  // namespace kw::identity
