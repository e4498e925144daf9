// The kernel gate's connect decision, computed in userspace from the very tables the
// compiler gives the kernel (CompiledPolicy::dsts, ::allows, ::dset_members). The agent
// decides with it where the kernel hands the decision over (mutual-TLS destinations,
// which only the agent connects to), so both apply one rule: a connection is governed by
// every declared destination that contains it, and allowed only if each of them has a
// rule for the identity or "*".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "abi.h"
#include "core/compile.h"
#include "core/policy.h"
#include "core/prefix.h"

namespace kw::core {

struct GateVerdict {
    bool declared = false;  // some destination governs the connection
    bool mtls = false;      // one of them is "tls": "mutual": only the agent connects
    // Every governing destination allows the identity (the rules alone; the kernel then
    // refuses an mTLS destination to anyone but the agent).
    bool allowed = true;
    uint8_t reason = 0;               // KW_REASON_RULE, _ANY_RULE or _NO_RULE when declared
    std::optional<uint32_t> rule;     // the rule that allowed it, as the kernel reports it
    std::vector<uint32_t> governing;  // indices of every governing destination, ascending
};

class GateTables {
public:
    GateTables() = default;
    explicit GateTables(const CompiledPolicy& compiled);

    // The verdict for a process of identity IDENT (KW_IDENT_NONE: unattested) connecting
    // with PROTO (KW_PROTO_TCP, KW_PROTO_UDP) to ADDR (IPv4 as ::ffff:a.b.c.d):PORT. The
    // kernel's steps exactly: the longest match of (proto, port, addr) and of (proto, any
    // port, addr), and for each set found, its "*" flag or the (identity, set) entry.
    GateVerdict decide(uint32_t ident, uint8_t proto, const Addr16& addr, uint16_t port) const;

private:
    struct AddrHash {
        size_t operator()(const Addr16& a) const;
    };
    // The trie nodes of one (proto, port) class: per prefix length, longest first.
    using Level = std::pair<uint8_t, std::unordered_map<Addr16, kw_dst_val, AddrHash>>;
    const kw_dst_val* longest(uint8_t proto, uint16_t port, const Addr16& addr) const;
    void check_set(const kw_dst_val* v, uint32_t ident, GateVerdict& out) const;

    std::map<std::pair<uint8_t, uint16_t>, std::vector<Level>> classes_;
    std::unordered_map<uint64_t, uint32_t> allows_;  // ident << 32 | dset -> rule
    std::vector<std::vector<uint32_t>> dset_members_;
};

// A workload's identity as the kernel numbers it; KW_IDENT_NONE for any other name
// ("unattested", an ID no workload has).
uint32_t kernel_identity(const IdentityTable& ids, const std::string& spiffe_id);

// Why VERDICT (not allowed) refuses SPIFFE_ID: the first governing destination that has
// no rule for it or "*", by name.
std::string refusal(const Policy& policy, const GateVerdict& verdict, const std::string& spiffe_id);

// What the agent does with a held connect() of an enrolled process.
struct MtlsConnect {
    bool ours = false;  // a mutual-TLS destination governs it: the agent connects, or refuses
    bool allowed = false;
    std::optional<size_t> destination;  // the governing mutual-TLS destination (lowest index)
    std::string name;                   // its name
    std::string server_identity;        // what the server must present
    uint16_t tls_cipher = 0;            // the suite the server must pick (IANA number), 0 any
    std::string refusal;                // why not, when !allowed
};

// Decided by VERDICT (GateTables::decide for TCP) and the policy's names: allowed when
// every governing destination allows the identity and every governing mutual-TLS
// destination names one and the same server identity.
MtlsConnect mtls_connect(const Policy& policy, const GateVerdict& verdict, const std::string& spiffe_id);

}  // namespace kw::core
