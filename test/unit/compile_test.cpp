// compile_policy against a fake host: candidate lists, pins, workload records, the
// destination trie and its sets, allow entries, identities; and match_workload, the
// userspace mirror of the kernel's selector logic.
#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

#include "core/compile.h"
#include "core/lint.h"
#include "core/prefix.h"

using namespace kw::core;
using kw::make_error;
using kw::Result;

namespace {

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');

class FakeHostView : public HostView {
public:
    void add_file(const std::string& path, uint64_t ino, const std::string& sha256, int64_t ctime = 1000) {
        PinnedContent content;
        content.key = kw_file_key{0x800001, ino};
        content.ctime_sec = ctime;
        content.ctime_nsec = 7;
        content.sha256 = sha256;
        files_.insert_or_assign(path, Result<PinnedContent>(content));
    }
    void fail_file(const std::string& path, const std::string& message) {
        files_.insert_or_assign(path, Result<PinnedContent>(make_error(message)));
    }
    void add_cgroup(const std::string& path, uint64_t id, uint32_t level) { cgroups_[path] = CgroupRef{id, level}; }

    Result<PinnedContent> pin_file(const std::string& path) override {
        ++pins_requested;
        auto it = files_.find(path);
        if (it == files_.end()) return make_error("cannot open '" + path + "' to pin it: No such file or directory");
        return it->second;
    }
    std::optional<CgroupRef> resolve_cgroup(const std::string& path) override {
        auto it = cgroups_.find(path);
        if (it == cgroups_.end()) return std::nullopt;
        return it->second;
    }

    void add_closure(const std::string& path, std::vector<std::string> files) { closures_[path] = std::move(files); }
    Result<std::vector<std::string>> code_closure(const std::string& path, const std::string&) override {
        auto it = closures_.find(path);
        return it == closures_.end() ? std::vector<std::string>{} : it->second;
    }

    // What an absolute argv argument names: the file itself by default when it is known.
    void set_arg_path(const std::string& path, ArgPath named) { arg_paths_[path] = std::move(named); }
    ArgPath arg_path(const std::string& path) override {
        if (auto it = arg_paths_.find(path); it != arg_paths_.end()) return it->second;
        return files_.count(path) ? ArgPath{ArgPath::File, path, ""} : ArgPath{ArgPath::Missing, "", ""};
    }

    int pins_requested = 0;

private:
    std::map<std::string, ArgPath> arg_paths_;
    std::map<std::string, std::vector<std::string>> closures_;
    std::map<std::string, Result<PinnedContent>> files_;
    std::map<std::string, CgroupRef> cgroups_;
};

Policy parse_ok(const std::string& text) {
    ParseOutcome out = parse_policy(text);
    std::string problems;
    for (const auto& p : out.errors) problems += p.to_string() + "\n";
    INFO(problems);
    REQUIRE(out.policy);
    return *out.policy;
}

// Wraps WORKLOADS, DESTINATIONS and RULES (JSON array bodies) into a policy of example.org.
Policy policy_of(const std::string& workloads, const std::string& destinations = "", const std::string& rules = "") {
    return parse_ok(R"({"version": 1, "trust_domain": "example.org", "workloads": [)" + workloads +
                    R"(], "destinations": [)" + destinations + R"(], "rules": [)" + rules + "]}");
}

CompiledPolicy compile_ok(const Policy& policy, HostView& host, IdentityTable& ids, const PreviousPins& previous = {},
                          CompileOptions options = {}) {
    auto compiled = compile_policy(policy, host, ids, previous, options);
    INFO((compiled ? "" : compiled.message()));
    REQUIRE(compiled.ok());
    return std::move(compiled).value();
}

CompiledPolicy compile_ok(const Policy& policy, HostView& host) {
    IdentityTable ids;
    return compile_ok(policy, host, ids);
}

std::vector<uint32_t> members(const kw_cand_list& list) { return {list.wl, list.wl + list.n}; }

const kw_file_val& file_val(const CompiledPolicy& c, uint64_t ino) {
    auto it = std::find_if(c.files.begin(), c.files.end(), [&](const auto& f) { return f.first.ino == ino; });
    REQUIRE(it != c.files.end());
    return it->second;
}

Addr16 addr(const std::string& text) {
    Addr16 out{};
    in_addr v4;
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        out[10] = out[11] = 0xff;
        std::memcpy(out.data() + 12, &v4, 4);
    } else {
        REQUIRE(inet_pton(AF_INET6, text.c_str(), out.data()) == 1);
    }
    return out;
}

// The kernel's LPM lookup, done the slow way: the longest entry for (proto, port)
// whose prefix contains ADDR.
std::optional<kw_dst_val> lookup(const CompiledPolicy& c, uint8_t proto, uint16_t port, const std::string& address) {
    Addr16 a = addr(address);
    std::optional<kw_dst_val> best;
    uint32_t best_len = 0;
    for (const auto& [key, val] : c.dsts) {
        uint16_t key_port = static_cast<uint16_t>(key.port[0] << 8 | key.port[1]);
        Addr16 key_addr;
        std::copy(key.addr, key.addr + 16, key_addr.begin());
        unsigned len = key.prefixlen - KW_DST_FIXED_BITS;
        if (key.proto != proto || key_port != port || !prefix_contains(key_addr, len, a, 128)) continue;
        if (!best || len > best_len) {
            best = val;
            best_len = len;
        }
    }
    return best;
}

// The names of the destinations in a dset.
std::vector<std::string> dset_names(const CompiledPolicy& c, const Policy& p, const std::optional<kw_dst_val>& val) {
    REQUIRE(val);
    std::vector<std::string> names;
    for (uint32_t d : c.dset_members.at(val->dset)) names.push_back(p.destinations[d].name);
    return names;
}

bool allowed(const CompiledPolicy& c, uint32_t ident, uint32_t dset) {
    return std::any_of(c.allows.begin(), c.allows.end(),
                       [&](const auto& a) { return a.first.ident == ident && a.first.dset == dset; });
}

// The gate's decision: both lookups, each answered by ANY_ALLOWED or an allow entry.
bool gate_allows(const CompiledPolicy& c, uint32_t ident, uint8_t proto, uint16_t port, const std::string& address) {
    for (uint16_t p : {port, uint16_t{0}}) {
        auto val = lookup(c, proto, p, address);
        if (!val || (val->flags & KW_DSET_ANY_ALLOWED)) continue;
        if (!allowed(c, ident, val->dset)) return false;
    }
    return true;
}

}  // namespace

TEST_CASE("workloads are candidates in their script's list, else their exe's, else list 0, in policy order") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA, 111);
    host.add_file("/usr/bin/python3", 12, kHashA);
    host.add_file("/opt/app.py", 13, kHashB);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl", "uid": 1000}},
        {"id": "spiffe://example.org/w1", "selectors": {"uid": 0}},
        {"id": "spiffe://example.org/w2", "selectors": {"exe": "/usr/bin/python3", "script": "/opt/app.py"}},
        {"id": "spiffe://example.org/w3", "selectors": {"exe": "/usr/bin/curl"}},
        {"id": "spiffe://example.org/w4", "selectors": {"cgroup": "/x", "gid": 5}})");
    CompiledPolicy c = compile_ok(p, host);

    REQUIRE(c.pins.size() == 3);
    CHECK(c.pins[0].path == "/usr/bin/curl");
    CHECK(c.pins[1].path == "/usr/bin/python3");
    CHECK(c.pins[2].path == "/opt/app.py");
    CHECK(c.pins[2].role == PinRole::Script);
    CHECK(c.pins[2].pin_source == "computed");
    CHECK(c.pins[2].pinned_sha256 == kHashB);

    REQUIRE(c.files.size() == 3);
    REQUIRE(c.lists.size() == 4);
    CHECK(members(c.lists[KW_LIST_ANY]) == std::vector<uint32_t>{1, 4});
    const kw_file_val& curl = file_val(c, 11);
    CHECK(curl.pin_id == 0);
    CHECK(curl.ctime_sec == 111);
    CHECK(curl.ctime_nsec == 7);
    CHECK(members(c.lists[curl.list_id]) == std::vector<uint32_t>{0, 3});
    CHECK(members(c.lists[file_val(c, 12).list_id]).empty());  // pinned only for w2's exe check
    CHECK(members(c.lists[file_val(c, 13).list_id]) == std::vector<uint32_t>{2});

    REQUIRE(c.workloads.size() == 5);
    CHECK(c.workloads[2].flags == (KW_SEL_EXE | KW_SEL_SCRIPT));
    CHECK(c.workloads[2].exe.ino == 12);
    CHECK(c.workloads[2].exe.dev == 0x800001);
    CHECK(c.workloads[2].script.ino == 13);
    CHECK(c.workloads[0].flags == (KW_SEL_EXE | KW_SEL_UID));
    CHECK(c.workloads[0].uid == 1000);
    CHECK(c.workloads[4].flags == (KW_SEL_CGROUP | KW_SEL_GID));
}

TEST_CASE("paths that reach one inode share one file entry and one candidate list") {
    FakeHostView host;
    host.add_file("/usr/bin/python3", 12, kHashA);
    host.add_file("/usr/bin/python3.11", 12, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"exe": "/usr/bin/python3", "argv": ["python3", "a"]}},
        {"id": "spiffe://example.org/b", "selectors": {"exe": "/usr/bin/python3.11", "argv": ["python3.11", "b"]}})");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(c.pins.size() == 2);
    REQUIRE(c.files.size() == 1);
    CHECK(c.files[0].second.pin_id == 0);
    CHECK(members(c.lists[c.files[0].second.list_id]) == std::vector<uint32_t>{0, 1});
}

TEST_CASE("a file that does not match the sha256 in the policy leaves its workloads in no list") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashB);
    host.add_file("/opt/app.py", 13, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl", "sha256": ")" +
                         kHashA + R"("}},
        {"id": "spiffe://example.org/w1", "selectors": {"exe": "/usr/bin/curl", "script": "/opt/app.py"}},
        {"id": "spiffe://example.org/w2", "selectors": {"uid": 0}})");
    CompiledPolicy c = compile_ok(p, host);

    REQUIRE(c.pins.size() == 2);
    CHECK(c.pins[0].pin_source == "policy");
    CHECK(c.pins[0].pinned_sha256 == kHashA);
    CHECK_FALSE(c.pins[0].active);
    REQUIRE(c.pins[0].actual);
    CHECK(c.pins[0].actual->sha256 == kHashB);
    CHECK(c.pins[0].problem.find("does not match the sha256 in the policy") != std::string::npos);

    // The script is fine, but w1's exe is not: w1 can never match, so it is in no list.
    REQUIRE(c.files.size() == 1);
    CHECK(c.files[0].first.ino == 13);
    CHECK(members(c.lists[c.files[0].second.list_id]).empty());
    CHECK(members(c.lists[KW_LIST_ANY]) == std::vector<uint32_t>{2});
    CHECK(c.workloads[0].exe.ino == 0);
    CHECK(c.workloads[0].exe.dev == 0);
    CHECK(c.workloads[1].script.ino == 13);

    REQUIRE(c.warnings.size() == 2);
    CHECK(c.warnings[0].path == "/workloads/0/selectors/exe");
    CHECK(c.warnings[0].message.starts_with("workload spiffe://example.org/w0 matches no process: '/usr/bin/curl'"));
    CHECK(c.warnings[1].path == "/workloads/1/selectors/exe");
}

TEST_CASE("a file that cannot be pinned is inactive with the host's reason") {
    FakeHostView host;
    host.fail_file("/usr/bin/curl",
                   "'/usr/bin/curl' changed while it was hashed: apply the policy again once it is stable");
    Policy p = policy_of(R"({"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl"}})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.pins.size() == 1);
    CHECK_FALSE(c.pins[0].active);
    CHECK_FALSE(c.pins[0].actual);
    CHECK(c.pins[0].problem.find("changed while it was hashed") != std::string::npos);
    CHECK(c.files.empty());
    CHECK(members(c.lists[KW_LIST_ANY]).empty());
}

TEST_CASE("on restart without repin a file changed since its previous pin stays inactive") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashB);
    Policy p = policy_of(R"({"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl"}})");
    IdentityTable ids;
    PreviousPins previous{{"/usr/bin/curl", kHashA}};

    CompiledPolicy restart = compile_ok(p, host, ids, previous, CompileOptions{.repin = false});
    REQUIRE(restart.pins.size() == 1);
    CHECK(restart.pins[0].pin_source == "previous");
    CHECK(restart.pins[0].pinned_sha256 == kHashA);
    CHECK_FALSE(restart.pins[0].active);
    CHECK(restart.pins[0].problem == "'/usr/bin/curl' changed since it was pinned: sha256 " + kHashB + ", pinned " +
                                         kHashA + "; it has no identity until the policy is applied again");
    CHECK(restart.files.empty());

    CompiledPolicy apply = compile_ok(p, host, ids, previous, CompileOptions{.repin = true});
    CHECK(apply.pins[0].pin_source == "computed");
    CHECK(apply.pins[0].pinned_sha256 == kHashB);
    CHECK(apply.pins[0].active);
    CHECK(apply.files.size() == 1);
}

TEST_CASE("on restart a file with no previous pin is pinned afresh") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashB);
    Policy p = policy_of(R"({"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl"}})");
    IdentityTable ids;
    CompiledPolicy c =
        compile_ok(p, host, ids, PreviousPins{{"/usr/bin/wget", kHashA}}, CompileOptions{.repin = false});
    CHECK(c.pins[0].pin_source == "computed");
    CHECK(c.pins[0].active);
}

TEST_CASE("each distinct file is hashed once however many workloads name it") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/w0", "selectors": {"exe": "/usr/bin/curl", "uid": 1}},
        {"id": "spiffe://example.org/w1", "selectors": {"exe": "/usr/bin/curl", "uid": 2}})");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(host.pins_requested == 1);
    CHECK(c.pins.size() == 1);
}

TEST_CASE("more than KW_CAND_MAX workloads on one binary is an error naming the binary") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA);
    auto workloads = [](int n) {
        std::string out;
        for (int i = 0; i < n; ++i)
            out += std::string(i ? "," : "") + R"({"id": "spiffe://example.org/w)" + std::to_string(i) +
                   R"(", "selectors": {"exe": "/usr/bin/curl", "uid": )" + std::to_string(i) + "}}";
        return out;
    };
    IdentityTable ids;
    CompiledPolicy full = compile_ok(policy_of(workloads(KW_CAND_MAX)), host, ids);
    CHECK(full.lists[full.files[0].second.list_id].n == KW_CAND_MAX);

    auto over = compile_policy(policy_of(workloads(KW_CAND_MAX + 1)), host, ids, {}, {});
    REQUIRE_FALSE(over.ok());
    CHECK(over.message().find("more than " + std::to_string(KW_CAND_MAX) + " workloads share the exe '/usr/bin/curl' (KW_CAND_MAX)") !=
          std::string::npos);
}

TEST_CASE("one file pinned to two different hashes is a compile error") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"exe": "/usr/bin/curl", "sha256": ")" +
                         kHashA + R"("}},
        {"id": "spiffe://example.org/b", "selectors": {"exe": "/usr/bin/curl"}})");
    p.workloads[1].selectors.sha256 = kHashB;  // parse_policy refuses this; compile must too
    IdentityTable ids;
    auto c = compile_policy(p, host, ids, {}, {});
    REQUIRE_FALSE(c.ok());
    CHECK(c.message() == "'/usr/bin/curl' is pinned to two different sha256 values by the policy");
}

TEST_CASE("argv selectors are encoded as NUL-terminated arguments with their length") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/exact", "selectors": {"argv": ["a", "bc"]}},
        {"id": "spiffe://example.org/prefix", "selectors": {"argv_prefix": ["python3", "-m"]}})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.workloads.size() == 2);
    CHECK(c.workloads[0].flags == KW_SEL_ARGV);
    CHECK(c.workloads[0].argv_len == 5);
    CHECK(std::string(reinterpret_cast<const char*>(c.workloads[0].argv), 6) == std::string("a\0bc\0\0", 6));
    CHECK(c.workloads[1].flags == KW_SEL_ARGV_PREFIX);
    CHECK(c.workloads[1].argv_len == 11);
    CHECK(std::string(reinterpret_cast<const char*>(c.workloads[1].argv), 11) == std::string("python3\0-m\0", 11));
}

TEST_CASE("an argv longer than KW_ARGV_MAX is a compile error") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/a", "selectors": {"argv": ["x"]}})");
    p.workloads[0].selectors.argv->args = {std::string(KW_ARGV_MAX, 'x')};
    IdentityTable ids;
    auto c = compile_policy(p, host, ids, {}, {});
    REQUIRE_FALSE(c.ok());
    CHECK(c.message() == "/workloads/0: argv encodes to 257 bytes; the kernel compares at most 256");
}

TEST_CASE("a cgroup selector records the resolved id and level, or id 0 and a warning") {
    FakeHostView host;
    host.add_cgroup("/system.slice/app.service", 4242, 2);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"cgroup": "/system.slice/app.service"}},
        {"id": "spiffe://example.org/b", "selectors": {"cgroup": "/not/yet"}},
        {"id": "spiffe://example.org/c", "selectors": {"uid": 0}})");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(c.workloads[0].flags == KW_SEL_CGROUP);
    CHECK(c.workloads[0].cgroup_id == 4242);
    CHECK(c.workloads[0].cgroup_level == 2);
    CHECK(c.workloads[1].flags == KW_SEL_CGROUP);
    CHECK(c.workloads[1].cgroup_id == 0);
    REQUIRE(c.cgroups.size() == 3);
    REQUIRE(c.cgroups[0]);
    CHECK(c.cgroups[0]->id == 4242);
    CHECK_FALSE(c.cgroups[1]);
    CHECK_FALSE(c.cgroups[2]);
    REQUIRE(c.warnings.size() == 1);
    CHECK(c.warnings[0].path == "/workloads/1/selectors/cgroup");
    CHECK(c.warnings[0].message.find("cgroup '/not/yet' does not exist") != std::string::npos);
}

TEST_CASE("destination keys carry prefixlen, protocol, big-endian port and the v4-mapped address") {
    FakeHostView host;
    Policy p = policy_of("", R"(
        {"name": "web", "cidrs": ["10.1.0.0/16"], "ports": [443]},
        {"name": "dns6", "cidrs": ["2001:db8::/32"], "protocol": "udp"})",
                         R"({"from": "*", "to": "web"}, {"from": "*", "to": "dns6"})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.dsts.size() == 2);

    const kw_dst_key& web = c.dsts[0].first;
    CHECK(web.prefixlen == 32 + 96 + 16);
    CHECK(web.proto == 6);
    CHECK(web.port[0] == 0x01);
    CHECK(web.port[1] == 0xbb);
    const uint8_t web_addr[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 0};
    CHECK(std::memcmp(web.addr, web_addr, 16) == 0);

    const kw_dst_key& dns6 = c.dsts[1].first;
    CHECK(dns6.prefixlen == 32 + 32);
    CHECK(dns6.proto == 17);
    CHECK(dns6.port[0] == 0);
    CHECK(dns6.port[1] == 0);
    const uint8_t dns6_addr[16] = {0x20, 0x01, 0x0d, 0xb8};
    CHECK(std::memcmp(dns6.addr, dns6_addr, 16) == 0);
    CHECK(web._pad == 0);
}

TEST_CASE("a more specific destination on another port never hides a broader one") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/ops", "selectors": {"uid": 0}})", R"(
        {"name": "ssh", "cidrs": ["10.0.0.0/8"], "ports": [22]},
        {"name": "db", "cidrs": ["10.0.0.5/32"], "ports": [5432]})",
                         R"({"from": "spiffe://example.org/ops", "to": "ssh"})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.dsts.size() == 2);
    CHECK(dset_names(c, p, lookup(c, KW_PROTO_TCP, 22, "10.0.0.5")) == std::vector<std::string>{"ssh"});
    CHECK(dset_names(c, p, lookup(c, KW_PROTO_TCP, 5432, "10.0.0.5")) == std::vector<std::string>{"db"});
    CHECK_FALSE(lookup(c, KW_PROTO_TCP, 5432, "10.0.0.6"));
    CHECK_FALSE(lookup(c, KW_PROTO_TCP, 0, "10.0.0.5"));

    uint32_t ops = 1;
    CHECK(gate_allows(c, ops, KW_PROTO_TCP, 22, "10.0.0.5"));
    CHECK_FALSE(gate_allows(c, ops, KW_PROTO_TCP, 5432, "10.0.0.5"));
}

TEST_CASE("a connection must be allowed by every destination that contains it") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/billing", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/web", "selectors": {"uid": 2}})",
                         R"(
        {"name": "internal", "cidrs": ["10.0.0.0/8"]},
        {"name": "db", "cidrs": ["10.0.0.5/32"], "ports": [5432]})",
                         R"({"from": "spiffe://example.org/billing", "to": "db"}, {"from": "*", "to": "internal"})");
    IdentityTable ids;
    CompiledPolicy c = compile_ok(p, host, ids);
    uint32_t billing = *ids.find("spiffe://example.org/billing");
    uint32_t web = *ids.find("spiffe://example.org/web");

    auto port_node = lookup(c, KW_PROTO_TCP, 5432, "10.0.0.5");
    auto any_node = lookup(c, KW_PROTO_TCP, 0, "10.0.0.5");
    CHECK(dset_names(c, p, port_node) == std::vector<std::string>{"db"});
    CHECK(port_node->flags == 0);
    CHECK(dset_names(c, p, any_node) == std::vector<std::string>{"internal"});
    CHECK(any_node->flags == KW_DSET_ANY_ALLOWED);
    CHECK(any_node->any_rule == 1);

    REQUIRE(c.allows.size() == 1);
    CHECK(c.allows[0].first.ident == billing);
    CHECK(c.allows[0].first.dset == port_node->dset);
    CHECK(c.allows[0].second.rule == 0);

    CHECK(gate_allows(c, billing, KW_PROTO_TCP, 5432, "10.0.0.5"));
    CHECK_FALSE(gate_allows(c, web, KW_PROTO_TCP, 5432, "10.0.0.5"));
    CHECK(gate_allows(c, web, KW_PROTO_TCP, 443, "10.0.0.5"));
    CHECK(gate_allows(c, KW_IDENT_NONE, KW_PROTO_TCP, 443, "10.9.9.9"));
}

TEST_CASE("overlapping destinations on one port give the nested node both, allowed only when both allow") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}})",
                         R"(
        {"name": "x", "cidrs": ["10.0.0.0/8"], "ports": [443]},
        {"name": "y", "cidrs": ["10.1.0.0/16"], "ports": [443]})",
                         R"(
        {"from": "spiffe://example.org/a", "to": "x"},
        {"from": "spiffe://example.org/a", "to": "y"},
        {"from": "spiffe://example.org/b", "to": "y"})");
    IdentityTable ids;
    CompiledPolicy c = compile_ok(p, host, ids);
    uint32_t a = *ids.find("spiffe://example.org/a");
    uint32_t b = *ids.find("spiffe://example.org/b");

    auto outer = lookup(c, KW_PROTO_TCP, 443, "10.2.0.1");
    auto nested = lookup(c, KW_PROTO_TCP, 443, "10.1.0.1");
    CHECK(dset_names(c, p, outer) == std::vector<std::string>{"x"});
    CHECK(dset_names(c, p, nested) == std::vector<std::string>{"x", "y"});

    CHECK(allowed(c, a, outer->dset));
    CHECK(allowed(c, a, nested->dset));
    CHECK_FALSE(allowed(c, b, nested->dset));  // b is allowed to y, but not to x
    CHECK_FALSE(allowed(c, b, outer->dset));
    CHECK(c.allows.size() == 2);
}

TEST_CASE("an allow reports the rule for the first member, a \"*\" rule included") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/a", "selectors": {"uid": 1}})", R"(
        {"name": "x", "cidrs": ["10.0.0.0/8"], "ports": [443]},
        {"name": "y", "cidrs": ["10.1.0.0/16"], "ports": [443]})",
                         R"(
        {"from": "spiffe://example.org/a", "to": "y"},
        {"from": "*", "to": "x"})");
    IdentityTable ids;
    CompiledPolicy c = compile_ok(p, host, ids);
    auto nested = lookup(c, KW_PROTO_TCP, 443, "10.1.0.1");
    CHECK(nested->flags == 0);  // y has no "*" rule
    auto entry =
        std::find_if(c.allows.begin(), c.allows.end(), [&](const auto& a) { return a.first.dset == nested->dset; });
    REQUIRE(entry != c.allows.end());
    CHECK(entry->first.ident == *ids.find("spiffe://example.org/a"));
    CHECK(entry->second.rule == 1);
}

TEST_CASE("destination sets with the same members share one dset id") {
    FakeHostView host;
    Policy p = policy_of("", R"(
        {"name": "web", "cidrs": ["192.0.2.0/24", "2001:db8::/48"], "ports": [80, 443]},
        {"name": "dns", "cidrs": ["192.0.2.53"], "ports": [53], "protocol": "udp"})",
                         R"({"from": "*", "to": "web"})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.dsts.size() == 5);  // web: 2 ports x 2 cidrs; dns: 1
    REQUIRE(c.dset_members.size() == 2);
    CHECK(c.dset_members[0] == std::vector<uint32_t>{0});
    CHECK(c.dset_members[1] == std::vector<uint32_t>{1});
    for (int i = 0; i < 4; ++i) {
        CHECK(c.dsts[i].second.dset == 0);
        CHECK(c.dsts[i].second.flags == KW_DSET_ANY_ALLOWED);
    }
    CHECK(c.dsts[4].second.dset == 1);
    CHECK(c.dsts[4].second.flags == 0);
}

TEST_CASE("identity ids stay the same across compiles that share the identity table") {
    FakeHostView host;
    IdentityTable ids;
    CompiledPolicy first = compile_ok(policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}},
        {"id": "spiffe://example.org/a", "selectors": {"uid": 3}})"),
                                      host, ids);
    CHECK(first.workloads[0].ident == 1);
    CHECK(first.workloads[1].ident == 2);
    CHECK(first.workloads[2].ident == 1);

    CompiledPolicy second = compile_ok(policy_of(R"(
        {"id": "spiffe://example.org/c", "selectors": {"uid": 4}},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}})"),
                                       host, ids);
    CHECK(second.workloads[0].ident == 3);
    CHECK(second.workloads[1].ident == 2);
    CHECK(ids.name(1) == "spiffe://example.org/a");
    CHECK(ids.all().size() == 3);
}

TEST_CASE("a restored identity table continues after the highest id and never hands out 0") {
    IdentityTable ids;
    ids.restore(7, "spiffe://example.org/old");
    ids.restore(3, "spiffe://example.org/older");
    ids.restore(KW_IDENT_NONE, "spiffe://example.org/bogus");
    CHECK(ids.find("spiffe://example.org/old") == 7u);
    CHECK_FALSE(ids.find("spiffe://example.org/bogus"));
    CHECK_FALSE(ids.name(0));
    CHECK(ids.id_for("spiffe://example.org/new") == 8);
    CHECK(ids.id_for("spiffe://example.org/older") == 3);
}

TEST_CASE("config carries mode, log_allowed and the first 16 hex digits of the revision") {
    FakeHostView host;
    Policy p = parse_ok(R"({"version": 1, "trust_domain": "example.org", "mode": "audit", "log_allowed": true})");
    p.revision = "0123456789abcdef" + std::string(48, 'f');
    CompiledPolicy c = compile_ok(p, host);
    CHECK(c.config.mode == KW_MODE_AUDIT);
    CHECK(c.config.log_allowed == 1);
    CHECK(c.config.revision == 0x0123456789abcdefull);

    p.revision.clear();
    p.mode = Mode::Enforce;
    CompiledPolicy unrevised = compile_ok(p, host);
    CHECK(unrevised.config.revision == 0);
    CHECK(unrevised.config.mode == KW_MODE_ENFORCE);
    REQUIRE(unrevised.lists.size() == 1);  // list 0 exists even when empty
}

TEST_CASE("the first workload in policy order whose selectors all match wins") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/root-any", "selectors": {"uid": 0, "gid": 0}},
        {"id": "spiffe://example.org/curl-1000", "selectors": {"exe": "/usr/bin/curl", "uid": 1000}},
        {"id": "spiffe://example.org/curl", "selectors": {"exe": "/usr/bin/curl"}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 11};
    facts.gid = 5;

    facts.uid = 1000;
    CHECK(match_workload(c, facts) == 1u);
    facts.uid = 0;
    CHECK(match_workload(c, facts) == 2u);
    facts.gid = 0;
    CHECK(match_workload(c, facts) == 0u);  // list 0 is searched too, and policy order wins
    facts.gid = 5;
    facts.exe = kw_file_key{0x800001, 99};
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("a lower-index match in an earlier list is not displaced by a later list's match") {
    FakeHostView host;
    host.add_file("/usr/bin/curl", 11, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/curl", "selectors": {"exe": "/usr/bin/curl"}},
        {"id": "spiffe://example.org/root", "selectors": {"uid": 0}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 11};
    CHECK(match_workload(c, facts) == 0u);
}

TEST_CASE("a cgroup selector matches processes in that cgroup or below it") {
    FakeHostView host;
    host.add_cgroup("/system.slice/app.service", 42, 2);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/app", "selectors": {"cgroup": "/system.slice/app.service"}},
        {"id": "spiffe://example.org/missing", "selectors": {"cgroup": "/gone"}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.cgroup_ancestors = {1, 10, 42};
    CHECK(match_workload(c, facts) == 0u);
    facts.cgroup_ancestors = {1, 10, 42, 99};
    CHECK(match_workload(c, facts) == 0u);
    facts.cgroup_ancestors = {1, 10, 43};
    CHECK_FALSE(match_workload(c, facts));
    facts.cgroup_ancestors = {1, 42};
    CHECK_FALSE(match_workload(c, facts));
    facts.cgroup_ancestors = {0};  // the unresolved cgroup (id 0) matches nothing
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("argv must equal an exact selector but only start with a prefix selector") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/exact", "selectors": {"argv": ["python3", "app.py"]}},
        {"id": "spiffe://example.org/prefix", "selectors": {"argv_prefix": ["python3", "app.py"]}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.argv = std::string("python3\0app.py\0", 15);
    CHECK(match_workload(c, facts) == 0u);
    facts.argv = std::string("python3\0app.py\0--debug\0", 23);
    CHECK(match_workload(c, facts) == 1u);
    facts.argv = std::string("python3\0app.pyc\0", 16);  // whole arguments only
    CHECK_FALSE(match_workload(c, facts));
    facts.argv = std::string("python3\0", 8);
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("a script workload matches through the script's list with the interpreter checked") {
    FakeHostView host;
    host.add_file("/usr/bin/python3", 12, kHashA);
    host.add_file("/opt/app.py", 13, kHashB);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/py", "selectors": {"exe": "/usr/bin/python3", "argv": ["python3"]}},
        {"id": "spiffe://example.org/app", "selectors": {"exe": "/usr/bin/python3", "script": "/opt/app.py"}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 12};
    facts.script = kw_file_key{0x800001, 13};
    facts.argv = std::string("python3\0/opt/app.py\0", 20);
    CHECK(match_workload(c, facts) == 1u);
    facts.exe = kw_file_key{0x800001, 14};  // another interpreter running the same script
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("an exe selector on an interpreter or a general-purpose tool alone draws a lint warning, with a script or argv none") {
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"exe": "/usr/bin/python3"}},
        {"id": "spiffe://example.org/b", "selectors": {"exe": "/usr/bin/python3", "script": "/opt/b.py"}},
        {"id": "spiffe://example.org/c", "selectors": {"exe": "/bin/bash", "argv_prefix": ["bash", "/opt/c.sh"]}},
        {"id": "spiffe://example.org/d", "selectors": {"exe": "/usr/lib/jvm/bin/java", "uid": 7}},
        {"id": "spiffe://example.org/e", "selectors": {"exe": "/usr/bin/curl"}},
        {"id": "spiffe://example.org/f", "selectors": {"exe": "/usr/bin/pythonista"}},
        {"id": "spiffe://example.org/g", "selectors": {"exe": "/usr/bin/curl", "argv_prefix": ["curl", "https://ledger"]}})");
    auto advice = lint_policy(p);
    REQUIRE(advice.size() == 3);
    CHECK(advice[0].path == "/workloads/0/selectors/exe");
    CHECK(advice[0].message ==
          "exe selector on interpreter 'python3' alone hands the identity to any code it runs: add a script or argv "
          "selector");
    CHECK(advice[1].path == "/workloads/3/selectors/exe");
    CHECK(advice[1].message.find("'java'") != std::string::npos);
    CHECK(advice[2].path == "/workloads/4/selectors/exe");
    CHECK(advice[2].message ==
          "exe selector on general-purpose tool 'curl' alone: whoever can run it under the selected uid and cgroup "
          "gets this identity for any purpose: add an argv or argv_prefix selector");
}

TEST_CASE("a set with a mutual-TLS member is flagged for the kernel: only the agent connects there") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/billing", "selectors": {"uid": 1}})",
                         R"(
        {"name": "internal", "cidrs": ["10.0.0.0/8"]},
        {"name": "ledger", "cidrs": ["10.0.0.7/32"], "ports": [8443], "tls": "mutual",
         "identity": "spiffe://example.org/ledger"},
        {"name": "ledger-too", "cidrs": ["10.0.0.0/24"], "ports": [8443]})",
                         R"({"from": "spiffe://example.org/billing", "to": "ledger"},
                            {"from": "*", "to": "internal"}, {"from": "*", "to": "ledger-too"})");
    CompiledPolicy c = compile_ok(p, host);
    auto ledger = lookup(c, KW_PROTO_TCP, 8443, "10.0.0.7");
    CHECK(dset_names(c, p, ledger) == std::vector<std::string>{"ledger", "ledger-too"});
    CHECK((ledger->flags & KW_DSET_MTLS) != 0);
    // Neighbours without a mutual-TLS member keep their plain flags.
    CHECK((lookup(c, KW_PROTO_TCP, 8443, "10.0.0.8")->flags & KW_DSET_MTLS) == 0);
    CHECK((lookup(c, KW_PROTO_TCP, 0, "10.0.0.7")->flags & KW_DSET_MTLS) == 0);
}

// ---- process binding: allow_env, allow_debuggers, the process's condition -----------

namespace {

Policy with_debuggers(const std::string& workloads, const std::string& debuggers) {
    return parse_ok(R"({"version": 1, "trust_domain": "example.org", "workloads": [)" + workloads +
                    R"(], "allow_debuggers": [)" + debuggers + "]}");
}

kw_debugger_key ident_debugger(uint32_t ident) {
    kw_debugger_key key{};
    key.kind = KW_DEBUGGER_IDENT;
    key.ident = ident;
    return key;
}

kw_debugger_key exe_debugger(uint64_t ino) {
    kw_debugger_key key{};
    key.kind = KW_DEBUGGER_EXE;
    key.exe = kw_file_key{0x800001, ino};
    return key;
}

// kw_debuggers as a comparable list: (kind, ident, dev, ino, index).
using DebuggerRow = std::tuple<uint32_t, uint32_t, uint64_t, uint64_t, uint32_t>;
std::vector<DebuggerRow> rows(const std::vector<std::pair<kw_debugger_key, uint32_t>>& debuggers) {
    std::vector<DebuggerRow> out;
    for (const auto& [k, index] : debuggers) out.emplace_back(k.kind, k.ident, k.exe.dev, k.exe.ino, index);
    return out;
}

}  // namespace

TEST_CASE("allow_env becomes the workload's env_allow bits, and no selector flag") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/none", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/preload", "selectors": {"uid": 2}, "allow_env": ["LD_PRELOAD"]},
        {"id": "spiffe://example.org/audit-path", "selectors": {"uid": 3},
         "allow_env": ["LD_LIBRARY_PATH", "LD_AUDIT"]})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.workloads.size() == 3);
    CHECK(c.workloads[0].flags == KW_SEL_UID);
    CHECK(c.workloads[0].env_allow == 0);
    CHECK(c.workloads[1].env_allow == KW_ENV_LD_PRELOAD);
    CHECK(c.workloads[2].env_allow == (KW_ENV_LD_AUDIT | KW_ENV_LD_LIBRARY_PATH));
    CHECK(c.workloads[2].flags == KW_SEL_UID);
}

TEST_CASE("allow_env names of interpreters and families become their kw_env_var bits") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/py", "selectors": {"uid": 1}, "allow_env": ["PYTHON*", "BASH_ENV"]},
        {"id": "spiffe://example.org/jvm", "selectors": {"uid": 2},
         "allow_env": ["JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "LD_*"]})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.workloads.size() == 2);
    CHECK(c.workloads[0].env_allow == (KW_ENV_PYTHON | KW_ENV_BASH_ENV));
    CHECK(c.workloads[1].env_allow == (KW_ENV_JAVA_TOOL_OPTIONS | KW_ENV_JAVA_OPTIONS | KW_ENV_JDK_JAVA_OPTIONS |
                                       KW_ENV_CLASSPATH | KW_ENV_LD_OTHER));
}

// kw_code as comparable rows: (set, ino, ctime_sec).
std::vector<std::tuple<uint32_t, uint64_t, int64_t>> code_rows(const CompiledPolicy& c) {
    std::vector<std::tuple<uint32_t, uint64_t, int64_t>> out;
    for (const auto& [k, v] : c.code) out.emplace_back(k.set, k.ino, v.ctime_sec);
    return out;
}

TEST_CASE("each identity's code set holds its exe, loader, libraries and allow_code, once each") {
    FakeHostView host;
    host.add_file("/usr/bin/app", 10, std::string(64, 'a'));
    host.add_file("/lib64/ld.so", 11, std::string(64, 'b'), 2000);
    host.add_file("/lib/libc.so.6", 12, std::string(64, 'c'));
    host.add_file("/opt/plugin.so", 13, std::string(64, 'd'));
    host.add_closure("/usr/bin/app", {"/lib64/ld.so", "/lib/libc.so.6"});
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/app", "selectors": {"exe": "/usr/bin/app"}, "allow_code": ["/opt/plugin.so"]},
        {"id": "spiffe://example.org/app", "selectors": {"exe": "/usr/bin/app", "uid": 3}},
        {"id": "spiffe://example.org/any", "selectors": {"uid": 2}},
        {"id": "spiffe://example.org/gone", "selectors": {"exe": "/usr/bin/app"}, "allow_code": ["/opt/missing"]})");
    CompiledPolicy c = compile_ok(p, host);
    const uint32_t app = c.workloads[0].ident, any = c.workloads[2].ident, gone = c.workloads[3].ident;
    CHECK(c.workloads[1].code_set == app);
    CHECK(c.workloads[2].code_set == any);
    using Row = std::tuple<uint32_t, uint64_t, int64_t>;
    std::vector<Row> want = {{app, 10, 1000},  {app, 11, 2000},  {app, 12, 1000}, {app, 13, 1000},
                             {any, 0, 0},      {gone, 10, 1000}, {gone, 11, 2000}, {gone, 12, 1000}};
    std::sort(want.begin(), want.end());
    auto have = code_rows(c);
    std::sort(have.begin(), have.end());
    CHECK(have == want);
    // The missing allow_code entry is a warning naming it; the set simply lacks it.
    bool warned = false;
    for (const auto& w : c.warnings)
        warned |= w.path == "/workloads/3/allow_code/0" && w.message.find("/opt/missing") != std::string::npos;
    CHECK(warned);
}

TEST_CASE("a policy without allow_debuggers compiles to no debugger entry") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/a", "selectors": {"uid": 1}})");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(c.debuggers.empty());
}

TEST_CASE("debuggers compile to identity keys and file keys, each with its policy index") {
    FakeHostView host;
    host.add_file("/usr/bin/gdb", 21, kHashA);
    host.add_file("/usr/bin/strace", 22, kHashB);
    Policy p = with_debuggers(R"(
        {"id": "spiffe://example.org/app", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/ops/debug", "selectors": {"uid": 0}})",
                              R"("/usr/bin/strace", "spiffe://example.org/ops/debug", "/usr/bin/gdb")");
    IdentityTable ids;
    CompiledPolicy c = compile_ok(p, host, ids);
    uint32_t debug = *ids.find("spiffe://example.org/ops/debug");
    CHECK(debug == 2);
    CHECK(rows(c.debuggers) == rows({{exe_debugger(22), 0}, {ident_debugger(debug), 1}, {exe_debugger(21), 2}}));
    CHECK(c.warnings.empty());
    // The file of a debugger is located, not pinned: it never becomes a candidate file.
    CHECK(c.pins.empty());
    CHECK(c.files.empty());
}

TEST_CASE("a debugger path that cannot be resolved is a warning and lets nobody in") {
    FakeHostView host;
    host.add_file("/usr/bin/gdb", 21, kHashA);
    host.fail_file("/opt/dir", "'/opt/dir' is not a regular file: only files can be pinned");
    Policy p = with_debuggers(R"({"id": "spiffe://example.org/app", "selectors": {"uid": 1}})",
                              R"("/usr/bin/lldb", "/opt/dir", "/usr/bin/gdb")");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(rows(c.debuggers) == rows({{exe_debugger(21), 2}}));
    REQUIRE(c.warnings.size() == 2);
    CHECK(c.warnings[0].path == "/allow_debuggers/0");
    CHECK(c.warnings[0].message ==
          "debugger '/usr/bin/lldb' lets nobody in: cannot open '/usr/bin/lldb' to pin it: No such file or directory");
    CHECK(c.warnings[1].path == "/allow_debuggers/1");
    CHECK(c.warnings[1].message ==
          "debugger '/opt/dir' lets nobody in: '/opt/dir' is not a regular file: only files can be pinned");
}

TEST_CASE("a debugger path that a workload pins is looked at once, even when it fails its pin") {
    FakeHostView host;
    host.add_file("/usr/bin/gdb", 21, kHashB);
    Policy p = with_debuggers(
        R"({"id": "spiffe://example.org/debug", "selectors": {"exe": "/usr/bin/gdb", "sha256": ")" + kHashA + R"("}})",
        R"("/usr/bin/gdb")");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(host.pins_requested == 1);
    REQUIRE(c.pins.size() == 1);
    CHECK_FALSE(c.pins[0].active);  // the workload has no identity, the debugger's file is still that file
    CHECK(rows(c.debuggers) == rows({{exe_debugger(21), 0}}));
}

TEST_CASE("two debugger paths that reach one file give one entry with the first index") {
    FakeHostView host;
    host.add_file("/usr/bin/gdb", 21, kHashA);
    host.add_file("/bin/gdb", 21, kHashA);
    Policy p = with_debuggers(R"({"id": "spiffe://example.org/app", "selectors": {"uid": 1}})",
                              R"("/bin/gdb", "/usr/bin/gdb")");
    CompiledPolicy c = compile_ok(p, host);
    CHECK(rows(c.debuggers) == rows({{exe_debugger(21), 0}}));
}

TEST_CASE("a loader variable the workload does not allow refuses it; a later workload that allows it matches") {
    FakeHostView host;
    host.add_file("/usr/bin/app", 31, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/strict", "selectors": {"exe": "/usr/bin/app"}},
        {"id": "spiffe://example.org/libpath", "selectors": {"exe": "/usr/bin/app"}, "allow_env": ["LD_LIBRARY_PATH"]},
        {"id": "spiffe://example.org/preload", "selectors": {"uid": 1000}, "allow_env": ["LD_PRELOAD"]})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 31};
    facts.uid = 1000;

    CHECK(match_workload(c, facts) == 0u);
    facts.code_env = KW_ENV_LD_LIBRARY_PATH;
    CHECK(match_workload(c, facts) == 1u);
    facts.code_env = KW_ENV_LD_PRELOAD;
    CHECK(match_workload(c, facts) == 2u);
    facts.code_env = KW_ENV_LD_PRELOAD | KW_ENV_LD_LIBRARY_PATH;  // no entry allows both
    CHECK_FALSE(match_workload(c, facts));
    facts.code_env = KW_ENV_LD_AUDIT;
    CHECK_FALSE(match_workload(c, facts));
    facts.uid = 0;
    facts.code_env = KW_ENV_LD_PRELOAD;
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("an interpreter's code-loading variable refuses a workload unless its allow_env lists it") {
    FakeHostView host;
    host.add_file("/usr/bin/app", 31, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/strict", "selectors": {"exe": "/usr/bin/app"}},
        {"id": "spiffe://example.org/python", "selectors": {"exe": "/usr/bin/app"}, "allow_env": ["PYTHON*"]})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 31};
    facts.code_env = KW_ENV_BASH_ENV;
    CHECK_FALSE(match_workload(c, facts));
    facts.code_env = KW_ENV_PYTHON;
    CHECK(match_workload(c, facts) == 1u);
    facts.code_env = KW_ENV_PYTHON | KW_ENV_PERL;
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("an unreadable environment is refused even by a workload that allows every loader variable") {
    FakeHostView host;
    Policy p = policy_of(R"({"id": "spiffe://example.org/lax", "selectors": {"uid": 1},
                             "allow_env": ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"]})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.uid = 1;
    facts.code_env = KW_ENV_LD_PRELOAD | KW_ENV_LD_AUDIT | KW_ENV_LD_LIBRARY_PATH;
    CHECK(match_workload(c, facts) == 0u);
    facts.env_unread = true;
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("an anonymous exe or a tracer refuses every workload, whatever it allows") {
    FakeHostView host;
    host.add_file("/usr/bin/app", 31, kHashA);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/app", "selectors": {"exe": "/usr/bin/app"}},
        {"id": "spiffe://example.org/any", "selectors": {"uid": 1},
         "allow_env": ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"]})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.exe = kw_file_key{0x800001, 31};
    facts.uid = 1;
    CHECK(match_workload(c, facts) == 0u);
    facts.anon_exe = true;
    CHECK_FALSE(match_workload(c, facts));
    facts.anon_exe = false;
    facts.traced = true;
    CHECK_FALSE(match_workload(c, facts));
}

TEST_CASE("allowing a variable that names code draws a lint warning naming it, LD_LIBRARY_PATH none") {
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1}, "allow_env": ["LD_LIBRARY_PATH"]},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}, "allow_env": ["LD_AUDIT"]},
        {"id": "spiffe://example.org/c", "selectors": {"exe": "/usr/bin/python3"}, "allow_env": ["LD_PRELOAD"]})");
    auto advice = lint_policy(p);
    REQUIRE(advice.size() == 3);
    CHECK(advice[0].path == "/workloads/1/allow_env");
    CHECK(advice[0].message == "LD_AUDIT allowed: any process of this identity may run injected code");
    CHECK(advice[1].path == "/workloads/2/allow_env");
    CHECK(advice[1].message == "LD_PRELOAD allowed: any process of this identity may run injected code");
    CHECK(advice[2].path == "/workloads/2/selectors/exe");

    Policy q = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1},
         "allow_env": ["GLIBC_TUNABLES", "LD_*", "LD_LIBRARY_PATH"]},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}, "allow_env": ["NODE_*", "BASH_ENV", "PYTHON*"]})");
    advice = lint_policy(q);
    REQUIRE(advice.size() == 1);
    CHECK(advice[0].path == "/workloads/1/allow_env");
    CHECK(advice[0].message == "BASH_ENV, PYTHON* and NODE_* allowed: any process of this identity may run injected code");
}

TEST_CASE("allow_raw_sockets and allow_core_dumps become workload flags") {
    FakeHostView host;
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/none", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/raw", "selectors": {"uid": 2}, "allow_raw_sockets": true},
        {"id": "spiffe://example.org/core", "selectors": {"uid": 3}, "allow_core_dumps": true,
         "allow_raw_sockets": false})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.workloads.size() == 3);
    CHECK(c.workloads[0].flags == KW_SEL_UID);
    CHECK(c.workloads[1].flags == (KW_SEL_UID | KW_SEL_ALLOW_RAW_SOCKETS));
    CHECK(c.workloads[2].flags == (KW_SEL_UID | KW_SEL_ALLOW_CORE_DUMPS));
}

TEST_CASE("the cgroups that selectors name are governed, each once, missing ones not") {
    FakeHostView host;
    host.add_cgroup("/system.slice/app.service", 42, 2);
    host.add_cgroup("/kw", 7, 1);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"cgroup": "/system.slice/app.service"}},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 1}},
        {"id": "spiffe://example.org/c", "selectors": {"cgroup": "/kw", "uid": 2}},
        {"id": "spiffe://example.org/d", "selectors": {"cgroup": "/system.slice/app.service", "uid": 3}},
        {"id": "spiffe://example.org/e", "selectors": {"cgroup": "/not/yet"}})");
    CompiledPolicy c = compile_ok(p, host);
    REQUIRE(c.governed_cgroups.size() == 2);
    CHECK(c.governed_cgroups[0] == std::pair<uint64_t, uint32_t>{42, 2});
    CHECK(c.governed_cgroups[1] == std::pair<uint64_t, uint32_t>{7, 1});
}

TEST_CASE("allowing raw sockets or core dumps draws a lint warning") {
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1}, "allow_raw_sockets": true},
        {"id": "spiffe://example.org/b", "selectors": {"uid": 2}, "allow_core_dumps": true},
        {"id": "spiffe://example.org/c", "selectors": {"uid": 3}, "allow_raw_sockets": false})");
    auto advice = lint_policy(p);
    REQUIRE(advice.size() == 2);
    CHECK(advice[0].path == "/workloads/0/allow_raw_sockets");
    CHECK(advice[0].message.starts_with("raw and packet sockets allowed"));
    CHECK(advice[1].path == "/workloads/1/allow_core_dumps");
    CHECK(advice[1].message.starts_with("core dumps allowed"));
}

TEST_CASE("allow_code on a whole system directory or under /tmp draws a lint warning; a plugin directory none") {
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/a", "selectors": {"uid": 1},
         "allow_code": ["/usr/lib/python3.11/lib-dynload", "/usr/lib/x86_64-linux-gnu", "/tmp/plugins/x.so"]})");
    auto advice = lint_policy(p);
    REQUIRE(advice.size() == 2);
    CHECK(advice[0].path == "/workloads/0/allow_code/1");
    CHECK(advice[0].message.starts_with("'/usr/lib/x86_64-linux-gnu' opens every file of a system directory"));
    CHECK(advice[1].path == "/workloads/0/allow_code/2");
    CHECK(advice[1].message.starts_with("'/tmp/plugins/x.so' is under /tmp, where other users may write"));
}

TEST_CASE("files an argv names are sources: pinned, keyed by identity and real path, never exec'd") {
    FakeHostView host;
    host.add_file("/usr/bin/python3", 1, kHashA);
    host.add_file("/srv/app.py", 5, kHashB);
    host.set_arg_path("/srv/app.py", ArgPath{ArgPath::File, "/srv/releases/7/app.py", ""});
    host.add_file("/etc/app.toml", 6, kHashA);  // an option's value names a file too
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/app", "selectors": {"exe": "/usr/bin/python3",
                                                         "argv_prefix": ["/usr/bin/python3", "/srv/app.py", "-v", "rel.py",
                                                                         "--config=/etc/app.toml"]}},
        {"id": "spiffe://example.org/plain", "selectors": {"argv": ["sleep", "30"]}})");
    IdentityTable ids;
    CompiledPolicy c = compile_ok(p, host, ids);
    CHECK((c.workloads[0].flags & KW_SEL_SOURCES) != 0);
    CHECK((c.workloads[1].flags & KW_SEL_SOURCES) == 0);  // argv[0] and relative arguments are no sources
    REQUIRE(c.sources.size() == 2);
    CHECK(c.sources[0].first.set == *ids.find("spiffe://example.org/app"));
    CHECK(std::string(c.sources[0].first.path) == "/srv/releases/7/app.py");
    CHECK(c.sources[0].second.file.ino == 5);
    CHECK(std::string(c.sources[1].first.path) == "/etc/app.toml");
    CHECK(c.sources[1].second.file.ino == 6);
    CHECK(c.sources[0].second.ctime_sec == 1000);
    auto source = std::find_if(c.pins.begin(), c.pins.end(), [](const auto& pin) { return pin.role == PinRole::Source; });
    REQUIRE(source != c.pins.end());
    CHECK(source->path == "/srv/app.py");
    CHECK(source->pinned_sha256 == kHashB);
    CHECK(source->active);
    // Read, not exec'd: no candidate list of its own.
    CHECK(std::none_of(c.files.begin(), c.files.end(), [](const auto& f) { return f.first.ino == 5; }));
    CHECK(members(c.lists[file_val(c, 1).list_id]) == std::vector<uint32_t>{0});
}

TEST_CASE("a source that someone but root can replace, or that is missing, keeps its workload from matching") {
    FakeHostView host;
    host.add_file("/home/u/app.py", 5, kHashB);
    host.set_arg_path("/home/u/app.py",
                      ArgPath{ArgPath::File, "/home/u/app.py", "'/home/u/app.py' cannot be pinned: uid 1000 owns it"});
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/owned", "selectors": {"argv": ["python3", "/home/u/app.py"]}},
        {"id": "spiffe://example.org/missing", "selectors": {"argv_prefix": ["python3", "/srv/gone.py"]}},
        {"id": "spiffe://example.org/dir", "selectors": {"argv": ["postgres", "-D", "/var/lib/pg"]}})");
    host.set_arg_path("/var/lib/pg", ArgPath{ArgPath::Directory, "", ""});
    CompiledPolicy c = compile_ok(p, host);
    CHECK(c.sources.empty());
    // Neither of the first two is a candidate anywhere; the third matches as before.
    CHECK(members(c.lists[KW_LIST_ANY]) == std::vector<uint32_t>{2});
    CHECK((c.workloads[2].flags & KW_SEL_SOURCES) == 0);
    std::map<std::string, std::string> warned;
    for (const auto& w : c.warnings) warned[w.path] = w.message;
    CHECK(warned["/workloads/0/selectors/argv/1"] ==
          "workload spiffe://example.org/owned matches no process: '/home/u/app.py' cannot be pinned: uid 1000 owns it");
    CHECK(warned["/workloads/1/selectors/argv_prefix/1"].find("cannot open '/srv/gone.py'") != std::string::npos);
    CHECK(warned["/workloads/2/selectors/argv/2"] ==
          "workload spiffe://example.org/dir: argv names the directory '/var/lib/pg'; the files in it are not pinned");
}

TEST_CASE("from /proc, a process in another mount namespace or root is refused the entries whose argv names files") {
    FakeHostView host;
    host.add_file("/srv/app.py", 5, kHashB);
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/app", "selectors": {"argv_prefix": ["python3", "/srv/app.py"]}},
        {"id": "spiffe://example.org/any", "selectors": {"argv_prefix": ["python3"]}})");
    CompiledPolicy c = compile_ok(p, host);
    ProcessFacts facts;
    facts.argv = std::string("python3\0/srv/app.py\0", 21);
    CHECK(match_workload(c, facts) == 0u);
    facts.elsewhere = true;
    CHECK(match_workload(c, facts) == 1u);  // the entry that names no file still matches
}

TEST_CASE("a relative argv argument that looks like a file draws a lint warning; options and module names do not") {
    Policy p = policy_of(R"(
        {"id": "spiffe://example.org/rel", "selectors": {"argv": ["python3", "app.py", "-m", "conf/x.yaml"]}},
        {"id": "spiffe://example.org/abs", "selectors": {"argv_prefix": ["python3", "/srv/app.py", "--log=a.py", "http.server"]}})");
    auto advice = lint_policy(p);
    std::vector<std::string> at;
    for (const auto& a : advice)
        if (a.message.find("relative path") != std::string::npos) at.push_back(a.path);
    CHECK(at == std::vector<std::string>{"/workloads/0/selectors/argv/1", "/workloads/0/selectors/argv/3"});
    CHECK(std::any_of(advice.begin(), advice.end(), [](const auto& a) {
        return a.message == "'app.py' is a relative path: the caller's working directory decides which file it names, "
                            "and it is not pinned; use the absolute path";
    }));
}

TEST_CASE("lifecycle events mark the sets of the destinations that ask, or every set when the policy does") {
    FakeHostView host;
    const char* dests = R"("destinations": [
        {"name": "db", "cidrs": ["10.0.0.0/24"], "ports": [5432], "lifecycle_events": true},
        {"name": "web", "cidrs": ["10.0.1.0/24"], "ports": [443]},
        {"name": "inner", "cidrs": ["10.0.0.7/32"], "ports": [5432]}])";
    auto lifecycle_of = [](const CompiledPolicy& c) {
        std::map<std::string, bool> out;
        for (const auto& [key, val] : c.dsts) {
            std::string names;
            for (uint32_t d : c.dset_members[val.dset]) names += std::to_string(d);
            out[names] = (val.flags & KW_DSET_LIFECYCLE) != 0;
        }
        return out;
    };
    CompiledPolicy some = compile_ok(
        parse_ok(std::string(R"({"version": 1, "trust_domain": "example.org", )") + dests + "}"), host);
    CHECK(some.lifecycle);
    // db alone, and db with inner (a member asks): marked; web and nothing else: not.
    CHECK(lifecycle_of(some) == std::map<std::string, bool>{{"0", true}, {"02", true}, {"1", false}});
    CompiledPolicy all = compile_ok(
        parse_ok(std::string(R"({"version": 1, "trust_domain": "example.org", "lifecycle_events": true, )") + dests + "}"),
        host);
    CHECK(lifecycle_of(all) == std::map<std::string, bool>{{"0", true}, {"02", true}, {"1", true}});
    CompiledPolicy none = compile_ok(parse_ok(R"({"version": 1, "trust_domain": "example.org", "destinations": [
        {"name": "web", "cidrs": ["10.0.1.0/24"], "ports": [443]}]})"), host);
    CHECK_FALSE(none.lifecycle);
    CHECK(lifecycle_of(none) == std::map<std::string, bool>{{"0", false}});
}
