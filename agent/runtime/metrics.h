// The agent's Prometheus metrics: what a scrape reads (the kernel's counters and flow
// counters, the enrolled processes, the SVIDs, the policy, the agent process itself),
// and what the agent counts as it goes (handshakes and their durations, guard refusals),
// written in the text exposition format. io/agent.cpp reads the inputs and serves the
// text; everything here runs without a kernel in unit tests.
//
// Label sets are bounded: identity x destination pairs beyond kMaxFlowSeries share one
// series labelled "_other" (core/metrics.h SeriesCap), handshakes are labelled by role,
// result and cipher only, guard refusals by action, programs by name. A 1,000 x 1,000
// policy yields at most kMaxFlowSeries + 1 series per decision.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "abi.h"
#include "core/metrics.h"

namespace kw::runtime {

struct MetricsInputs {
    std::array<uint64_t, KW_CNT_MAX> counters{};
    // kw_flows, summed over the CPUs.
    std::vector<std::pair<kw_flow_key, kw_flow_val>> flows;
    // The identity and destination label of a key (not the overflow key): asked once per
    // key, the first time it is read.
    std::function<std::pair<std::string, std::string>(const kw_flow_key&)> name_flow;
    size_t enrolled_processes = 0;
    size_t held_calls = 0;
    // SPIFFE ID -> the SVID's notAfter, seconds since the epoch.
    std::map<std::string, double> svid_not_after;
    std::string policy_revision;  // "" before the first policy
    double policy_loaded_at = 0;  // seconds since the epoch
    double policy_load_seconds = 0;
    bool sockops_attached = false;
    struct Program {
        std::string name;
        uint64_t run_time_ns = 0;
        uint64_t run_cnt = 0;
    };
    std::vector<Program> programs;
    bool bpf_stats_enabled = false;
    uint64_t undecodable_events = 0;
    // The agent process (/proc/self).
    double resident_bytes = 0;
    double cpu_seconds = 0;
    double open_fds = 0;
    double max_fds = 0;
    double start_time = 0;  // seconds since the epoch
};

class Metrics {
public:
    static constexpr size_t kMaxFlowSeries = 2000;
    explicit Metrics(size_t max_flow_series = kMaxFlowSeries) : cap_(max_flow_series) {}

    // Every event the agent emits passes here: "tls" events count handshakes (role,
    // result, cipher) and their durations, "guard" refusals count by action.
    void observe(const nlohmann::json& event);
    // The exposition of a scrape. Folds the flow readings in (totals only grow).
    std::string render(const MetricsInputs& in);

private:
    core::metrics::SeriesCap cap_;
    core::metrics::FlowTotals flows_;
    std::map<std::tuple<std::string, std::string, std::string>, uint64_t> handshakes_;  // role, result, cipher
    std::map<std::string, core::metrics::Histogram> handshake_seconds_;                 // by role
    std::map<std::pair<std::string, std::string>, uint64_t> guard_refusals_;            // action, result
};

}  // namespace kw::runtime
