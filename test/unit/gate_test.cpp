// GateTables::decide, the kernel's connect decision in userspace, against a brute-force
// reading of the README's rule on generated policies and addresses; mtls_connect, what
// the agent does with a held connect(); and who an enrolled server admits.
#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/compile.h"
#include "core/gate.h"
#include "core/mtls.h"
#include "core/policy.h"
#include "core/prefix.h"
#include "policy_view_fixture.h"

using namespace kw::core;

namespace {

// Workloads select by uid only: nothing to pin.
using kw::test::NoFiles;

Policy parse_ok(const std::string& text) {
    ParseOutcome out = parse_policy(text);
    std::string problems;
    for (const auto& p : out.errors) problems += p.to_string() + "\n";
    INFO(text);
    INFO(problems);
    REQUIRE(out.policy);
    return *out.policy;
}

struct Compiled {
    Policy policy;
    IdentityTable ids;
    CompiledPolicy compiled;
    GateTables gate;
};

Compiled compile(const std::string& text) {
    Compiled c;
    c.policy = parse_ok(text);
    NoFiles host;
    auto out = compile_policy(c.policy, host, c.ids, {}, {});
    REQUIRE(out);
    c.compiled = std::move(*out);
    c.gate = GateTables(c.compiled);
    return c;
}

Addr16 addr_of(const std::string& text) {
    Addr16 a{};
    if (text.find(':') == std::string::npos) {
        a[10] = a[11] = 0xff;
        REQUIRE(inet_pton(AF_INET, text.c_str(), a.data() + 12) == 1);
    } else {
        REQUIRE(inet_pton(AF_INET6, text.c_str(), a.data()) == 1);
    }
    return a;
}

// The README's rule, read literally: the connection is governed by every declared
// destination that contains it (protocol, port listed or none listed, a CIDR containing
// the address); allowed only if each of them has a rule from the identity or "*".
struct Reference {
    bool declared = false;
    bool mtls = false;
    bool allowed = true;
    std::vector<uint32_t> governing;
};

Reference reference(const Policy& p, const std::string& id, Protocol proto, const Addr16& addr, uint16_t port) {
    Reference r;
    for (uint32_t d = 0; d < p.destinations.size(); ++d) {
        const Destination& dest = p.destinations[d];
        if (dest.protocol != proto) continue;
        if (!dest.ports.empty() && std::find(dest.ports.begin(), dest.ports.end(), port) == dest.ports.end()) continue;
        if (std::none_of(dest.cidrs.begin(), dest.cidrs.end(),
                         [&](const Cidr& c) { return prefix_contains(c.addr, c.prefix_len, addr, 128); }))
            continue;
        r.declared = true;
        r.governing.push_back(d);
        if (dest.tls == Tls::Mutual) r.mtls = true;
        bool allows = std::any_of(p.rules.begin(), p.rules.end(), [&](const Rule& rule) {
            return rule.to == dest.name && (rule.from == "*" || rule.from == id);
        });
        if (!allows) r.allowed = false;
    }
    return r;
}

const std::vector<std::string> kWorkloads = {"spiffe://t.org/w0", "spiffe://t.org/w1", "spiffe://t.org/w2"};

// A random policy over a small address space, so that destinations overlap often: CIDRs
// in 10.0.0.0/24 and 2001:db8::/120, nested at random lengths, a few ports or none, some
// UDP, some mutual-TLS.
std::string random_policy(std::mt19937& rng) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    std::string workloads;
    for (size_t i = 0; i < kWorkloads.size(); ++i)
        workloads += std::string(i ? "," : "") + R"({"id": ")" + kWorkloads[i] + R"(", "selectors": {"uid": )" +
                     std::to_string(1000 + i) + "}}";
    int ndest = 1 + pick(6);
    std::string dests, rules;
    for (int d = 0; d < ndest; ++d) {
        std::string cidrs;
        int ncidr = 1 + pick(3);
        for (int c = 0; c < ncidr; ++c) {
            if (pick(5) == 0) {
                int len = 120 + pick(9);
                unsigned host = static_cast<unsigned>(pick(256)) & (0xffu << (128 - len)) & 0xffu;
                char cidr[48];
                std::snprintf(cidr, sizeof cidr, "\"2001:db8::%x/%d\"", host, len);
                cidrs += std::string(c ? "," : "") + cidr;
            } else {
                static const int lens[] = {0, 16, 24, 25, 26, 28, 29, 30, 31, 32};
                int len = lens[pick(10)];
                uint32_t a = (10u << 24) | static_cast<uint32_t>(pick(256));
                if (pick(8) == 0) a |= 1u << 8;  // 10.0.1.x: outside most CIDRs
                uint32_t masked = len ? a & (0xffffffffu << (32 - len)) : 0;
                cidrs += std::string(c ? "," : "") + "\"" + std::to_string(masked >> 24) + "." +
                         std::to_string((masked >> 16) & 0xff) + "." + std::to_string((masked >> 8) & 0xff) + "." +
                         std::to_string(masked & 0xff) + "/" + std::to_string(len) + "\"";
            }
        }
        std::string ports;
        static const int kPorts[] = {80, 443, 8443};
        int nports = pick(3);
        std::set<int> chosen;
        for (int i = 0; i < nports; ++i) chosen.insert(kPorts[pick(3)]);
        for (int port : chosen) ports += std::string(ports.empty() ? "" : ",") + std::to_string(port);
        bool udp = pick(5) == 0;
        bool mutual = !udp && pick(3) == 0;
        std::string name = "d" + std::to_string(d);
        dests += std::string(d ? "," : "") + R"({"name": ")" + name + R"(", "cidrs": [)" + cidrs + "]" +
                 (ports.empty() ? "" : R"(, "ports": [)" + ports + "]") + (udp ? R"(, "protocol": "udp")" : "") +
                 (mutual ? R"(, "tls": "mutual", "identity": "spiffe://t.org/s)" + std::to_string(pick(2)) + "\"" : "") +
                 "}";
        int nrules = pick(4);
        for (int r = 0; r < nrules; ++r) {
            int from = pick(4);
            rules += std::string(rules.empty() ? "" : ",") + R"({"from": ")" +
                     (from == 3 ? std::string("*") : kWorkloads[from]) + R"(", "to": ")" + name + "\"}";
        }
    }
    return R"({"version": 1, "trust_domain": "t.org", "workloads": [)" + workloads + R"(], "destinations": [)" +
           dests + R"(], "rules": [)" + rules + "]}";
}

std::string random_address(std::mt19937& rng) {
    if (rng() % 5 == 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "2001:db8::%x", static_cast<unsigned>(rng() % 256));
        return buf;
    }
    return "10.0." + std::to_string(rng() % 8 == 0 ? 1 : 0) + "." + std::to_string(rng() % 256);
}

}  // namespace

TEST_CASE("the gate's decision from the compiled tables is the README's rule on random policies and addresses") {
    std::mt19937 rng(12345);
    static const uint16_t kProbePorts[] = {80, 443, 8443, 22};
    size_t mutual_refusals = 0, mixed = 0;
    for (int round = 0; round < 400; ++round) {
        std::string text = random_policy(rng);
        Compiled c = compile(text);
        for (int probe = 0; probe < 150; ++probe) {
            std::string address = random_address(rng);
            Addr16 addr = addr_of(address);
            uint16_t port = kProbePorts[rng() % 4];
            bool udp = rng() % 5 == 0;
            for (size_t w = 0; w <= kWorkloads.size(); ++w) {
                std::string id = w < kWorkloads.size() ? kWorkloads[w] : "unattested";
                GateVerdict got = c.gate.decide(kernel_identity(c.ids, id), udp ? KW_PROTO_UDP : KW_PROTO_TCP, addr, port);
                Reference want = reference(c.policy, id, udp ? Protocol::Udp : Protocol::Tcp, addr, port);
                INFO(text);
                INFO(id << " -> " << address << ":" << port << (udp ? "/udp" : "/tcp"));
                REQUIRE(got.declared == want.declared);
                REQUIRE(got.mtls == want.mtls);
                REQUIRE(got.allowed == want.allowed);
                REQUIRE(got.governing == want.governing);
                if (got.mtls && !got.allowed) ++mutual_refusals;
                if (got.mtls && std::any_of(want.governing.begin(), want.governing.end(), [&](uint32_t d) {
                        return c.policy.destinations[d].tls != Tls::Mutual;
                    }))
                    ++mixed;
            }
        }
    }
    // The generator must reach the cases that matter: mutual-TLS destinations refused,
    // and mutual-TLS destinations that share the address with plain ones.
    CHECK(mutual_refusals > 100);
    CHECK(mixed > 100);
}

TEST_CASE("a mutual-TLS destination inside a broader plain one is refused to whom the broader one refuses") {
    Compiled c = compile(R"({"version": 1, "trust_domain": "t.org",
        "workloads": [{"id": "spiffe://t.org/w0", "selectors": {"uid": 1000}},
                      {"id": "spiffe://t.org/w1", "selectors": {"uid": 1001}}],
        "destinations": [{"name": "lan", "cidrs": ["127.0.0.0/8"]},
                         {"name": "ledger", "cidrs": ["127.0.0.7/32"], "ports": [8443], "tls": "mutual",
                          "identity": "spiffe://t.org/ledger"}],
        "rules": [{"from": "spiffe://t.org/w1", "to": "lan"}, {"from": "*", "to": "ledger"}]})");
    auto decide = [&](const std::string& id) {
        return mtls_connect(c.policy, c.gate.decide(kernel_identity(c.ids, id), KW_PROTO_TCP, addr_of("127.0.0.7"), 8443),
                            id);
    };
    MtlsConnect w0 = decide("spiffe://t.org/w0");
    CHECK(w0.ours);
    CHECK_FALSE(w0.allowed);
    CHECK(w0.refusal == "no rule allows spiffe://t.org/w0 to reach lan");
    MtlsConnect w1 = decide("spiffe://t.org/w1");
    CHECK(w1.allowed);
    CHECK(w1.name == "ledger");
    CHECK(w1.server_identity == "spiffe://t.org/ledger");
    // Another port of the same address is not the mutual-TLS destination's: the kernel's.
    CHECK_FALSE(mtls_connect(c.policy, c.gate.decide(kernel_identity(c.ids, "spiffe://t.org/w0"), KW_PROTO_TCP,
                                                     addr_of("127.0.0.7"), 5432),
                             "spiffe://t.org/w0")
                    .ours);
}

TEST_CASE("a plain destination inside a mutual-TLS one is governed by both") {
    Compiled c = compile(R"({"version": 1, "trust_domain": "t.org",
        "workloads": [{"id": "spiffe://t.org/w0", "selectors": {"uid": 1000}},
                      {"id": "spiffe://t.org/w1", "selectors": {"uid": 1001}}],
        "destinations": [{"name": "mesh", "cidrs": ["10.0.0.0/24"], "tls": "mutual", "identity": "spiffe://t.org/mesh"},
                         {"name": "db", "cidrs": ["10.0.0.5/32"], "ports": [5432]}],
        "rules": [{"from": "*", "to": "mesh"}, {"from": "spiffe://t.org/w1", "to": "db"}]})");
    GateVerdict v = c.gate.decide(kernel_identity(c.ids, "spiffe://t.org/w0"), KW_PROTO_TCP, addr_of("10.0.0.5"), 5432);
    CHECK(v.mtls);
    CHECK(v.governing == std::vector<uint32_t>{0, 1});
    MtlsConnect m = mtls_connect(c.policy, v, "spiffe://t.org/w0");
    CHECK_FALSE(m.allowed);
    CHECK(m.refusal == "no rule allows spiffe://t.org/w0 to reach db");
    CHECK(mtls_connect(c.policy,
                       c.gate.decide(kernel_identity(c.ids, "spiffe://t.org/w1"), KW_PROTO_TCP, addr_of("10.0.0.5"), 5432),
                       "spiffe://t.org/w1")
              .allowed);
}

TEST_CASE("two mutual-TLS destinations naming different servers for one address refuse it") {
    Compiled c = compile(R"({"version": 1, "trust_domain": "t.org",
        "workloads": [{"id": "spiffe://t.org/w0", "selectors": {"uid": 1000}}],
        "destinations": [{"name": "a", "cidrs": ["10.0.0.0/24"], "tls": "mutual", "identity": "spiffe://t.org/a"},
                         {"name": "b", "cidrs": ["10.0.0.5/32"], "tls": "mutual", "identity": "spiffe://t.org/b"},
                         {"name": "c", "cidrs": ["10.0.0.9/32"], "tls": "mutual", "identity": "spiffe://t.org/a"}],
        "rules": [{"from": "*", "to": "a"}, {"from": "*", "to": "b"}, {"from": "*", "to": "c"}]})");
    uint32_t w0 = kernel_identity(c.ids, "spiffe://t.org/w0");
    MtlsConnect both = mtls_connect(c.policy, c.gate.decide(w0, KW_PROTO_TCP, addr_of("10.0.0.5"), 443), "spiffe://t.org/w0");
    CHECK(both.ours);
    CHECK_FALSE(both.allowed);
    CHECK(both.refusal.find("name different server identities") != std::string::npos);
    MtlsConnect same = mtls_connect(c.policy, c.gate.decide(w0, KW_PROTO_TCP, addr_of("10.0.0.9"), 443), "spiffe://t.org/w0");
    CHECK(same.allowed);
    CHECK(same.name == "a");
}

TEST_CASE("an enrolled server admits a client that a rule from its ID or \"*\" lets reach the server's identity") {
    Policy p = parse_ok(R"({"version": 1, "trust_domain": "example.org",
        "workloads": [{"id": "spiffe://example.org/ledger", "selectors": {"uid": 1},
                       "listen": [{"port": 8443, "tls": "mutual"}]},
                      {"id": "spiffe://example.org/billing", "selectors": {"uid": 2}},
                      {"id": "spiffe://example.org/web", "selectors": {"uid": 3}}],
        "destinations": [{"name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [8443], "tls": "mutual",
                          "identity": "spiffe://example.org/ledger"},
                         {"name": "plain", "cidrs": ["127.0.0.1/32"], "ports": [8443]},
                         {"name": "open", "cidrs": ["127.0.0.2/32"], "tls": "mutual",
                          "identity": "spiffe://example.org/open"}],
        "rules": [{"from": "spiffe://example.org/web", "to": "plain"},
                  {"from": "spiffe://example.org/billing", "to": "ledger"},
                  {"from": "*", "to": "open"}]})");
    CHECK(rule_admitting(p, "spiffe://example.org/billing", "spiffe://example.org/ledger") == 1u);
    CHECK_FALSE(rule_admitting(p, "spiffe://example.org/web", "spiffe://example.org/ledger"));
    CHECK_FALSE(rule_admitting(p, "spiffe://example.org/billing", "spiffe://example.org/other"));
    // "*" is anyone on both sides: every process as a client, every verified peer here.
    CHECK(rule_admitting(p, "spiffe://example.org/web", "spiffe://example.org/open") == 2u);
    CHECK(rule_admitting(p, "spiffe://partner.org/anyone", "spiffe://example.org/open") == 2u);
    CHECK(serves_mtls(p, "spiffe://example.org/ledger", 8443));
    CHECK_FALSE(serves_mtls(p, "spiffe://example.org/ledger", 8444));
    CHECK_FALSE(serves_mtls(p, "spiffe://example.org/billing", 8443));
}

TEST_CASE("a rule may name a federated peer's SPIFFE ID, to admit it to a server of ours") {
    Policy p = parse_ok(R"({"version": 1, "trust_domain": "example.org",
        "workloads": [{"id": "spiffe://example.org/ledger", "selectors": {"uid": 1},
                       "listen": [{"port": 8443, "tls": "mutual"}]}],
        "destinations": [{"name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [8443], "tls": "mutual",
                          "identity": "spiffe://example.org/ledger"}],
        "rules": [{"from": "spiffe://partner.org/payments", "to": "ledger"}],
        "federation": [{"trust_domain": "partner.org", "bundle": "/etc/kwarden/partner.json"}]})");
    CHECK(rule_admitting(p, "spiffe://partner.org/payments", "spiffe://example.org/ledger") == 0u);
    CHECK_FALSE(rule_admitting(p, "spiffe://partner.org/other", "spiffe://example.org/ledger"));
}

TEST_CASE("a rule naming another trust domain's peer is refused where it could admit nobody") {
    auto errors = [](const std::string& rules, const std::string& federation) {
        ParseOutcome out = parse_policy(R"({"version": 1, "trust_domain": "example.org",
            "workloads": [{"id": "spiffe://example.org/ledger", "selectors": {"uid": 1}}],
            "destinations": [{"name": "ledger", "cidrs": ["127.0.0.1/32"], "tls": "mutual",
                              "identity": "spiffe://example.org/ledger"},
                             {"name": "plain", "cidrs": ["127.0.0.2/32"]},
                             {"name": "theirs", "cidrs": ["127.0.0.3/32"], "tls": "mutual",
                              "identity": "spiffe://partner.org/api"}],
            "rules": [)" + rules + R"(], "federation": [)" + federation + "]}");
        std::string all;
        for (const auto& e : out.errors) all += e.to_string() + "\n";
        return all;
    };
    const std::string partner = R"({"trust_domain": "partner.org", "bundle": "/etc/kwarden/partner.json"})";
    CHECK(errors(R"({"from": "spiffe://partner.org/payments", "to": "ledger"})", partner).empty());
    CHECK(errors(R"({"from": "spiffe://partner.org/payments", "to": "ledger"})", "").find(
              "/rules/0/from: trust domain 'partner.org' is neither the policy's nor in \"federation\"") !=
          std::string::npos);
    CHECK(errors(R"({"from": "spiffe://partner.org/payments", "to": "plain"})", partner)
              .find("/rules/0/from: a peer of federated trust domain 'partner.org' is admitted only by an enrolled "
                    "server of ours") != std::string::npos);
    CHECK(errors(R"({"from": "spiffe://partner.org/payments", "to": "theirs"})", partner)
              .find("is admitted only by an enrolled server of ours") != std::string::npos);
    // Our own trust domain keeps the typo check.
    CHECK(errors(R"({"from": "spiffe://example.org/payments", "to": "ledger"})", partner)
              .find("/rules/0/from: no workload has this SPIFFE ID") != std::string::npos);
}

TEST_CASE("a destination's required cipher suite goes with the decision; two that differ for one address refuse it") {
    Compiled c = compile(R"({"version": 1, "trust_domain": "t.org",
        "workloads": [{"id": "spiffe://t.org/w0", "selectors": {"uid": 1000}}],
        "destinations": [{"name": "a", "cidrs": ["10.0.0.0/24"], "tls": "mutual", "identity": "spiffe://t.org/a"},
                         {"name": "b", "cidrs": ["10.0.0.5/32"], "tls": "mutual", "identity": "spiffe://t.org/a",
                          "tls_cipher": "aes-256-gcm"},
                         {"name": "c", "cidrs": ["10.0.0.5/32"], "ports": [443], "tls": "mutual",
                          "identity": "spiffe://t.org/a", "tls_cipher": "TLS_AES_128_GCM_SHA256"}],
        "rules": [{"from": "*", "to": "a"}, {"from": "*", "to": "b"}, {"from": "*", "to": "c"}]})");
    uint32_t w0 = kernel_identity(c.ids, "spiffe://t.org/w0");
    auto decide = [&](const char* addr, uint16_t port) {
        return mtls_connect(c.policy, c.gate.decide(w0, KW_PROTO_TCP, addr_of(addr), port), "spiffe://t.org/w0");
    };
    CHECK(decide("10.0.0.1", 80).tls_cipher == 0);  // a: any suite
    MtlsConnect b = decide("10.0.0.5", 80);        // a and b: b's requirement
    CHECK(b.allowed);
    CHECK(b.tls_cipher == 0x1302);
    MtlsConnect both = decide("10.0.0.5", 443);  // a, b and c: b and c disagree
    CHECK_FALSE(both.allowed);
    CHECK(both.refusal == "destinations a and c both govern this address and port and require different cipher suites "
                          "(TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256): no handshake can end with both");
}
