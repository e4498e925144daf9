// Policies far larger than the unit tests' others: parse and compile must finish, with the
// tables they must give. Their growth with size is measured by `make bench` (the policy
// figures of bench/policy_bench.cpp); the bounds here are only a generous smoke check,
// at sizes where quadratic work takes minutes.
#include <catch2/catch_test_macros.hpp>

#include <chrono>
#include <string>

#include "core/compile.h"
#include "core/policy.h"
#include "policy_gen.h"

using namespace kw::core;
using kw::bench::generate_policy;
using kw::bench::GeneratedHost;
using kw::bench::Shape;

namespace {

// Far above what these take (well under a second each, even unoptimised), far below the
// minutes that work growing with the square of the policy takes at these sizes.
constexpr std::chrono::seconds kGenerous{20};

struct Timed {
    CompiledPolicy compiled;
    std::chrono::duration<double> took{};
};

Timed parse_and_compile(const std::string& text) {
    auto start = std::chrono::steady_clock::now();
    ParseOutcome parsed = parse_policy(text);
    REQUIRE(parsed.errors.empty());
    REQUIRE(parsed.policy);
    GeneratedHost host;
    IdentityTable ids;
    auto compiled = compile_policy(*parsed.policy, host, ids, {}, {});
    REQUIRE(compiled.ok());
    return {std::move(compiled).value(), std::chrono::steady_clock::now() - start};
}

}  // namespace

TEST_CASE("a destination of 1,000 ports by 1,000 CIDRs compiles to a node per pair, all in one set") {
    Timed t = parse_and_compile(generate_policy(Shape::PortsByCidrs, 1000 * 1000));
    CHECK(t.compiled.dsts.size() == 1000 * 1000);
    CHECK(t.compiled.dset_members.size() == 1);
    CHECK(t.took < kGenerous);
}

TEST_CASE("64,000 CIDRs of one destination compile to a node each, all in one set") {
    Timed t = parse_and_compile(generate_policy(Shape::Cidrs, 64000));
    CHECK(t.compiled.dsts.size() == 64000);
    CHECK(t.compiled.dset_members.size() == 1);
    CHECK(t.took < kGenerous);
}

TEST_CASE("64,000 destinations of one CIDR each compile to a node and a set each") {
    std::string destinations, rules;
    for (uint32_t d = 0; d < 64000; ++d) {
        std::string name = "d" + std::to_string(d);
        destinations += std::string(d ? "," : "") + R"({"name": ")" + name + R"(", "cidrs": [")" +
                        kw::bench::nth_cidr(d) + R"("]})";
        rules += std::string(d ? "," : "") + kw::bench::rule_json("*", name);
    }
    Timed t = parse_and_compile(R"({"version": 1, "trust_domain": "bench.example", "workloads": [], "destinations": [)" +
                                destinations + R"(], "rules": [)" + rules + "]}");
    CHECK(t.compiled.dsts.size() == 64000);
    // A /32 lies in the /25 before it: its set holds both destinations.
    CHECK(t.compiled.dset_members.size() == 64000);
    CHECK(t.took < kGenerous);
}

TEST_CASE("200,000 rules between workloads and overlapping destinations compile to their allows") {
    Timed t = parse_and_compile(generate_policy(Shape::Rules, 200000));
    REQUIRE(t.compiled.workloads.size() == 2000);
    // Every workload reaches every destination: an allow for each (identity, set).
    CHECK(t.compiled.allows.size() == 2000 * t.compiled.dset_members.size());
    CHECK(t.took < kGenerous);
}

TEST_CASE("keys repeated deep in nested objects are refused without walking the path for each") {
    // 6,000 levels of {"k": ...} around 6,000 repeats of one key.
    const int depth = 6000, repeats = 6000;
    std::string text;
    for (int i = 0; i < depth; ++i) text += R"({"k":)";
    text += "{";
    for (int i = 0; i < repeats; ++i) text += std::string(i ? "," : "") + R"("x":1)";
    text += "}" + std::string(depth, '}');
    auto start = std::chrono::steady_clock::now();
    ParseOutcome out = parse_policy(text);
    CHECK_FALSE(out.policy);
    REQUIRE(out.errors.size() == 1);
    std::string pointer;
    for (int i = 0; i < 31; ++i) pointer += "/k";
    CHECK(out.errors[0].path == pointer);
    CHECK(out.errors[0].message == "nested deeper than 32 levels, which no policy field is");
    CHECK(std::chrono::steady_clock::now() - start < kGenerous);
}

TEST_CASE("keys repeated below long keys are refused without copying the long path for each") {
    // 20 levels of 100,000-byte keys around 100,000 repeats of one key.
    const std::string long_key(100000, 'k');
    std::string text = R"({"version": 1, "trust_domain": "example.org", "x": )";
    for (int i = 0; i < 20; ++i) text += "{\"" + long_key + "\":";
    text += "{";
    for (int i = 0; i < 100000; ++i) text += std::string(i ? "," : "") + R"("x":1)";
    text += "}" + std::string(20, '}') + "}";
    auto start = std::chrono::steady_clock::now();
    ParseOutcome out = parse_policy(text);
    CHECK_FALSE(out.policy);
    // The first 20 listed with their pointer, the rest counted in one more.
    REQUIRE(out.errors.size() >= 21);
    CHECK(out.errors[0].path.size() == 2 + 20 * (1 + long_key.size()) + 2);
    CHECK(out.errors[0].message == "duplicate key 'x': JSON readers disagree on which one counts");
    CHECK(out.errors[20].path.empty());
    CHECK(out.errors[20].message ==
          "99979 more duplicate keys, not listed: JSON readers disagree on which one counts");
    CHECK(std::chrono::steady_clock::now() - start < kGenerous);
}
