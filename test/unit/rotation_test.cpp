// SVID rotation on its own timer: it wakes at the earliest rotation due, rotates, and
// sets itself to the next one, instead of rotating every time it is asked.
#include <catch2/catch_test_macros.hpp>

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>

#include "core/policy.h"
#include "identity/node_identity.h"
#include "io/asio_loop.h"
#include "runtime/rotation.h"

using namespace kw;
using namespace std::chrono_literals;

namespace {

const char* kPolicy = R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 }, "svid_ttl": "1h" } ],
  "destinations": [], "rules": [] })";

struct Node {
    boost::asio::io_context io;
    io::AsioLoop loop{io};
    identity::Seconds lag{0};  // how far the SVIDs' clock runs behind the real one
    identity::NodeIdentity identity{"/nonexistent/kwarden-test-ca", [this] { return identity::now_seconds() - lag; }};
    int rotations = 0;
    runtime::Rotation rotation{loop, identity, [this] { ++rotations; }};

    explicit Node(identity::Seconds issued_ago) : lag(issued_ago) {
        REQUIRE(identity.load_ca());
        auto parsed = core::parse_policy(kPolicy);
        REQUIRE(parsed.policy);
        auto staged = identity.prepare(*parsed.policy);
        REQUIRE(staged);
        identity.commit(std::move(*staged));
        lag = identity::Seconds{0};  // from now on the SVIDs' clock is the real one
    }
    std::string serial() const { return identity.svids().find("spiffe://t.org/app")->serial; }
    void run_for(std::chrono::milliseconds d) {
        io.restart();
        io.run_for(d);
    }
};

}  // namespace

TEST_CASE("an SVID past half-life is rotated when its time comes, once, and the timer moves on",
          "[runtime][rotation]") {
    Node n(identity::Seconds{2000});  // a 1 h SVID issued 2000 s ago: rotation is due
    const std::string before = n.serial();
    n.rotation.schedule();
    n.run_for(300ms);
    CHECK(n.rotations == 1);
    CHECK(n.serial() != before);
    // The new SVID is due at its own half-life, half an hour away: nothing more happens.
    const std::string after = n.serial();
    n.run_for(300ms);
    CHECK(n.rotations == 1);
    CHECK(n.serial() == after);
}

TEST_CASE("a fresh SVID is not rotated before its time", "[runtime][rotation]") {
    Node n(identity::Seconds{0});
    const std::string before = n.serial();
    n.rotation.schedule();
    n.run_for(300ms);
    CHECK(n.rotations == 0);
    CHECK(n.serial() == before);
}
