// PeerLimits (core/peer_limits.h): one uid cannot hold more than its share of a socket
// any local user may reach, its place comes back when a connection ends, and a flood of
// refusals is reported as a few summed-up events, none lost.
#include <catch2/catch_test_macros.hpp>

#include <vector>

#include "core/peer_limits.h"

using kw::core::PeerLimits;
using namespace std::chrono_literals;

TEST_CASE("a uid gets no more connections than its limit, and others are unaffected") {
    auto limits = std::make_shared<PeerLimits>(3, 10s);
    std::vector<std::shared_ptr<PeerLimits::Slot>> held;
    for (int i = 0; i < 3; i++) {
        auto s = limits->admit(65534);
        REQUIRE(s);
        held.push_back(s);
    }
    CHECK_FALSE(limits->admit(65534));
    CHECK(limits->admit(1000));
    CHECK(limits->open(65534) == 3);
}

TEST_CASE("a uid's place comes back when its connection ends") {
    auto limits = std::make_shared<PeerLimits>(1, 10s);
    {
        auto s = limits->admit(7);
        REQUIRE(s);
        CHECK_FALSE(limits->admit(7));
    }
    CHECK(limits->open(7) == 0);
    CHECK(limits->admit(7));
}

TEST_CASE("refusals are reported first at once, then summed up once per interval") {
    auto limits = std::make_shared<PeerLimits>(1, 10s);
    auto t0 = PeerLimits::Clock::now();
    auto first = limits->refuse(65534, "peer_limit", t0);
    CHECK(first.count == 1);
    for (int i = 0; i < 999; i++) CHECK(limits->refuse(65534, "peer_limit", t0 + 1s).count == 0);
    CHECK(limits->flush(t0 + 5s).empty());
    auto later = limits->flush(t0 + 10s);
    REQUIRE(later.size() == 1);
    CHECK(later[0].uid == 65534);
    CHECK(later[0].reason == "peer_limit");
    CHECK(later[0].count == 999);
    CHECK(limits->refused("peer_limit") == 1000);
    // Quiet for an interval: forgotten, and the next refusal is reported at once again.
    CHECK(limits->flush(t0 + 20s).empty());
    CHECK(limits->refuse(65534, "peer_limit", t0 + 21s).count == 1);
}

TEST_CASE("refusals of different uids and reasons are reported apart") {
    auto limits = std::make_shared<PeerLimits>(1, 10s);
    auto t0 = PeerLimits::Clock::now();
    CHECK(limits->refuse(1, "idle", t0).count == 1);
    CHECK(limits->refuse(2, "idle", t0).count == 1);
    CHECK(limits->refuse(1, "peer_limit", t0).count == 1);
    CHECK(limits->refused("idle") == 2);
}
