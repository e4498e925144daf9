// The policy service: a policy is in force only once its SVIDs are staged and the kernel
// took its identities and tables; a change refused anywhere (parser, identity, kernel)
// leaves the last good policy in force, with its identities and SVIDs; changes run one at
// a time in the order asked, compiled off the loop; a recompile keeps the SVIDs.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "policy_view_fixture.h"
#include "runtime/policy_service.h"

using Catch::Matchers::ContainsSubstring;
using namespace kw;

namespace {

class FakePolicyKernel final : public runtime::PolicyKernel {
public:
    std::vector<std::string> log;
    bool refuse_publish = false;
    uint32_t generation = 0;
    core::IdentityTable stored;

    Result<void> store_identities(const core::IdentityTable& ids) override {
        log.push_back("store_identities");
        stored = ids;
        return {};
    }
    Result<void> publish(const core::CompiledPolicy& compiled) override {
        log.push_back("publish " + std::to_string(compiled.config.revision));
        if (refuse_publish) return make_error("the kernel map is full");
        generation ^= 1;
        return {};
    }
    uint32_t active_generation() const override { return generation; }
};

std::string policy(const std::string& workloads, const std::string& mode = "enforce") {
    return R"({ "version": 1, "trust_domain": "t.org", "mode": ")" + mode + R"(", "workloads": [ )" + workloads +
           R"( ], "destinations": [], "rules": [] })";
}

const std::string kApp = R"({ "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } })";
const std::string kDb = R"({ "id": "spiffe://t.org/db", "selectors": { "uid": 1001 } })";

// A host whose cgroups the test creates and re-creates (a new id each time).
class Cgroups final : public test::NoFiles {
public:
    explicit Cgroups(std::map<std::string, uint64_t>& ids) : ids_(ids) {}
    std::optional<core::CgroupRef> resolve_cgroup(const std::string& path) override {
        auto it = ids_.find(path);
        if (it == ids_.end()) return std::nullopt;
        return core::CgroupRef{it->second, 1};
    }

private:
    std::map<std::string, uint64_t>& ids_;
};

struct Service {
    FakePolicyKernel kernel;
    std::map<std::string, uint64_t> cgroups;  // path -> id, as the host has them now
    identity::NodeIdentity identity{"/nonexistent/kwarden-test-ca"};
    std::deque<std::function<void()>> compiler, loop;  // jobs posted, run by the test
    std::vector<std::shared_ptr<const runtime::PolicyView>> installed;
    int issued = 0;
    runtime::PolicyService service{ports()};

    runtime::PolicyPorts ports() {
        runtime::PolicyPorts p;
        p.kernel = &kernel;
        p.identity = &identity;
        p.host = [this] { return std::make_unique<Cgroups>(cgroups); };
        p.off_loop = [this](std::function<void()> job) { compiler.push_back(std::move(job)); };
        p.on_loop = [this](std::function<void()> job) { loop.push_back(std::move(job)); };
        p.installed = [this](const std::shared_ptr<const runtime::PolicyView>& v) { installed.push_back(v); };
        p.svids_issued = [this] { ++issued; };
        return p;
    }
    Service() { REQUIRE(identity.load_ca()); }

    void start(const std::string& text) {
        auto parsed = core::parse_policy(text);
        REQUIRE(parsed.policy);
        REQUIRE(service.start(std::move(*parsed.policy), nullptr));
    }
    // Runs every job posted, compiler and loop alike, until none is left.
    void drain() {
        while (!compiler.empty() || !loop.empty()) {
            auto& q = !compiler.empty() ? compiler : loop;
            auto job = std::move(q.front());
            q.pop_front();
            job();
        }
    }
    std::string serial(const std::string& id) const {
        auto svid = identity.svids().find(id);
        return svid ? svid->serial : "";
    }
};

struct Outcome {
    bool done = false;
    bool ok = false;
    std::string error;
    std::vector<core::PolicyProblem> problems;
};

runtime::PolicyService::Done record(Outcome& out) {
    return [&out](Result<runtime::PolicyService::Applied> r, const std::vector<core::PolicyProblem>& problems) {
        out.done = true;
        out.ok = static_cast<bool>(r);
        out.error = r ? "" : r.message();
        out.problems = problems;
    };
}

}  // namespace

TEST_CASE("a policy is in force once its SVIDs are staged and the kernel took it", "[runtime][policy]") {
    Service s;
    s.start(policy(kApp));
    REQUIRE(s.service.view());
    CHECK(s.kernel.log.size() == 2);
    CHECK(s.kernel.log[0] == "store_identities");  // identities before the tables that use them
    CHECK(s.kernel.stored.find("spiffe://t.org/app"));
    CHECK(s.installed.size() == 1);
    CHECK(s.issued == 1);
    CHECK(!s.serial("spiffe://t.org/app").empty());
}

TEST_CASE("a change refused anywhere leaves the last good policy in force", "[runtime][policy]") {
    Service s;
    s.start(policy(kApp));
    auto before = s.service.view();
    const std::string app_serial = s.serial("spiffe://t.org/app");
    const size_t published = s.kernel.log.size();
    Outcome out;
    SECTION("the parser refuses it: its problems, and the kernel never asked") {
        s.service.apply(R"({ "version": 1, "trust_domain": "t.org" )", record(out));
        s.drain();
        CHECK(!out.ok);
        CHECK(!out.problems.empty());
        CHECK(s.kernel.log.size() == published);
    }
    SECTION("the kernel refuses its tables: identities and SVIDs stay the old ones") {
        s.kernel.refuse_publish = true;
        s.service.apply(policy(kApp + ", " + kDb), record(out));
        s.drain();
        CHECK(!out.ok);
        CHECK_THAT(out.error, ContainsSubstring("the kernel map is full"));
        CHECK(!s.service.ids().find("spiffe://t.org/db"));  // not committed
        CHECK(s.serial("spiffe://t.org/db").empty());        // never issued
        CHECK(s.serial("spiffe://t.org/app") == app_serial);
    }
    REQUIRE(out.done);
    CHECK(s.service.view() == before);
    CHECK(s.installed.size() == 1);
    CHECK(s.issued == 1);
}

TEST_CASE("changes run one at a time, in the order asked, compiled off the loop", "[runtime][policy]") {
    Service s;
    s.start(policy(kApp));
    Outcome first, second;
    s.service.apply(policy(kApp, "audit"), record(first));
    s.service.apply(policy(kApp + ", " + kDb), record(second));
    CHECK(s.service.changing());
    REQUIRE(s.compiler.size() == 1);  // the second waits for the first
    CHECK(s.installed.size() == 1);   // nothing changes on the loop until the compiler is done
    s.compiler.front()();
    s.compiler.pop_front();
    REQUIRE(s.loop.size() == 1);
    s.loop.front()();
    s.loop.pop_front();
    CHECK(first.ok);
    CHECK(!second.done);
    CHECK(s.service.view()->policy.mode == core::Mode::Audit);
    REQUIRE(s.compiler.size() == 1);  // now the second
    s.drain();
    CHECK(second.ok);
    CHECK(!s.service.changing());
    CHECK(s.service.view()->policy.workloads.size() == 2);
    CHECK(s.service.view()->policy.mode == core::Mode::Enforce);
    CHECK(s.issued == 3);  // a new policy re-issues every SVID
}

TEST_CASE("a recompile of the policy in force keeps its SVIDs", "[runtime][policy]") {
    Service s;
    s.start(policy(kApp));
    const std::string serial = s.serial("spiffe://t.org/app");
    Outcome out;
    s.service.recompile(record(out));
    s.drain();
    CHECK(out.ok);
    CHECK(s.installed.size() == 2);
    CHECK(s.issued == 1);
    CHECK(s.serial("spiffe://t.org/app") == serial);
}

TEST_CASE("a selected cgroup created or re-created recompiles the policy; otherwise nothing runs",
          "[runtime][policy]") {
    Service s;
    const std::string in_cgroup = R"({ "id": "spiffe://t.org/app", "selectors": { "cgroup": "/app.slice" } })";
    s.start(policy(in_cgroup));
    REQUIRE_FALSE(s.installed.back()->compiled.cgroups[0].has_value());  // not there at start
    Outcome out;
    CHECK_FALSE(s.service.recheck_cgroups(record(out)));
    CHECK(s.compiler.empty());

    s.cgroups["/app.slice"] = 41;  // created
    CHECK(s.service.recheck_cgroups(record(out)));
    CHECK_FALSE(s.service.recheck_cgroups(record(out)));  // one change at a time
    s.drain();
    REQUIRE(out.ok);
    REQUIRE(s.installed.back()->compiled.cgroups[0].has_value());
    CHECK(s.installed.back()->compiled.cgroups[0]->id == 41);
    CHECK_FALSE(s.service.recheck_cgroups(record(out)));  // unchanged since

    s.cgroups["/app.slice"] = 77;  // the unit restarted: a new cgroup, a new id
    Outcome again;
    CHECK(s.service.recheck_cgroups(record(again)));
    s.drain();
    REQUIRE(again.ok);
    CHECK(s.installed.back()->compiled.cgroups[0]->id == 77);

    s.cgroups.erase("/app.slice");  // removed
    Outcome gone;
    CHECK(s.service.recheck_cgroups(record(gone)));
    s.drain();
    CHECK_FALSE(s.installed.back()->compiled.cgroups[0].has_value());
}
