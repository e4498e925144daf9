// What the agent decides and reports about a call an enrolled process holds, apart from
// the sessions that carry it out (runtime/sessions.cpp): where a connect() goes,
// whether the agent runs mutual TLS for it, and the "tls" event of its handshake.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/mtls.h"
#include "core/prefix.h"
#include "enroll/call.h"
#include "runtime/policy_view.h"
#include "tls/handshake.h"

namespace kw::runtime {

// Where a held call wants to go: an IPv4 or IPv6 sockaddr read from the process.
struct Target {
    core::Addr16 addr{};
    uint16_t port = 0;
    bool v4 = false;           // IPv4, or IPv4 through a v4-mapped IPv6 address
    std::vector<uint8_t> raw;  // the sockaddr as the process gave it
    std::string text() const;  // the address as inet_ntop writes it
};

// nullopt for a sockaddr that is neither a whole sockaddr_in nor a whole sockaddr_in6.
std::optional<Target> parse_sockaddr(std::vector<uint8_t> raw);

// The SPIFFE ID VIEW names the kernel identity IDENT by; "unattested" for KW_IDENT_NONE
// and for a number the view does not know (nothing is granted to it).
std::string spiffe_name(const PolicyView& view, uint32_t ident);

// The agent's side of the kernel's decision for a TCP connect by the kernel identity
// IDENT to TARGET, under VIEW (core/mtls.h: the one decision the kernel tables are
// compiled from).
core::MtlsConnect decide_mtls(const PolicyView& view, uint32_t ident, const Target& target);

// What a "tls" event says (policy/events.schema.json); "error" and the role's extra
// fields are set by the caller.
struct TlsEventFacts {
    const char* role;
    const char* result;
    const enroll::Call& call;
    pid_t tgid;
    const std::string& spiffe_id;
    const tls::Handshake* handshake;  // peer_id and cipher once it is done; may be null
    std::string expected_peer;
    std::string destination;
    std::string addr;
    uint16_t port;
    std::chrono::steady_clock::time_point started;
};

nlohmann::json tls_event(const TlsEventFacts& facts);

}  // namespace kw::runtime
