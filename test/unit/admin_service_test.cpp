// The admin service, on fake ports: root alone is served and every other peer is named in
// a guard event (rate-limited per uid); each request does what it says in order, and
// what fails says why without acting: a stop whose guard stays on does not exit, a policy
// the service refuses is answered with its problems, a pid that names no process is said
// so, and an identity the policy in force no longer names is "unknown".
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <map>
#include <string>
#include <vector>

#include "abi.h"
#include "runtime/admin.h"

using Catch::Matchers::ContainsSubstring;
using nlohmann::json;
using namespace kw;

namespace {

class FakeClient final : public runtime::AdminClient {
public:
    std::vector<std::string> sent;
    std::vector<json> later;
    bool following = false;
    bool waiting = false;
    void send(const std::string& line) override { sent.push_back(line); }
    void set_following() override { following = true; }
    void set_waiting() override { waiting = true; }
    void reply_later(const json& response) override {
        waiting = false;
        later.push_back(response);
    }
};

class FakePorts final : public runtime::AdminPorts {
public:
    std::vector<std::string> log;  // what the service did, in order
    std::vector<json> events;
    std::string refuse_unprotect;  // non-empty: unprotect fails with it
    std::map<int, runtime::ProcessIdentity> processes;
    std::map<uint32_t, std::string> names;
    runtime::PolicyService::Done pending;  // a policy apply not finished yet

    json status() override { return {{"revision", "abc"}}; }
    Result<void> unprotect() override {
        log.push_back("unprotect");
        if (!refuse_unprotect.empty()) return make_error(refuse_unprotect);
        return {};
    }
    void exit_soon() override { log.push_back("exit_soon"); }
    void emit(const json& event) override { events.push_back(event); }
    void replay_events(const std::shared_ptr<runtime::AdminClient>& client, bool follow) override {
        log.push_back(follow ? "replay follow" : "replay");
        client->send("{\"type\":\"recent\"}");
        if (follow) client->set_following();
    }
    Result<runtime::ProcessIdentity> process_identity(int pid) override {
        auto it = processes.find(pid);
        if (it == processes.end()) return make_error("no process " + std::to_string(pid) + ": No such process");
        return it->second;
    }
    json svid_list() override { return {{"ok", true}, {"svids", json::array()}}; }
    Result<std::string> bundle_json(const std::optional<std::string>& trust_domain) override {
        if (trust_domain && *trust_domain != "t.org") return make_error("no bundle for trust domain " + *trust_domain);
        return std::string("{\"keys\":[]}");
    }
    void apply_policy(std::string text, runtime::PolicyService::Done done) override {
        log.push_back("apply " + text);
        pending = std::move(done);
    }
    std::optional<std::string> identity_name(uint32_t ident) override {
        auto it = names.find(ident);
        if (it == names.end()) return std::nullopt;
        return it->second;
    }
};

struct Admin {
    FakePorts ports;
    runtime::AdminService service{ports};
    std::shared_ptr<FakeClient> client = std::make_shared<FakeClient>();
    json ask(const json& request) { return service.handle(request, client); }
};

}  // namespace

TEST_CASE("the admin socket serves root alone; others are refused by name, each uid once per interval",
          "[runtime][admin]") {
    Admin a;
    CHECK_FALSE(a.service.refuse({100, 0, 0}));
    CHECK(a.ports.events.empty());

    auto refused = a.service.refuse({200, 1000, 1000});
    REQUIRE(refused);
    CHECK((*refused)["ok"] == false);
    CHECK_THAT((*refused)["error"].get<std::string>(), ContainsSubstring("root only (peer uid 1000)"));
    REQUIRE(a.ports.events.size() == 1);
    CHECK(a.ports.events[0]["type"] == "guard");
    CHECK(a.ports.events[0]["action"] == "admin_socket");
    CHECK(a.ports.events[0]["pid"] == 200);
    CHECK(a.ports.events[0]["uid"] == 1000);

    // The same uid knocking again within the interval is refused all the same, and summed
    // up later instead of flooding the event stream.
    for (int i = 0; i < 5; ++i) CHECK(a.service.refuse({201, 1000, 1000}));
    CHECK(a.ports.events.size() == 1);
    CHECK(a.service.refused("not_root") == 6);
    a.service.report_refusals(core::PeerLimits::Clock::now() + core::kRefusalReportInterval * 2);
    REQUIRE(a.ports.events.size() == 2);
    CHECK(a.ports.events[1]["type"] == "refused");
    CHECK(a.ports.events[1]["count"] == 5);

    a.service.idle(0);
    CHECK(a.service.refused("idle") == 1);
}

TEST_CASE("admin requests that are not well formed are answered with the problem, and nothing acts",
          "[runtime][admin]") {
    Admin a;
    auto r = a.ask({{"op", "policy.apply"}});
    CHECK(r["ok"] == false);
    CHECK_THAT(r["error"].get<std::string>(), ContainsSubstring("\"policy\""));
    CHECK_THAT(a.ask({{"op", "reboot"}})["error"].get<std::string>(), ContainsSubstring("unknown op 'reboot'"));
    CHECK_THAT(a.ask(json::array())["error"].get<std::string>(), ContainsSubstring("JSON object"));
    CHECK(a.ports.log.empty());
}

TEST_CASE("stop: the guard off, the event, then the exit; a guard that stays on keeps the agent running",
          "[runtime][admin]") {
    Admin a;
    SECTION("the guard goes off") {
        CHECK(a.ask({{"op", "stop"}})["ok"] == true);
        CHECK(a.ports.log == std::vector<std::string>{"unprotect", "exit_soon"});
        REQUIRE(a.ports.events.size() == 1);
        CHECK(a.ports.events[0]["type"] == "protection");
        CHECK(a.ports.events[0]["guard"] == "off");
    }
    SECTION("the kernel refuses") {
        a.ports.refuse_unprotect = "the guard map cannot be written";
        auto r = a.ask({{"op", "stop"}});
        CHECK(r["ok"] == false);
        CHECK(r["error"] == "the guard map cannot be written");
        CHECK(a.ports.log == std::vector<std::string>{"unprotect"});
        CHECK(a.ports.events.empty());
    }
}

TEST_CASE("policy.apply is answered when the change is done, with its revision or its problems",
          "[runtime][admin]") {
    Admin a;
    CHECK(a.ask({{"op", "policy.apply"}, {"policy", "P1"}}).is_null());
    CHECK(a.client->waiting);
    CHECK(a.ports.log == std::vector<std::string>{"apply P1"});
    REQUIRE(a.ports.pending);
    SECTION("applied") {
        a.ports.pending(runtime::PolicyService::Applied{"0123456789abcdef0123", {}}, {});
        REQUIRE(a.client->later.size() == 1);
        CHECK(a.client->later[0]["ok"] == true);
        CHECK(a.client->later[0]["revision"] == "0123456789abcdef0123");
    }
    SECTION("refused: the parser's problems listed") {
        a.ports.pending(make_error("policy rejected; the previous policy stays in force"),
                        {core::PolicyProblem{"/workloads/0/id", "not a SPIFFE ID"}});
        REQUIRE(a.client->later.size() == 1);
        CHECK(a.client->later[0]["ok"] == false);
        CHECK_THAT(a.client->later[0]["error"].get<std::string>(), ContainsSubstring("stays in force"));
        REQUIRE(a.client->later[0]["problems"].size() == 1);
        CHECK_THAT(a.client->later[0]["problems"][0].get<std::string>(), ContainsSubstring("not a SPIFFE ID"));
    }
    CHECK_FALSE(a.client->waiting);
}

TEST_CASE("identity of a pid: its SPIFFE ID, unattested, unknown to the policy in force, or no such process",
          "[runtime][admin]") {
    Admin a;
    a.ports.names[3] = "spiffe://t.org/app";
    a.ports.processes[10] = {3, false};
    a.ports.processes[11] = {KW_IDENT_NONE, false};
    a.ports.processes[12] = {9, true};  // attested under a policy that no longer names it

    auto r = a.ask({{"op", "identity"}, {"pid", 10}});
    CHECK(r["ok"] == true);
    CHECK(r["pid"] == 10);
    CHECK(r["spiffe_id"] == "spiffe://t.org/app");
    CHECK(r["attested_from_proc"] == false);
    CHECK(a.ask({{"op", "identity"}, {"pid", 11}})["spiffe_id"] == "unattested");
    r = a.ask({{"op", "identity"}, {"pid", 12}});
    CHECK(r["spiffe_id"] == "unknown");
    CHECK(r["attested_from_proc"] == true);
    r = a.ask({{"op", "identity"}, {"pid", 99}});
    CHECK(r["ok"] == false);
    CHECK_THAT(r["error"].get<std::string>(), ContainsSubstring("no process 99"));
    CHECK(a.ask({{"op", "identity"}, {"pid", -1}})["ok"] == false);
}

TEST_CASE("events, status, SVIDs and bundles are answered from their ports", "[runtime][admin]") {
    Admin a;
    auto r = a.ask({{"op", "events"}});
    CHECK(r == json{{"ok", true}, {"end", true}});
    CHECK(a.client->sent.size() == 1);
    CHECK_FALSE(a.client->following);
    CHECK(a.ask({{"op", "events"}, {"follow", true}}).is_null());
    CHECK(a.client->following);

    CHECK(a.ask({{"op", "status"}})["status"]["revision"] == "abc");
    CHECK(a.ask({{"op", "svid.list"}})["ok"] == true);
    CHECK(a.ask({{"op", "bundle.show"}})["bundle"] == "{\"keys\":[]}");
    auto b = a.ask({{"op", "bundle.show"}, {"trust_domain", "other.org"}});
    CHECK(b["ok"] == false);
    CHECK_THAT(b["error"].get<std::string>(), ContainsSubstring("other.org"));
}
