// The metrics exposition: the text format's escaping and histograms, label sets capped,
// counters folded from the kernel's per-key totals that only ever grow (keys named once,
// keys made anew), the request line and the listen address refused with a reason, and
// what a scrape says after known handshakes, refusals and flows.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstring>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/metrics.h"
#include "runtime/metrics.h"

using Catch::Matchers::ContainsSubstring;
using namespace kw::core::metrics;
using nlohmann::json;

TEST_CASE("label values escape backslash, quote and newline, and nothing else") {
    CHECK(escape_label_value("spiffe://td/a") == "spiffe://td/a");
    CHECK(escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    Exposition out;
    out.family("kwarden_x_total", "counter", "help with \\ and\nnewline");
    out.sample("kwarden_x_total", {{"identity", "q\"x"}, {"destination", "db"}}, 3);
    out.sample("kwarden_y", {}, 0.25);
    CHECK(out.text() ==
          "# HELP kwarden_x_total help with \\\\ and\\nnewline\n# TYPE kwarden_x_total counter\n"
          "kwarden_x_total{identity=\"q\\\"x\",destination=\"db\"} 3\nkwarden_y 0.25\n");
}

TEST_CASE("a histogram's buckets are cumulative and end with +Inf") {
    Histogram h({0.1, 1});
    h.observe(0.05);
    h.observe(0.5);
    h.observe(0.5);
    h.observe(7);
    Exposition out;
    h.write(out, "d_seconds", {{"role", "client"}});
    CHECK(out.text() ==
          "d_seconds_bucket{role=\"client\",le=\"0.1\"} 1\n"
          "d_seconds_bucket{role=\"client\",le=\"1\"} 3\n"
          "d_seconds_bucket{role=\"client\",le=\"+Inf\"} 4\n"
          "d_seconds_sum{role=\"client\"} 8.05\n"
          "d_seconds_count{role=\"client\"} 4\n");
}

TEST_CASE("pairs beyond the cap share one series, and a pair keeps the series it got") {
    SeriesCap cap(2);
    CHECK(cap.series("a", "x") == std::make_pair(std::string("a"), std::string("x")));
    CHECK(cap.series("b", "x") == std::make_pair(std::string("b"), std::string("x")));
    CHECK(cap.series("c", "x") == std::make_pair(std::string(SeriesCap::kOther), std::string(SeriesCap::kOther)));
    CHECK(cap.series("a", "x") == std::make_pair(std::string("a"), std::string("x")));
    CHECK(cap.series("c", "x").first == SeriesCap::kOther);
    CHECK(cap.own() == 2);
    CHECK(cap.folded() == 1);
    // 1,000 x 1,000 pairs: the cap and one more.
    SeriesCap big(2000);
    std::set<std::pair<std::string, std::string>> series;
    for (int i = 0; i < 1000; i++)
        for (int j = 0; j < 1000; j++) series.insert(big.series("i" + std::to_string(i), "d" + std::to_string(j)));
    CHECK(series.size() == 2001);
}

TEST_CASE("flow totals only grow: keys are named once, growth is added, a key made anew counts whole") {
    FlowTotals t;
    int named = 0;
    auto namer = [&](const std::string& key) {
        named++;
        return FlowSeries{"allow", key == "k1" || key == "k2" ? "billing" : "other", "db"};
    };
    t.fold({{"k1", 2, 100, 10}}, namer);
    t.fold({{"k1", 5, 150, 10}, {"k2", 1, 1, 1}}, namer);
    const FlowSeries billing{"allow", "billing", "db"};
    REQUIRE(t.totals().count(billing));
    CHECK(t.totals().at(billing).connections == 6);
    CHECK(t.totals().at(billing).bytes_sent == 151);
    CHECK(t.totals().at(billing).bytes_received == 11);
    CHECK(named == 2);
    // k1 deleted and made again in the kernel: its smaller reading is all new.
    t.fold({{"k1", 1, 7, 0}}, namer);
    CHECK(t.totals().at(billing).connections == 7);
    CHECK(t.totals().at(billing).bytes_sent == 158);
    CHECK(named == 2);  // k1 keeps the series it was named with
}

TEST_CASE("the request line must be METHOD /path HTTP/1.x, and a refusal says what is wrong") {
    auto ok = parse_http_head("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(ok);
    CHECK(ok->method == "GET");
    CHECK(ok->target == "/metrics");
    CHECK(parse_http_head("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")->target == "/metrics?x=1");
    CHECK_THAT(parse_http_head("GET /metrics\r\n\r\n").message(), ContainsSubstring("is not METHOD SP TARGET"));
    CHECK_THAT(parse_http_head("GET /metrics HTTP/2\r\n\r\n").message(), ContainsSubstring("version"));
    CHECK_THAT(parse_http_head("GET metrics HTTP/1.1\r\n\r\n").message(), ContainsSubstring("absolute path"));
    CHECK_THAT(parse_http_head("get /metrics HTTP/1.1\r\n\r\n").message(), ContainsSubstring("upper-case"));
    CHECK_THAT(parse_http_head(std::string("GET /m\x01 HTTP/1.1\r\n\r\n")).message(), ContainsSubstring("control"));
    CHECK_THAT(parse_http_head("\x16\x03\x01\x02\x00").message(), ContainsSubstring("\"????"));
}

TEST_CASE("listen addresses are numeric, with a port, or none") {
    auto v4 = parse_listen_address("127.0.0.1:9977");
    REQUIRE(v4);
    CHECK(v4->host == "127.0.0.1");
    CHECK(v4->port == 9977);
    auto v6 = parse_listen_address("[::1]:9100");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(parse_listen_address("none")->none());
    CHECK_THAT(parse_listen_address("localhost:9977").message(), ContainsSubstring("not a numeric IPv4 address"));
    CHECK_THAT(parse_listen_address("::1:9977").message(), ContainsSubstring("not a numeric IPv4"));
    CHECK_THAT(parse_listen_address("[::1]").message(), ContainsSubstring("[::1]:PORT"));
    CHECK_THAT(parse_listen_address("0.0.0.0:0").message(), ContainsSubstring("1 to 65535"));
    CHECK_THAT(parse_listen_address("0.0.0.0:65536").message(), ContainsSubstring("1 to 65535"));
    CHECK_THAT(parse_listen_address("0.0.0.0:http").message(), ContainsSubstring("1 to 65535"));
    CHECK_THAT(parse_listen_address("9977").message(), ContainsSubstring("not IPV4:PORT"));
}

namespace {

kw_flow_key flow_key(uint32_t ident, uint32_t dset, uint32_t result, uint64_t revision = 7) {
    kw_flow_key k{};
    k.revision = revision;
    k.ident = ident;
    k.dset = dset;
    k.result = result;
    return k;
}

}  // namespace

TEST_CASE("a scrape reports the handshakes, refusals and flows it was given, in bounded series") {
    kw::runtime::Metrics m(1);
    m.observe(json{{"type", "tls"}, {"role", "client"}, {"result", "ok"}, {"cipher", "TLS_AES_128_GCM_SHA256"},
                   {"duration_ns", 20000000}});
    m.observe(json{{"type", "tls"}, {"role", "server"}, {"result", "failed"}, {"cipher", nullptr},
                   {"duration_ns", 3000000000LL}});
    m.observe(json{{"type", "guard"}, {"action", "ptrace"}, {"decision", "deny"}, {"errno", "EPERM"}});
    m.observe(json{{"type", "guard"}, {"action", "ptrace"}, {"decision", "deny"}, {"errno", nullptr}});
    m.observe(json{{"type", "guard"}, {"action", "ptrace"}, {"decision", "allow"}, {"errno", nullptr}});
    m.observe(json{{"type", "connect"}, {"decision", "deny"}});

    kw::runtime::MetricsInputs in;
    in.counters[KW_CNT_EXEC_ATTESTED] = 4;
    in.flows.push_back({flow_key(1, 0, KW_FLOW_ALLOWED), {3, 300, 30}});
    in.flows.push_back({flow_key(1, 0, KW_FLOW_AUDITED), {1, 5, 5}});
    in.flows.push_back({flow_key(2, 0, KW_FLOW_DENIED), {2, 0, 0}});  // beyond the cap of 1
    in.flows.push_back({flow_key(0, KW_FLOW_OVERFLOW_DSET, KW_FLOW_ALLOWED, 0), {0, 0, 0}});
    in.name_flow = [](const kw_flow_key& k) {
        return std::make_pair(k.ident == 1 ? std::string("spiffe://td/billing") : std::string("spiffe://td/x"),
                              std::string("db"));
    };
    in.svid_not_after["spiffe://td/billing"] = 1800000000;
    in.policy_revision = "abc";
    in.programs.push_back({"kw_connect", 1500000000, 3});
    const std::string text = m.render(in);
    INFO(text);
    CHECK_THAT(text, ContainsSubstring(
                         "kwarden_connections_total{decision=\"allow\",identity=\"spiffe://td/billing\",destination=\"db\"} 3\n"));
    CHECK_THAT(text, ContainsSubstring(
                         "kwarden_connections_total{decision=\"audit\",identity=\"spiffe://td/billing\",destination=\"db\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring(
                         "kwarden_connections_total{decision=\"deny\",identity=\"_other\",destination=\"_other\"} 2\n"));
    // Allowed and audited octets of one pair: one series.
    CHECK_THAT(text, ContainsSubstring(
                         "kwarden_connection_sent_bytes_total{identity=\"spiffe://td/billing\",destination=\"db\"} 305\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_connection_series_folded 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_execs_attested_total 4\n"));
    CHECK_THAT(text, ContainsSubstring(
                         "kwarden_tls_handshakes_total{role=\"client\",result=\"ok\",cipher=\"TLS_AES_128_GCM_SHA256\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_tls_handshakes_total{role=\"server\",result=\"failed\",cipher=\"none\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_tls_handshake_duration_seconds_bucket{role=\"client\",le=\"0.025\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_tls_handshake_duration_seconds_bucket{role=\"server\",le=\"2.5\"} 0\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_guard_refusals_total{action=\"ptrace\",result=\"refused\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_guard_refusals_total{action=\"ptrace\",result=\"audited\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_svid_expiry_timestamp_seconds{identity=\"spiffe://td/billing\"} 1800000000\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_policy_info{revision=\"abc\"} 1\n"));
    CHECK_THAT(text, ContainsSubstring("kwarden_bpf_program_run_seconds_total{program=\"kw_connect\"} 1.5\n"));

    // The next scrape: the kernel's totals grew; the series grow by as much.
    in.flows[0].second = {5, 400, 40};
    const std::string next = m.render(in);
    CHECK_THAT(next, ContainsSubstring(
                         "kwarden_connections_total{decision=\"allow\",identity=\"spiffe://td/billing\",destination=\"db\"} 5\n"));
    CHECK_THAT(next, ContainsSubstring(
                         "kwarden_connection_sent_bytes_total{identity=\"spiffe://td/billing\",destination=\"db\"} 405\n"));
}
