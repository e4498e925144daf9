// compile_policy against a reference compiler written as the README states the rules,
// with no care for cost: on thousands of small random policies (nested and overlapping
// CIDRs of both families, ports, protocols, "*" and per-identity rules, mutual TLS, hard
// links), the destination map, its sets, the allow map and the file entries must be the
// same bytes in the same order.
#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/compile.h"
#include "core/prefix.h"

using namespace kw::core;

namespace {

// Every file exists; /bin/p0 and /bin/p1 are one inode (a hard link).
class LinkedHost : public HostView {
public:
    kw::Result<PinnedContent> pin_file(const std::string& path) override {
        PinnedContent content;
        content.key = kw_file_key{7, path == "/bin/p1" ? std::hash<std::string>{}("/bin/p0") : std::hash<std::string>{}(path)};
        content.sha256 = std::string(64, 'a');
        return content;
    }
    std::optional<CgroupRef> resolve_cgroup(const std::string&) override { return std::nullopt; }
};

uint8_t proto_of(const Destination& d) { return d.protocol == Protocol::Udp ? KW_PROTO_UDP : KW_PROTO_TCP; }

// The lowest index of a rule from FROM to destination DEST, read off the rule list; with
// OR_ANY a "*" rule counts too.
std::optional<uint32_t> rule_to(const Policy& policy, size_t dest, const std::string& from, bool or_any) {
    for (uint32_t r = 0; r < policy.rules.size(); ++r) {
        const Rule& rule = policy.rules[r];
        if (rule.to != policy.destinations[dest].name) continue;
        if (rule.from == from || (or_any && rule.from == "*")) return r;
    }
    return std::nullopt;
}

// A destination governs the node (PROTO, PORT, ADDR/LEN) when it has the protocol, the
// port class (PORT listed; for the any-port node 0, no ports listed) and a CIDR
// containing the node's whole prefix.
bool governs(const Destination& d, uint8_t proto, uint16_t port, const Addr16& addr, uint8_t len) {
    if (proto_of(d) != proto) return false;
    bool port_class = port == 0 ? d.ports.empty() : std::find(d.ports.begin(), d.ports.end(), port) != d.ports.end();
    return port_class && std::any_of(d.cidrs.begin(), d.cidrs.end(), [&](const Cidr& c) {
               return prefix_contains(c.addr, c.prefix_len, addr, len);
           });
}

struct Reference {
    std::vector<std::pair<kw_dst_key, kw_dst_val>> dsts;
    std::vector<std::vector<uint32_t>> dset_members;
    std::vector<std::pair<kw_allow_key, kw_allow_val>> allows;
};

// Every node in order of first mention, its set by asking each destination, sets numbered
// in order of first use; an identity is allowed to a set when every member has a rule from
// it or "*", reported in rule order of the identities, then by set.
Reference reference(const Policy& policy, const IdentityTable& ids) {
    Reference out;
    using Node = std::tuple<uint8_t, uint16_t, Addr16, uint8_t>;
    std::vector<Node> nodes;
    for (const Destination& d : policy.destinations) {
        std::vector<uint16_t> ports = d.ports.empty() ? std::vector<uint16_t>{0} : d.ports;
        for (uint16_t port : ports)
            for (const Cidr& c : d.cidrs) {
                Node node{proto_of(d), port, mask_prefix(c.addr, c.prefix_len), c.prefix_len};
                if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
            }
    }
    for (const auto& [proto, port, addr, len] : nodes) {
        std::vector<uint32_t> members;
        for (uint32_t d = 0; d < policy.destinations.size(); ++d)
            if (governs(policy.destinations[d], proto, port, addr, len)) members.push_back(d);
        auto known = std::find(out.dset_members.begin(), out.dset_members.end(), members);
        uint32_t dset = static_cast<uint32_t>(known - out.dset_members.begin());
        if (known == out.dset_members.end()) out.dset_members.push_back(members);
        kw_dst_key key{};
        key.prefixlen = KW_DST_FIXED_BITS + len;
        key.proto = proto;
        key.port[0] = static_cast<uint8_t>(port >> 8);
        key.port[1] = static_cast<uint8_t>(port & 0xff);
        std::copy(addr.begin(), addr.end(), key.addr);
        kw_dst_val val{};
        val.dset = dset;
        if (std::all_of(members.begin(), members.end(), [&](uint32_t d) { return rule_to(policy, d, "*", false); })) {
            val.flags = KW_DSET_ANY_ALLOWED;
            val.any_rule = *rule_to(policy, members.front(), "*", false);
        }
        if (std::any_of(members.begin(), members.end(),
                        [&](uint32_t d) { return policy.destinations[d].tls == Tls::Mutual; }))
            val.flags |= KW_DSET_MTLS;
        out.dsts.emplace_back(key, val);
    }

    std::vector<std::string> froms;  // identities in order of their first rule
    for (const Rule& rule : policy.rules)
        if (rule.from != "*" && std::find(froms.begin(), froms.end(), rule.from) == froms.end())
            froms.push_back(rule.from);
    for (const std::string& from : froms) {
        auto ident = ids.find(from);
        if (!ident) continue;
        for (uint32_t dset = 0; dset < out.dset_members.size(); ++dset) {
            const auto& members = out.dset_members[dset];
            bool any = std::all_of(members.begin(), members.end(),
                                   [&](uint32_t d) { return rule_to(policy, d, "*", false).has_value(); });
            bool allowed = std::all_of(members.begin(), members.end(),
                                       [&](uint32_t d) { return rule_to(policy, d, from, true).has_value(); });
            if (any || !allowed) continue;
            kw_allow_val val{};
            val.rule = *rule_to(policy, members.front(), from, true);
            out.allows.emplace_back(kw_allow_key{*ident, dset}, val);
        }
    }
    return out;
}

template <typename T>
bool same_bytes(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename K, typename V>
bool same_entries(const std::vector<std::pair<K, V>>& a, const std::vector<std::pair<K, V>>& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
               return same_bytes(x.first, y.first) && same_bytes(x.second, y.second);
           });
}

// A policy of a few workloads, destinations and rules, drawn from small pools so that
// CIDRs nest, repeat and overlap across destinations, ports and protocols.
std::string random_policy(std::mt19937& rng) {
    static const std::vector<std::string> cidrs = {
        "0.0.0.0/0",   "10.0.0.0/8",  "10.1.0.0/16",  "10.1.2.0/24", "10.1.2.3/32", "10.2.0.0/16", "10.1.2.128/25",
        "10.1.2.4/32", "192.168.0.0/16", "::/0",      "fd00::/8",    "fd00::/16",   "fd00::1/128", "::ffff:0:0/96"};
    static const std::vector<int> ports = {80, 443, 8080, 53};
    auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    auto chance = [&](int percent) { return std::uniform_int_distribution<int>(0, 99)(rng) < percent; };

    size_t nworkloads = 1 + pick(4), ndests = 1 + pick(6), nrules = pick(10);
    std::string workloads, destinations, rules;
    for (size_t w = 0; w < nworkloads; ++w)
        workloads += std::string(w ? "," : "") + R"({"id": "spiffe://example.org/w)" + std::to_string(pick(3)) +
                     R"(", "selectors": {"exe": "/bin/p)" + std::to_string(pick(3)) + R"("}})";
    for (size_t d = 0; d < ndests; ++d) {
        std::string list;
        for (size_t i = 0, n = 1 + pick(4); i < n; ++i) list += std::string(i ? "," : "") + "\"" + cidrs[pick(cidrs.size())] + "\"";
        std::string dest = R"({"name": "d)" + std::to_string(d) + R"(", "cidrs": [)" + list + "]";
        if (chance(60)) {
            std::vector<int> chosen;
            for (int port : ports)
                if (chance(40)) chosen.push_back(port);
            dest += R"(, "ports": [)";
            for (size_t i = 0; i < chosen.size(); ++i) dest += (i ? "," : "") + std::to_string(chosen[i]);
            dest += "]";
        }
        if (chance(20))
            dest += R"(, "protocol": "udp")";
        else if (chance(20))
            dest += R"(, "tls": "mutual", "identity": "spiffe://example.org/server")";
        destinations += std::string(d ? "," : "") + dest + "}";
    }
    for (size_t r = 0; r < nrules; ++r) {
        std::string from = chance(25) ? "*" : "spiffe://example.org/w" + std::to_string(pick(3));
        rules += std::string(r ? "," : "") + R"({"from": ")" + from + R"(", "to": "d)" + std::to_string(pick(ndests)) +
                 R"("})";
    }
    return R"({"version": 1, "trust_domain": "example.org", "workloads": [)" + workloads +
           R"(], "destinations": [)" + destinations + R"(], "rules": [)" + rules + "]}";
}

}  // namespace

TEST_CASE("random policies compile to the same maps as the reference compiler") {
    std::mt19937 rng(12);
    int compared = 0, with_allows = 0, nested = 0;
    for (int i = 0; i < 3000; ++i) {
        std::string text = random_policy(rng);
        ParseOutcome parsed = parse_policy(text);
        if (!parsed.policy) continue;  // a rule from a workload the draw left out
        LinkedHost host;
        IdentityTable ids;
        auto compiled = compile_policy(*parsed.policy, host, ids, {}, {});
        INFO("policy " << i << ": " << text);
        REQUIRE(compiled.ok());
        Reference want = reference(*parsed.policy, ids);
        CHECK(compiled->dset_members == want.dset_members);
        CHECK(same_entries(compiled->dsts, want.dsts));
        CHECK(same_entries(compiled->allows, want.allows));
        // Hard links share one file entry and one candidate list: the first path's.
        std::vector<std::pair<kw_file_key, kw_file_val>> files;
        for (uint32_t pin_id = 0; pin_id < compiled->pins.size(); ++pin_id) {
            const PinnedContent& content = *compiled->pins[pin_id].actual;
            if (std::any_of(files.begin(), files.end(), [&](const auto& f) { return same_bytes(f.first, content.key); }))
                continue;
            kw_file_val val{};
            val.ctime_sec = content.ctime_sec;
            val.ctime_nsec = content.ctime_nsec;
            val.list_id = static_cast<uint32_t>(files.size() + 1);
            val.pin_id = pin_id;
            files.emplace_back(content.key, val);
        }
        CHECK(same_entries(compiled->files, files));
        ++compared;
        if (!want.allows.empty()) ++with_allows;
        if (std::any_of(want.dset_members.begin(), want.dset_members.end(), [](const auto& m) { return m.size() > 1; }))
            ++nested;
    }
    // The draw must reach the cases that matter, not only trivial policies.
    CHECK(compared > 1000);
    CHECK(with_allows > 300);
    CHECK(nested > 300);
}
