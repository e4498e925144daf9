// Userspace decisions for mutual-TLS destinations, which the agent makes for enrolled
// processes (the kernel lets only the agent connect there): which destination an
// address is, and whether an identity may reach it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/policy.h"
#include "core/prefix.h"

namespace kw::core {

// The first "tls": "mutual" destination that contains TCP ADDR:PORT (IPv4 as
// ::ffff:a.b.c.d), as an index into policy.destinations.
std::optional<size_t> mtls_destination(const Policy& policy, const Addr16& addr, uint16_t port);

// Whether a rule lets SPIFFE_ID (or "*") reach the destination named DEST. The index of
// that rule, or nullopt.
std::optional<size_t> rule_allowing(const Policy& policy, const std::string& spiffe_id, const std::string& dest);

// Whether an enrolled server of SERVER_ID may accept CLIENT_ID: some rule lets the client
// reach a mutual-TLS destination whose identity is the server's. The rule's index.
std::optional<size_t> rule_admitting(const Policy& policy, const std::string& client_id, const std::string& server_id);

// Whether SPIFFE_ID's workload entries declare PORT as a mutual-TLS listen port.
bool serves_mtls(const Policy& policy, const std::string& spiffe_id, uint16_t port);

}  // namespace kw::core
