// Audit events from the kernel's records (runtime/events.h): a connect record, and the
// lifecycle of the connection it allowed, are named by the policy the connect was decided
// under, even when another was loaded before the record is read; one whose policy is no
// longer kept says so instead of borrowing names. Every event has the fields
// policy/events.schema.json requires of its type.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/compile.h"
#include "fake_container_host.h"
#include "policy_view_fixture.h"
#include "runtime/events.h"

using namespace kw;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

namespace {

// Two policies whose destination sets and rules are numbered differently.
const char* kOld = R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } } ],
  "destinations": [ { "name": "db", "cidrs": ["10.0.0.0/24"], "ports": [5432], "protocol": "tcp" } ],
  "rules": [ { "from": "spiffe://t.org/app", "to": "db" } ] })";
const char* kNew = R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } } ],
  "destinations": [ { "name": "cache", "cidrs": ["10.0.9.0/24"], "ports": [6379], "protocol": "tcp" },
                    { "name": "db", "cidrs": ["10.0.0.0/24"], "ports": [5432], "protocol": "tcp" } ],
  "rules": [ { "from": "spiffe://t.org/app", "to": "cache" } ] })";

uint32_t dset_of(const runtime::PolicyView& v, const std::string& name) {
    for (uint32_t s = 0; s < v.compiled.dset_members.size(); s++)
        for (uint32_t d : v.compiled.dset_members[s])
            if (v.policy.destinations[d].name == name) return s;
    FAIL("no destination set holds " << name);
    return 0;
}

kw_ev_connect connect_record(const runtime::PolicyView& decided_under, uint32_t ident) {
    kw_ev_connect e{};
    e.hdr.type = KW_EV_CONNECT;
    e.hdr.version = KW_ABI_VERSION;
    e.hdr.size = sizeof(e);
    e.proc.pid = e.proc.tgid = 4242;
    e.proc.uid = e.proc.gid = 1000;
    e.proc.ident = ident;
    e.proc.pin_id = ~0u;
    std::strcpy(e.proc.comm, "app");
    e.decision = KW_DECISION_ALLOW;
    e.mode = KW_MODE_ENFORCE;
    e.proto = KW_PROTO_TCP;
    e.family = 2;
    e.port = 5432;
    e.addr[10] = e.addr[11] = 0xff;
    e.addr[12] = 10;
    e.addr[15] = 7;
    e.dset = dset_of(decided_under, "db");
    e.rule = 0;
    e.revision = decided_under.compiled.config.revision;
    return e;
}

void check_schema(const json& e) {
    std::ifstream in(std::string(KW_SOURCE_DIR) + "/policy/events.schema.json");
    REQUIRE(in);
    json schema = json::parse(in);
    std::string type = e["type"];
    if (type == "established" || type == "closed") type = "lifecycle";
    const json& def = schema["$defs"][type];
    REQUIRE(def.is_object());
    for (const auto& key : def["required"]) CHECK(e.contains(key.get<std::string>()));
    for (const auto& [key, value] : e.items()) CHECK(def["properties"].contains(key));
}

}  // namespace

TEST_CASE("a connect event is named by the policy it was decided under", "[runtime][events]") {
    core::IdentityTable ids;
    auto old_view = test::policy_view(kOld, ids);
    auto new_view = test::policy_view(kNew, ids);
    REQUIRE(old_view->compiled.config.revision != new_view->compiled.config.revision);
    REQUIRE(dset_of(*old_view, "db") != dset_of(*new_view, "db"));  // numbered differently
    uint32_t app = ids.find("spiffe://t.org/app").value();

    runtime::EventFormatter formatter;
    formatter.set_policy(old_view);
    kw_ev_connect record = connect_record(*old_view, app);
    formatter.set_policy(new_view);  // a reload between the decision and its event

    auto e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["destinations"] == json::array({"db"}));
    CHECK((*e)["decided_by"] == "rule 0 (spiffe://t.org/app -> db)");  // the old rule 0, not "cache"
    CHECK((*e)["spiffe_id"] == "spiffe://t.org/app");
    check_schema(*e);

    // Decided under the new policy: named by it.
    kw_ev_connect now = connect_record(*new_view, app);
    now.rule = 0;
    auto n = formatter.format(&now, sizeof now);
    REQUIRE(n);
    CHECK((*n)["destinations"] == json::array({"db"}));
    CHECK((*n)["decided_by"] == "rule 0 (spiffe://t.org/app -> cache)");
}

TEST_CASE("a connect event of a policy no longer kept borrows no names", "[runtime][events]") {
    core::IdentityTable ids;
    auto old_view = test::policy_view(kOld, ids);
    uint32_t app = ids.find("spiffe://t.org/app").value();
    kw_ev_connect record = connect_record(*old_view, app);

    runtime::EventFormatter formatter;
    formatter.set_policy(test::policy_view(kNew, ids));  // the old one was never seen by this formatter
    auto e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["destinations"] == json::array());
    CHECK_THAT((*e)["decided_by"].get<std::string>(), ContainsSubstring("no longer kept"));
    check_schema(*e);
}

TEST_CASE("a connection's lifecycle events are named by the policy its connect was allowed under",
          "[runtime][events]") {
    core::IdentityTable ids;
    auto old_view = test::policy_view(kOld, ids);
    auto new_view = test::policy_view(kNew, ids);
    uint32_t app = ids.find("spiffe://t.org/app").value();
    REQUIRE(dset_of(*old_view, "db") != dset_of(*new_view, "db"));

    kw_ev_sock record{};
    record.hdr.type = KW_EV_CLOSED;
    record.hdr.version = KW_ABI_VERSION;
    record.hdr.size = sizeof(record);
    record.tgid = 4242;
    record.ident = app;
    record.proto = KW_PROTO_TCP;
    record.family = 2;
    record.port = 5432;
    record.dset = dset_of(*old_view, "db");
    record.revision = old_view->compiled.config.revision;

    runtime::EventFormatter formatter;
    formatter.set_policy(old_view);
    formatter.set_policy(new_view);  // the connection outlived the policy that allowed it
    auto e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["type"] == "closed");
    CHECK((*e)["destinations"] == json::array({"db"}));  // the new numbering would say "cache"
    CHECK((*e)["policy_revision"].get<std::string>().size() == 16);
    check_schema(*e);

    SECTION("a socket an older agent allowed: no revision, no names borrowed") {
        record.revision = 0;
        auto old = formatter.format(&record, sizeof record);
        REQUIRE(old);
        CHECK((*old)["destinations"] == json::array());
        CHECK((*old)["policy_revision"].is_null());
        check_schema(*old);
    }
    SECTION("a policy no longer kept: no names borrowed") {
        record.revision = 0x1234;
        auto gone = formatter.format(&record, sizeof record);
        REQUIRE(gone);
        CHECK((*gone)["destinations"] == json::array());
        CHECK((*gone)["policy_revision"] == "0000000000001234");
    }
}

TEST_CASE("records of another ABI version or cut short are dropped", "[runtime][events]") {
    core::IdentityTable ids;
    auto view = test::policy_view(kOld, ids);
    runtime::EventFormatter formatter;
    formatter.set_policy(view);
    kw_ev_connect record = connect_record(*view, KW_IDENT_NONE);
    CHECK(formatter.format(&record, sizeof record));
    CHECK_FALSE(formatter.format(&record, sizeof(kw_ev_hdr) - 1));
    CHECK_FALSE(formatter.format(&record, sizeof record - 1));
    record.hdr.version = KW_ABI_VERSION + 1;
    CHECK_FALSE(formatter.format(&record, sizeof record));
}

TEST_CASE("a debugger let in is named from the allow_debuggers of the policy the kernel decided under",
          "[runtime][events]") {
    const std::string base = R"({ "version": 1, "trust_domain": "t.org", "mode": "enforce",
  "workloads": [ { "id": "spiffe://t.org/app", "selectors": { "uid": 1000 } },
                 { "id": "spiffe://t.org/gdb", "selectors": { "uid": 1001 } },
                 { "id": "spiffe://t.org/strace", "selectors": { "uid": 1002 } } ],
  "destinations": [], "rules": [], "allow_debuggers": )";
    core::IdentityTable ids;
    auto old_view = test::policy_view(base + R"([ "spiffe://t.org/gdb" ] })", ids);
    auto new_view = test::policy_view(base + R"([ "spiffe://t.org/strace", "spiffe://t.org/gdb" ] })", ids);
    runtime::EventFormatter formatter;
    formatter.set_policy(old_view);
    kw_ev_guard record{};
    record.hdr.type = KW_EV_GUARD;
    record.hdr.version = KW_ABI_VERSION;
    record.hdr.size = sizeof(record);
    record.proc.pin_id = ~0u;
    record.action = KW_GUARD_PTRACE;
    record.decision = KW_DECISION_ALLOW;
    record.obj_id = 0;  // allow_debuggers[0] of the old policy
    record.revision = old_view->compiled.config.revision;
    formatter.set_policy(new_view);
    auto e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["decided_by"] == "allow_debuggers[0] (spiffe://t.org/gdb)");  // not the new [0], strace
    check_schema(*e);
    record.revision = 0x1234;  // a policy this formatter never kept: the index alone
    e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["decided_by"] == "allow_debuggers[0]");
}

TEST_CASE("a process in an enrolled container is named with its container, after the container ended too",
          "[runtime][events][containers]") {
    core::IdentityTable ids;
    auto view = test::policy_view(kOld, ids);
    uint32_t app = ids.find("spiffe://t.org/app").value();
    kw::test::FakeContainerHost host;
    runtime::Containers containers(host);
    core::ContainerFacts facts;
    facts.id = "c1";
    facts.name = "cart";
    facts.pod_namespace = "shop";
    REQUIRE(containers.started({"/kubepods/pod1/c1", 900}, facts, view->policy, view->compiled).ok());

    runtime::EventFormatter formatter;
    formatter.set_policy(view);
    formatter.set_containers(&containers);
    kw_ev_connect record = connect_record(*view, app);
    record.proc.cgroup_id = 900;
    auto e = formatter.format(&record, sizeof record);
    REQUIRE(e);
    CHECK((*e)["container"]["id"] == "c1");
    CHECK((*e)["container"]["name"] == "cart");
    CHECK((*e)["container"]["pod_namespace"] == "shop");
    CHECK((*e)["container"]["image"].is_null());
    check_schema(*e);

    // Its last process's events are often read after the container's end.
    containers.released(900);
    auto later = formatter.format(&record, sizeof record);
    REQUIRE(later);
    CHECK((*later)["container"]["name"] == "cart");
    // Outside any container: no such field.
    record.proc.cgroup_id = 901;
    auto host_process = formatter.format(&record, sizeof record);
    REQUIRE(host_process);
    CHECK_FALSE(host_process->contains("container"));
}

TEST_CASE("an executable no pin names is hashed for its events only while that stays cheap", "[runtime][events]") {
    const auto dir = std::filesystem::temp_directory_path() / ("kw-events-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    core::IdentityTable ids;
    auto view = test::policy_view(kOld, ids);
    auto exe_record = [&](const std::filesystem::path& file) {
        kw_ev_connect e = connect_record(*view, KW_IDENT_NONE);
        e.proc.tgid = e.proc.pid = 0;  // gone: the path names the file
        struct stat st {};
        REQUIRE(::stat(file.c_str(), &st) == 0);
        e.proc.exe.ino = st.st_ino;
        e.proc.exe.dev = (static_cast<uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev);
        e.proc.exe_ctime_sec = st.st_ctim.tv_sec;
        e.proc.exe_ctime_nsec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
        std::strncpy(e.proc.exe_path, file.c_str(), sizeof(e.proc.exe_path) - 1);
        return e;
    };
    auto write_file = [](const std::filesystem::path& file, uint64_t size) {
        std::ofstream out(file, std::ios::binary);
        std::string chunk(1 << 20, 'k');
        for (uint64_t left = size; left > 0;) {
            uint64_t n = std::min<uint64_t>(left, chunk.size());
            out.write(chunk.data(), static_cast<std::streamsize>(n));
            left -= n;
        }
    };
    runtime::EventFormatter f;
    f.set_policy(view);
    auto now = std::chrono::steady_clock::now();
    f.set_clock([&] { return now; });  // one second, whatever this machine's speed
    // Small: hashed, "hello\n"'s SHA-256.
    { std::ofstream(dir / "small") << "hello\n"; }
    auto small = exe_record(dir / "small");
    auto e = f.format(&small, sizeof(small));
    REQUIRE(e);
    CHECK((*e)["sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    // Larger than the bound: named by its path, not hashed.
    write_file(dir / "large", runtime::EventFormatter::kMaxHashedExe + 1);
    auto large = exe_record(dir / "large");
    e = f.format(&large, sizeof(large));
    REQUIRE(e);
    CHECK((*e)["sha256"].is_null());
    CHECK((*e)["exe"] == (dir / "large").string());
    // A second's budget spent: the next file waits for a later event.
    for (int i = 0; i < 4; ++i) write_file(dir / ("mid" + std::to_string(i)), runtime::EventFormatter::kMaxHashedExe);
    int hashed = 0;
    for (int i = 0; i < 4; ++i) {
        auto mid = exe_record(dir / ("mid" + std::to_string(i)));
        e = f.format(&mid, sizeof(mid));
        REQUIRE(e);
        hashed += (*e)["sha256"].is_string() ? 1 : 0;
    }
    CHECK(hashed == static_cast<int>(runtime::EventFormatter::kHashBytesPerSecond /
                                      runtime::EventFormatter::kMaxHashedExe) - 1);  // "small" counted too
    // The next second: hashed.
    now += std::chrono::seconds(1);
    auto last = exe_record(dir / "mid3");
    e = f.format(&last, sizeof(last));
    REQUIRE(e);
    CHECK((*e)["sha256"].is_string());
    std::filesystem::remove_all(dir);
}
