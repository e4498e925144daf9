// The policy files shipped in policy/: the built-in default matches default.json, the
// examples parse, and full.json exercises every field that policy.schema.json declares.
#include <catch2/catch_test_macros.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/policy.h"

using json = nlohmann::json;
using kw::core::load_policy_file;
using kw::core::ParseOutcome;

namespace {

const std::string kPolicyDir = std::string(KW_SOURCE_DIR) + "/policy/";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string all_problems(const ParseOutcome& out) {
    std::string text;
    for (const auto& p : out.errors) text += "error " + p.to_string() + "\n";
    for (const auto& p : out.warnings) text += "warning " + p.to_string() + "\n";
    return text;
}

std::set<std::string> keys_of(const json& obj) {
    std::set<std::string> keys;
    for (const auto& [key, value] : obj.items()) keys.insert(key);
    return keys;
}

// Union of the keys of every object in ARRAY (or of ARRAY[i][member] when given).
std::set<std::string> keys_used(const json& array, const std::string& member = "") {
    std::set<std::string> keys;
    for (const json& item : array) keys.merge(keys_of(member.empty() ? item : item.at(member)));
    return keys;
}

}  // namespace

TEST_CASE("the built-in default policy is byte-identical to policy/default.json") {
    CHECK(read_text(kPolicyDir + "default.json") == kw::core::default_policy_text());
}

TEST_CASE("the default policy: curl fetching the demo page, and two enrolled programs over mutual TLS") {
    ParseOutcome out = kw::core::parse_policy(kw::core::default_policy_text());
    INFO(all_problems(out));
    REQUIRE(out.policy);
    CHECK(out.warnings.empty());
    const auto& p = *out.policy;
    CHECK(p.trust_domain == "kwarden.local");
    CHECK(p.mode == kw::core::Mode::Enforce);
    REQUIRE(p.workloads.size() == 3);
    CHECK(p.workloads[0].id == "spiffe://kwarden.local/demo/client");
    CHECK(p.workloads[0].selectors.exe == "/usr/bin/curl");
    CHECK(p.workloads[0].selectors.argv);  // curl alone would lend the identity to any fetch
    CHECK(p.workloads[1].id == "spiffe://kwarden.local/demo/files");
    REQUIRE(p.workloads[1].listen.size() == 1);
    CHECK(p.workloads[1].listen[0].port == 7443);
    CHECK(p.workloads[1].listen[0].tls == kw::core::Tls::Mutual);
    CHECK(p.workloads[2].id == "spiffe://kwarden.local/demo/reader");
    CHECK(p.workloads[2].selectors.argv);
    REQUIRE(p.destinations.size() == 2);
    CHECK(p.destinations[0].name == "demo-service");
    CHECK(p.destinations[0].ports == std::vector<uint16_t>{7070});
    REQUIRE(p.destinations[0].cidrs.size() == 2);
    CHECK(p.destinations[0].cidrs[0].text == "127.0.0.1/32");
    CHECK(p.destinations[0].cidrs[1].text == "::1/128");
    CHECK(p.destinations[1].name == "demo-files");
    CHECK(p.destinations[1].tls == kw::core::Tls::Mutual);
    CHECK(p.destinations[1].identity == "spiffe://kwarden.local/demo/files");
    REQUIRE(p.rules.size() == 2);
    CHECK(p.rules[0].from == "spiffe://kwarden.local/demo/client");
    CHECK(p.rules[0].to == "demo-service");
    CHECK(p.rules[1].from == "spiffe://kwarden.local/demo/reader");
    CHECK(p.rules[1].to == "demo-files");
}

TEST_CASE("the example policies parse without errors or warnings") {
    for (const char* name : {"examples/minimal.json", "examples/full.json", "default.json"}) {
        DYNAMIC_SECTION(name) {
            ParseOutcome out = load_policy_file(kPolicyDir + name);
            INFO(all_problems(out));
            CHECK(out.policy);
            CHECK(out.errors.empty());
            CHECK(out.warnings.empty());
        }
    }
}

TEST_CASE("the full example uses every field that the schema declares") {
    json schema = json::parse(read_text(kPolicyDir + "policy.schema.json"));
    json full = json::parse(read_text(kPolicyDir + "examples/full.json"));
    CHECK(schema.at("$schema") == "https://json-schema.org/draft/2020-12/schema");

    auto declared = [&](const json& object_schema) { return keys_of(object_schema.at("properties")); };
    const json& defs = schema.at("$defs");
    CHECK(keys_of(full) == declared(schema));
    CHECK(keys_used(full.at("workloads")) == declared(defs.at("workload")));
    CHECK(keys_used(full.at("workloads"), "selectors") == declared(defs.at("selectors")));
    CHECK(keys_used(full.at("destinations")) == declared(defs.at("destination")));
    CHECK(keys_used(full.at("rules")) == declared(defs.at("rule")));
    CHECK(keys_used(full.at("federation")) == declared(defs.at("federation")));
    json listens = json::array();
    for (const json& w : full.at("workloads"))
        for (const json& l : w.value("listen", json::array())) listens.push_back(l);
    CHECK(keys_used(listens) == declared(defs.at("listen")));
}
