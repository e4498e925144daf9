// SVID issuance and rotation with an injected clock: a new SVID (new key, new serial)
// replaces each one at half-life, before it expires; a policy change re-issues all;
// failures keep the current set.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <openssl/mem.h>

#include <set>

#include "identity/authority.h"
#include "identity/svid_store.h"

using Catch::Matchers::ContainsSubstring;
using namespace kw::identity;
using std::chrono::hours;
using std::chrono::minutes;

namespace {

const TimePoint kT0 = TimePoint(Seconds(1'800'000'000));  // 2027-01-15T08:00:00Z

struct FakeClock {
    TimePoint now = kT0;
    SvidStore::ClockFn fn() {
        return [this] { return now; };
    }
};

std::shared_ptr<const SigningAuthority> ephemeral_ca(TimePoint now, Seconds ttl = kEphemeralCaTtl) {
    auto ca = SigningAuthority::ephemeral("example.org", now, ttl);
    REQUIRE(ca);
    return *ca;
}

// The public key of a certificate, DER: two SVIDs with equal bytes here share a key.
std::vector<uint8_t> public_key_der(X509* cert) {
    bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(cert));
    uint8_t* der = nullptr;
    int len = i2d_PUBKEY(key.get(), &der);
    REQUIRE(len > 0);
    std::vector<uint8_t> out(der, der + len);
    OPENSSL_free(der);
    return out;
}

void require_verifies(const SigningAuthority& ca, const Svid& svid, TimePoint now) {
    std::vector<X509*> inter;
    for (const auto& c : svid.intermediates) inter.push_back(c.get());
    BundleSet bundles{{ca.trust_domain(), &ca.bundle()}};
    auto v = verify_svid(svid.cert.get(), inter, bundles, now);
    INFO((v ? "" : v.message()));
    REQUIRE(v);
    CHECK(v->id.str() == svid.id.str());
}

}  // namespace

TEST_CASE("an SVID is issued for each wanted ID with its TTL and rotates at half-life") {
    FakeClock clock;
    SvidStore store(clock.fn());
    auto ca = ephemeral_ca(clock.now);
    auto set = store.stage(ca, {{"spiffe://example.org/api", hours(1)}, {"spiffe://example.org/batch", minutes(15)}});
    REQUIRE(set);
    store.commit(ca, std::move(*set));
    REQUIRE(store.all().size() == 2);

    auto api = store.find("spiffe://example.org/api");
    REQUIRE(api);
    CHECK(api->not_after == kT0 + hours(1));
    CHECK(api->rotate_at == kT0 + minutes(30));
    CHECK(not_after(api->cert.get()) == kT0 + hours(1));
    CHECK(not_before(api->cert.get()) == kT0 - kClockSkew);
    require_verifies(*ca, *api, clock.now);
    CHECK(store.next_rotation() == kT0 + minutes(7) + Seconds(30));

    clock.now = kT0 + minutes(30) - Seconds(1);
    CHECK(store.rotate_due() == std::vector<std::string>{"spiffe://example.org/batch"});
    CHECK(store.find("spiffe://example.org/api") == api);

    clock.now = kT0 + minutes(30);
    CHECK(store.rotate_due() == std::vector<std::string>{"spiffe://example.org/api"});
    auto fresh = store.find("spiffe://example.org/api");
    REQUIRE(fresh != api);
    CHECK(fresh->serial != api->serial);
    CHECK(fresh->fingerprint != api->fingerprint);
    CHECK(public_key_der(fresh->cert.get()) != public_key_der(api->cert.get()));
    CHECK(fresh->issued_at < api->not_after);  // replaced before the old one expires
    CHECK(fresh->not_after == clock.now + hours(1));
    CHECK(fresh->rotate_at == clock.now + minutes(30));
    require_verifies(*ca, *fresh, clock.now);
    // A holder of the old SVID (a handshake in progress) keeps a usable one.
    require_verifies(*ca, *api, clock.now);
}

TEST_CASE("a 4 s SVID is replaced every 2 s, always before the previous one expires") {
    FakeClock clock;
    SvidStore store(clock.fn());
    auto ca = ephemeral_ca(clock.now);
    auto set = store.stage(ca, {{"spiffe://example.org/short", Seconds(4)}});
    REQUIRE(set);
    store.commit(ca, std::move(*set));
    std::set<std::string> serials{store.find("spiffe://example.org/short")->serial};
    for (int step = 1; step <= 10; ++step) {
        auto before = store.find("spiffe://example.org/short");
        clock.now += Seconds(1);
        auto rotated = store.rotate_due();
        auto after = store.find("spiffe://example.org/short");
        CHECK(clock.now < before->not_after);
        if (step % 2 == 0) {
            CHECK(rotated.size() == 1);
            CHECK(after->serial != before->serial);
            serials.insert(after->serial);
        } else {
            CHECK(rotated.empty());
            CHECK(after == before);
        }
    }
    CHECK(serials.size() == 6);
}

TEST_CASE("a policy change re-issues every SVID and drops IDs no longer in the policy") {
    FakeClock clock;
    SvidStore store(clock.fn());
    auto ca = ephemeral_ca(clock.now);
    auto first = store.stage(ca, {{"spiffe://example.org/a", hours(1)}, {"spiffe://example.org/b", hours(1)}});
    REQUIRE(first);
    store.commit(ca, std::move(*first));
    auto old_a = store.find("spiffe://example.org/a");

    clock.now += minutes(1);
    auto second = store.stage(ca, {{"spiffe://example.org/a", hours(2)}, {"spiffe://example.org/c", hours(1)}});
    REQUIRE(second);
    // Staging changes nothing until commit.
    CHECK(store.find("spiffe://example.org/a") == old_a);
    CHECK(store.find("spiffe://example.org/b"));
    store.commit(ca, std::move(*second));

    auto new_a = store.find("spiffe://example.org/a");
    REQUIRE(new_a);
    CHECK(new_a->serial != old_a->serial);
    CHECK(public_key_der(new_a->cert.get()) != public_key_der(old_a->cert.get()));
    CHECK(new_a->ttl == hours(2));
    CHECK_FALSE(store.find("spiffe://example.org/b"));
    CHECK(store.find("spiffe://example.org/c"));
}

TEST_CASE("an SVID never outlives its CA, and an expired CA leaves the current SVIDs in place") {
    FakeClock clock;
    SvidStore store(clock.fn());
    auto ca = ephemeral_ca(clock.now, hours(1));
    auto set = store.stage(ca, {{"spiffe://example.org/a", hours(2)}});
    REQUIRE(set);
    store.commit(ca, std::move(*set));
    auto svid = store.find("spiffe://example.org/a");
    CHECK(svid->not_after == ca->signer_not_after());
    CHECK(svid->rotate_at == kT0 + (ca->signer_not_after() - kT0) / 2);

    clock.now = ca->signer_not_after() + Seconds(1);
    auto staged = store.stage(ca, {{"spiffe://example.org/a", hours(1)}});
    REQUIRE_FALSE(staged);
    CHECK_THAT(staged.message(), ContainsSubstring("expired"));
    std::vector<std::string> errors;
    CHECK(store.rotate_due(&errors).empty());
    REQUIRE(errors.size() == 1);
    CHECK_THAT(errors[0], ContainsSubstring("spiffe://example.org/a"));
    CHECK(store.find("spiffe://example.org/a") == svid);
}

TEST_CASE("an authority issues only for its own trust domain") {
    FakeClock clock;
    SvidStore store(clock.fn());
    auto staged = store.stage(ephemeral_ca(clock.now), {{"spiffe://other.org/a", hours(1)}});
    REQUIRE_FALSE(staged);
    CHECK_THAT(staged.message(), ContainsSubstring("signs for trust domain 'example.org'"));
}

TEST_CASE("wanted_svids lists each workload ID once with its svid_ttl") {
    kw::core::Policy policy;
    policy.trust_domain = "example.org";
    policy.workloads.push_back({"spiffe://example.org/a", {}, minutes(15)});
    policy.workloads.push_back({"spiffe://example.org/a", {}, minutes(15)});
    policy.workloads.push_back({"spiffe://example.org/b", {}, std::nullopt});
    auto wanted = wanted_svids(policy);
    CHECK(wanted == SvidStore::Wanted{{"spiffe://example.org/a", minutes(15)},
                                      {"spiffe://example.org/b", kw::core::kDefaultSvidTtl}});
}
