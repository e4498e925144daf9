// See metrics.h. Every family is documented in the README ("Metrics").
#include "runtime/metrics.h"

#include <cstring>

namespace kw::runtime {

using core::metrics::Exposition;
using core::metrics::Histogram;
using core::metrics::Labels;
using nlohmann::json;

namespace {

// Handshake durations: from a loopback handshake on real hardware (about a millisecond)
// to one at the agent's timeout (10 s by default).
Histogram handshake_histogram() {
    return Histogram({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
}

const char* result_name(uint32_t result) {
    switch (result) {
    case KW_FLOW_ALLOWED: return "allow";
    case KW_FLOW_DENIED: return "deny";
    case KW_FLOW_AUDITED: return "audit";
    }
    return "unknown";
}

std::string key_bytes(const kw_flow_key& k) { return std::string(reinterpret_cast<const char*>(&k), sizeof(k)); }

std::string text_of(const json& j, const char* field, const char* none) {
    auto it = j.find(field);
    return it != j.end() && it->is_string() ? it->get<std::string>() : none;
}

}  // namespace

void Metrics::observe(const json& event) {
    const std::string type = text_of(event, "type", "");
    if (type == "tls") {
        const std::string role = text_of(event, "role", "unknown");
        handshakes_[{role, text_of(event, "result", "unknown"), text_of(event, "cipher", "none")}]++;
        auto d = event.find("duration_ns");
        if (d != event.end() && d->is_number()) {
            auto it = handshake_seconds_.try_emplace(role, handshake_histogram()).first;
            it->second.observe(d->get<double>() / 1e9);
        }
    } else if (type == "guard" && text_of(event, "decision", "") == "deny") {
        // errno null: audit mode reported it and let it be.
        auto e = event.find("errno");
        const bool refused = e != event.end() && !e->is_null();
        guard_refusals_[{text_of(event, "action", "unknown"), refused ? "refused" : "audited"}]++;
    }
}

std::string Metrics::render(const MetricsInputs& in) {
    Exposition out;

    // ---- connections: the kernel's flow counters -----------------------------------------
    std::vector<core::metrics::FlowReading> readings;
    readings.reserve(in.flows.size());
    std::map<std::string, const kw_flow_key*> keys;
    for (const auto& [k, v] : in.flows) {
        readings.push_back({key_bytes(k), v.connections, v.bytes_sent, v.bytes_received});
        keys[readings.back().key] = &k;
    }
    flows_.fold(readings, [&](const std::string& bytes) {
        const kw_flow_key& k = *keys.at(bytes);
        core::metrics::FlowSeries s;
        s.decision = result_name(k.result);
        if (k.dset == KW_FLOW_OVERFLOW_DSET) {
            s.identity = s.destination = core::metrics::SeriesCap::kOther;
        } else {
            auto [identity, destination] = in.name_flow ? in.name_flow(k) : std::make_pair(std::string("unknown"),
                                                                                           std::string("unknown"));
            std::tie(s.identity, s.destination) = cap_.series(identity, destination);
        }
        return s;
    });
    out.family("kwarden_connections_total", "counter",
               "Gate decisions on declared destinations: connect() calls, and sendto/sendmsg calls with an address "
               "(UDP: one per datagram), by decision (allow, deny, audit: denied by the policy, let through in audit "
               "mode), the caller's identity and the destinations named. Counted in the kernel.");
    for (const auto& [s, c] : flows_.totals())
        if (c.connections)
            out.sample("kwarden_connections_total",
                       {{"decision", s.decision}, {"identity", s.identity}, {"destination", s.destination}},
                       static_cast<double>(c.connections));
    // Allowed and audited connections both move data: one series per pair.
    std::map<std::pair<std::string, std::string>, core::metrics::FlowCount> moved;
    for (const auto& [s, c] : flows_.totals()) {
        if (s.decision == "deny") continue;
        auto& m = moved[{s.identity, s.destination}];
        m.bytes_sent += c.bytes_sent;
        m.bytes_received += c.bytes_received;
    }
    auto bytes = [&](const char* name, const char* help, uint64_t core::metrics::FlowCount::*field) {
        out.family(name, "counter", help);
        for (const auto& [pair, c] : moved)
            out.sample(name, {{"identity", pair.first}, {"destination", pair.second}}, static_cast<double>(c.*field));
    };
    bytes("kwarden_connection_sent_bytes_total",
          "Data octets sent on allowed TCP connections (retransmissions included), added when each closes.",
          &core::metrics::FlowCount::bytes_sent);
    bytes("kwarden_connection_received_bytes_total",
          "Data octets received on allowed TCP connections, added when each closes.",
          &core::metrics::FlowCount::bytes_received);
    out.family("kwarden_connection_series_folded", "gauge",
               "Identity x destination pairs counted in the shared \"_other\" series, beyond the cap of own series.");
    out.sample("kwarden_connection_series_folded", {}, static_cast<double>(cap_.folded()));

    // ---- attestation, the guard, events ---------------------------------------------------
    out.family("kwarden_execs_attested_total", "counter", "Execs the kernel bound to a SPIFFE ID.");
    out.sample("kwarden_execs_attested_total", {}, static_cast<double>(in.counters[KW_CNT_EXEC_ATTESTED]));
    out.family("kwarden_execs_cleared_total", "counter",
               "Execs by an attested process of something not attested: the identity was taken away.");
    out.sample("kwarden_execs_cleared_total", {}, static_cast<double>(in.counters[KW_CNT_EXEC_CLEARED]));
    out.family("kwarden_guard_refusals_total", "counter",
               "What the guard refused (result=refused) or, in audit mode, reported and let be (result=audited), "
               "by action; from the guard's events.");
    for (const auto& [key, n] : guard_refusals_)
        out.sample("kwarden_guard_refusals_total", {{"action", key.first}, {"result", key.second}}, static_cast<double>(n));
    out.family("kwarden_events_dropped_total", "counter",
               "Kernel events lost because the ring buffer was full (the counters here are not).");
    out.sample("kwarden_events_dropped_total", {}, static_cast<double>(in.counters[KW_CNT_EVENTS_DROPPED]));
    out.family("kwarden_events_undecodable_total", "counter",
               "Kernel event records of another ABI version, or cut short, that the agent dropped.");
    out.sample("kwarden_events_undecodable_total", {}, static_cast<double>(in.undecodable_events));
    out.family("kwarden_lifecycle_events_enabled", "gauge",
               "1 while some destination asks for lifecycle events (sockops attached), else 0.");
    out.sample("kwarden_lifecycle_events_enabled", {}, in.sockops_attached ? 1 : 0);

    // ---- mutual TLS ---------------------------------------------------------------------
    out.family("kwarden_tls_handshakes_total", "counter",
               "Mutual-TLS handshakes the agent ran for enrolled processes, by role, result and negotiated cipher.");
    for (const auto& [k, n] : handshakes_) {
        const auto& [role, result, cipher] = k;
        out.sample("kwarden_tls_handshakes_total", {{"role", role}, {"result", result}, {"cipher", cipher}},
                   static_cast<double>(n));
    }
    out.family("kwarden_tls_handshake_duration_seconds", "histogram",
               "Time from a held connect() or accepted connection to its handshake's end, by role.");
    for (const auto& [role, h] : handshake_seconds_) h.write(out, "kwarden_tls_handshake_duration_seconds", {{"role", role}});
    out.family("kwarden_enrolled_processes", "gauge", "Process trees enrolled with the agent (kwarden exec, containers).");
    out.sample("kwarden_enrolled_processes", {}, static_cast<double>(in.enrolled_processes));
    out.family("kwarden_held_calls", "gauge", "Calls of enrolled processes held for the agent's answer now.");
    out.sample("kwarden_held_calls", {}, static_cast<double>(in.held_calls));
    out.family("kwarden_svid_expiry_timestamp_seconds", "gauge", "notAfter of the current X.509-SVID of each identity.");
    for (const auto& [id, t] : in.svid_not_after)
        out.sample("kwarden_svid_expiry_timestamp_seconds", {{"identity", id}}, t);

    // ---- the policy ----------------------------------------------------------------------
    if (!in.policy_revision.empty()) {
        out.family("kwarden_policy_info", "gauge", "The policy in force: its revision (sha256 of its text).");
        out.sample("kwarden_policy_info", {{"revision", in.policy_revision}}, 1);
        out.family("kwarden_policy_loaded_timestamp_seconds", "gauge", "When the policy in force was put in force.");
        out.sample("kwarden_policy_loaded_timestamp_seconds", {}, in.policy_loaded_at);
        out.family("kwarden_policy_load_duration_seconds", "gauge",
                   "What putting the policy in force took: parse, compile (hashing pinned files), SVIDs, kernel tables.");
        out.sample("kwarden_policy_load_duration_seconds", {}, in.policy_load_seconds);
    }

    // ---- kernel programs ------------------------------------------------------------------
    out.family("kwarden_bpf_stats_enabled", "gauge",
               "1 while the kernel keeps BPF run-time statistics (sysctl kernel.bpf_stats_enabled).");
    out.sample("kwarden_bpf_stats_enabled", {}, in.bpf_stats_enabled ? 1 : 0);
    out.family("kwarden_bpf_program_run_seconds_total", "counter",
               "Time the kernel spent in each of kwarden's BPF programs while BPF statistics were on.");
    for (const auto& p : in.programs)
        out.sample("kwarden_bpf_program_run_seconds_total", {{"program", p.name}}, static_cast<double>(p.run_time_ns) / 1e9);
    out.family("kwarden_bpf_program_runs_total", "counter",
               "Runs of each of kwarden's BPF programs while BPF statistics were on.");
    for (const auto& p : in.programs)
        out.sample("kwarden_bpf_program_runs_total", {{"program", p.name}}, static_cast<double>(p.run_cnt));

    // ---- the agent process (the names every Prometheus client library uses) ---------------
    out.family("process_resident_memory_bytes", "gauge", "Resident memory of the agent.");
    out.sample("process_resident_memory_bytes", {}, in.resident_bytes);
    out.family("process_cpu_seconds_total", "counter", "User and system CPU time of the agent.");
    out.sample("process_cpu_seconds_total", {}, in.cpu_seconds);
    out.family("process_open_fds", "gauge", "Open descriptors of the agent.");
    out.sample("process_open_fds", {}, in.open_fds);
    out.family("process_max_fds", "gauge", "The agent's descriptor limit.");
    out.sample("process_max_fds", {}, in.max_fds);
    out.family("process_start_time_seconds", "gauge", "When the agent started, seconds since the epoch.");
    out.sample("process_start_time_seconds", {}, in.start_time);
    return out.text();
}

}  // namespace kw::runtime
