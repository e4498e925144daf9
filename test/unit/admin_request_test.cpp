#include <catch2/catch_test_macros.hpp>

#include "core/admin_request.h"

using kw::core::AdminOp;
using kw::core::read_admin_request;
using nlohmann::json;

TEST_CASE("admin requests are read into ops with their checked fields", "[admin]") {
    auto r = read_admin_request(json::parse(R"({"op":"identity","pid":42})"));
    REQUIRE(r);
    CHECK(r->op == AdminOp::identity);
    CHECK(r->pid == 42);

    r = read_admin_request(json::parse(R"({"op":"events","follow":true})"));
    REQUIRE(r);
    CHECK(r->op == AdminOp::events);
    CHECK(r->follow);

    r = read_admin_request(json::parse(R"({"op":"bundle.show","trust_domain":"other.org"})"));
    REQUIRE(r);
    CHECK(r->trust_domain == "other.org");

    r = read_admin_request(json::parse(R"({"op":"policy.apply","policy":"{}"})"));
    REQUIRE(r);
    CHECK(r->policy == "{}");
}

TEST_CASE("a malformed admin request is refused with a message that names the field", "[admin]") {
    struct Case {
        const char* line;
        const char* error;
    };
    const Case cases[] = {
        {R"([1,2])", "request must be a JSON object with a string field \"op\""},
        {R"({"op":7})", "request must be a JSON object with a string field \"op\""},
        {R"({"op":"identity","pid":0})", "identity needs a positive integer field \"pid\" (a process id)"},
        {R"({"op":"identity","pid":4294967296})", "identity needs a positive integer field \"pid\" (a process id)"},
        {R"({"op":"identity","pid":"1"})", "identity needs a positive integer field \"pid\" (a process id)"},
        {R"({"op":"policy.apply","policy":{}})", "policy.apply needs a string field \"policy\" with the policy text"},
        {R"({"op":"events","follow":"yes"})", "events: \"follow\" must be true or false"},
        {R"({"op":"bundle.show","trust_domain":1})", "bundle.show: \"trust_domain\" must be a string"},
        {R"({"op":"reboot"})",
         "unknown op 'reboot' (known: status, policy.apply, events, identity, svid.list, bundle.show, stop)"},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        auto r = read_admin_request(json::parse(c.line));
        REQUIRE_FALSE(r);
        CHECK(r.message() == c.error);
    }
}
