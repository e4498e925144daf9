// The runtime's pure decisions about a held call: where a connect() goes (the sockaddr a
// process gave, v4, v6 and v4-mapped, and what is not a whole sockaddr), whether the agent
// runs mutual TLS for it under the policy view it was decided with, and the "tls" event,
// checked against policy/events.schema.json.
#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compile.h"
#include "policy_view_fixture.h"
#include "runtime/held_call.h"

using namespace kw;
using nlohmann::json;

namespace {

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    return {b, b + n};
}

std::vector<uint8_t> v4(const char* addr, uint16_t port) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    REQUIRE(inet_pton(AF_INET, addr, &in.sin_addr) == 1);
    return bytes_of(&in, sizeof in);
}

std::vector<uint8_t> v6(const char* addr, uint16_t port) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    REQUIRE(inet_pton(AF_INET6, addr, &in6.sin6_addr) == 1);
    return bytes_of(&in6, sizeof in6);
}

const char* kPolicy = R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } },
                 { "id": "spiffe://t.org/other", "selectors": { "uid": 1001 } } ],
  "destinations": [ { "name": "db", "cidrs": ["10.0.0.0/24"], "ports": [5432], "protocol": "tcp",
                      "tls": "mutual", "identity": "spiffe://t.org/db" },
                    { "name": "web", "cidrs": ["10.0.1.0/24"], "ports": [80], "protocol": "tcp" } ],
  "rules": [ { "from": "spiffe://t.org/app", "to": "db" }, { "from": "spiffe://t.org/app", "to": "web" } ] })";

}  // namespace

TEST_CASE("parse_sockaddr reads whole IPv4 and IPv6 sockaddrs, v4-mapped as IPv4", "[runtime]") {
    auto t4 = runtime::parse_sockaddr(v4("10.0.0.7", 5432));
    REQUIRE(t4);
    CHECK(t4->v4);
    CHECK(t4->port == 5432);
    CHECK(t4->text() == "10.0.0.7");
    CHECK(t4->raw.size() == sizeof(sockaddr_in));

    auto t6 = runtime::parse_sockaddr(v6("2001:db8::5", 443));
    REQUIRE(t6);
    CHECK_FALSE(t6->v4);
    CHECK(t6->port == 443);
    CHECK(t6->text() == "2001:db8::5");

    auto mapped = runtime::parse_sockaddr(v6("::ffff:10.0.0.7", 5432));
    REQUIRE(mapped);
    CHECK(mapped->v4);
    CHECK(mapped->text() == "10.0.0.7");
    CHECK(mapped->addr == t4->addr);  // one address, however the process wrote it
}

TEST_CASE("parse_sockaddr refuses what is not a whole inet sockaddr", "[runtime]") {
    CHECK_FALSE(runtime::parse_sockaddr({}));
    CHECK_FALSE(runtime::parse_sockaddr({0x02}));
    auto short4 = v4("10.0.0.7", 80);
    short4.resize(sizeof(sockaddr_in) - 1);
    CHECK_FALSE(runtime::parse_sockaddr(short4));
    auto short6 = v6("2001:db8::5", 80);
    short6.resize(sizeof(sockaddr_in6) - 1);
    CHECK_FALSE(runtime::parse_sockaddr(short6));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    CHECK_FALSE(runtime::parse_sockaddr(bytes_of(&un, sizeof un)));
}

TEST_CASE("decide_mtls takes the kernel's decision for a kernel identity under the view it is given", "[runtime]") {
    core::IdentityTable ids;
    auto held = test::policy_view(kPolicy, ids);
    const runtime::PolicyView& view = *held;
    auto db = runtime::parse_sockaddr(v4("10.0.0.7", 5432));
    auto web = runtime::parse_sockaddr(v4("10.0.1.7", 80));
    REQUIRE(db);
    REQUIRE(web);
    uint32_t app = view.ids.find("spiffe://t.org/app").value_or(KW_IDENT_NONE);
    uint32_t other = view.ids.find("spiffe://t.org/other").value_or(KW_IDENT_NONE);
    REQUIRE(app != KW_IDENT_NONE);
    REQUIRE(other != KW_IDENT_NONE);
    CHECK(runtime::spiffe_name(view, app) == "spiffe://t.org/app");

    auto ours = runtime::decide_mtls(view, app, *db);
    CHECK(ours.ours);
    CHECK(ours.allowed);
    CHECK(ours.name == "db");
    CHECK(ours.server_identity == "spiffe://t.org/db");

    auto refused = runtime::decide_mtls(view, other, *db);
    CHECK(refused.ours);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.refusal == "no rule allows spiffe://t.org/other to reach db");

    CHECK_FALSE(runtime::decide_mtls(view, app, *web).ours);  // plain TCP: not the agent's

    // Unattested, and a number the view does not know: nothing is granted.
    for (uint32_t who : {uint32_t{KW_IDENT_NONE}, uint32_t{4000}}) {
        CHECK(runtime::spiffe_name(view, who) == "unattested");
        auto none = runtime::decide_mtls(view, who, *db);
        CHECK(none.ours);
        CHECK_FALSE(none.allowed);
    }

    // A view of a later policy without the rule decides the same call the other way; the
    // old view, kept by a call decided under it, still says what it said.
    std::string without = kPolicy;
    std::string rule = R"({ "from": "spiffe://t.org/app", "to": "db" }, )";
    without.replace(without.find(rule), rule.size(), "");
    auto later_held = test::policy_view(without, ids);
    const runtime::PolicyView& later = *later_held;
    CHECK_FALSE(runtime::decide_mtls(later, later.ids.find("spiffe://t.org/app").value_or(0), *db).allowed);
    CHECK(runtime::decide_mtls(view, app, *db).allowed);
}

TEST_CASE("a tls event before any handshake has every field the schema requires", "[runtime]") {
    std::ifstream in(std::string(KW_SOURCE_DIR) + "/policy/events.schema.json");
    REQUIRE(in);
    json schema = json::parse(in);
    const json& def = schema["$defs"]["tls"];

    enroll::Call call{.id = 1, .tid = 4242, .nr = 42, .args = {}};
    std::string id = "spiffe://t.org/app";
    runtime::TlsEventFacts facts{.role = "client",
                                 .result = "failed",
                                 .call = call,
                                 .tgid = 4240,
                                 .spiffe_id = id,
                                 .handshake = nullptr,
                                 .expected_peer = "spiffe://t.org/db",
                                 .destination = "db",
                                 .addr = "10.0.0.7",
                                 .port = 5432,
                                 .started = std::chrono::steady_clock::now()};
    json e = runtime::tls_event(facts);
    for (const auto& key : def["required"]) CHECK(e.contains(key.get<std::string>()));
    for (const auto& [key, value] : e.items()) CHECK(def["properties"].contains(key));
    CHECK(e["type"] == "tls");
    CHECK(e["pid"] == 4242);
    CHECK(e["tgid"] == 4240);
    CHECK(e["peer_id"].is_null());  // no handshake: no verified peer, no suite
    CHECK(e["cipher"].is_null());
    CHECK(e["error"].is_null());
    CHECK(e["duration_ns"].get<int64_t>() >= 0);
    CHECK(std::regex_match(e["time"].get<std::string>(),
                           std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)")));
}
