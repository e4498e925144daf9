// Rules by name for mutual TLS (see mtls.h).
#include "core/mtls.h"

#include <algorithm>

namespace kw::core {

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
        if (r.from != client_id && r.from != "*") continue;
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
