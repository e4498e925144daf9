// Mutual-TLS destination lookup and rule check (see mtls.h).
#include "core/mtls.h"

#include <algorithm>

namespace kw::core {

std::optional<size_t> mtls_destination(const Policy& policy, const Addr16& addr, uint16_t port) {
    for (size_t i = 0; i < policy.destinations.size(); ++i) {
        const Destination& d = policy.destinations[i];
        if (d.tls != Tls::Mutual || d.protocol != Protocol::Tcp) continue;
        if (!d.ports.empty() && std::find(d.ports.begin(), d.ports.end(), port) == d.ports.end()) continue;
        if (std::any_of(d.cidrs.begin(), d.cidrs.end(),
                        [&](const Cidr& c) { return prefix_contains(c.addr, c.prefix_len, addr, 128); }))
            return i;
    }
    return std::nullopt;
}

std::optional<size_t> rule_allowing(const Policy& policy, const std::string& spiffe_id, const std::string& dest) {
    for (size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& r = policy.rules[i];
        if (r.to == dest && (r.from == spiffe_id || r.from == "*")) return i;
    }
    return std::nullopt;
}

std::optional<size_t> rule_admitting(const Policy& policy, const std::string& client_id, const std::string& server_id) {
    for (size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& r = policy.rules[i];
        if (r.from != client_id) continue;
        for (const Destination& d : policy.destinations)
            if (d.name == r.to && d.tls == Tls::Mutual && d.identity == server_id) return i;
    }
    return std::nullopt;
}

bool serves_mtls(const Policy& policy, const std::string& spiffe_id, uint16_t port) {
    for (const Workload& w : policy.workloads) {
        if (w.id != spiffe_id) continue;
        for (const Listen& l : w.listen)
            if (l.port == port && l.tls == Tls::Mutual) return true;
    }
    return false;
}

}  // namespace kw::core
