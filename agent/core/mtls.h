// Userspace decisions for mutual-TLS that the kernel's tables do not hold: the rules by
// name, who a server admits, which ports a workload serves. Which destinations govern a
// connection, and whether it is allowed, is GateTables::decide (core/gate.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/policy.h"

namespace kw::core {

// Whether a rule lets SPIFFE_ID (or "*") reach the destination named DEST. The index of
// that rule, or nullopt.
std::optional<size_t> rule_allowing(const Policy& policy, const std::string& spiffe_id, const std::string& dest);

// Whether an enrolled server of SERVER_ID may accept CLIENT_ID, a verified peer of our or
// a federated trust domain: some rule from CLIENT_ID or "*" names a mutual-TLS
// destination whose identity is the server's. "*" means anyone, as in the kernel's gate:
// every peer whose chain verified. The rule's index.
std::optional<size_t> rule_admitting(const Policy& policy, const std::string& client_id, const std::string& server_id);

// Whether SPIFFE_ID's workload entries declare PORT as a mutual-TLS listen port.
bool serves_mtls(const Policy& policy, const std::string& spiffe_id, uint16_t port);

}  // namespace kw::core
