// The kernel gate's decision in userspace (see gate.h); its kernel twin is kw_gate() and
// kw_check_set() in bpf/kw_gate.bpf.c.
#include "core/gate.h"

#include <algorithm>

#include "core/mtls.h"
#include "core/tls_suite.h"

namespace kw::core {

size_t GateTables::AddrHash::operator()(const Addr16& a) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (uint8_t b : a) h = (h ^ b) * 1099511628211ull;
    return static_cast<size_t>(h);
}

GateTables::GateTables(const CompiledPolicy& compiled) : dset_members_(compiled.dset_members) {
    std::map<std::pair<uint8_t, uint16_t>, std::map<uint8_t, std::unordered_map<Addr16, kw_dst_val, AddrHash>>> nodes;
    for (const auto& [key, val] : compiled.dsts) {
        uint16_t port = static_cast<uint16_t>(key.port[0] << 8 | key.port[1]);
        Addr16 addr;
        std::copy(std::begin(key.addr), std::end(key.addr), addr.begin());
        nodes[{key.proto, port}][static_cast<uint8_t>(key.prefixlen - KW_DST_FIXED_BITS)].emplace(addr, val);
    }
    for (auto& [cls, levels] : nodes) {
        std::vector<Level>& out = classes_[cls];
        for (auto it = levels.rbegin(); it != levels.rend(); ++it) out.emplace_back(it->first, std::move(it->second));
    }
    for (const auto& [key, val] : compiled.allows)
        allows_.emplace(uint64_t{key.ident} << 32 | key.dset, val.rule);
}

const kw_dst_val* GateTables::longest(uint8_t proto, uint16_t port, const Addr16& addr) const {
    auto cls = classes_.find({proto, port});
    if (cls == classes_.end()) return nullptr;
    for (const auto& [len, level] : cls->second)
        if (auto it = level.find(mask_prefix(addr, len)); it != level.end()) return &it->second;
    return nullptr;
}

void GateTables::check_set(const kw_dst_val* v, uint32_t ident, GateVerdict& out) const {
    if (!v) return;
    out.declared = true;
    if (v->flags & KW_DSET_MTLS) out.mtls = true;
    if (v->dset < dset_members_.size())
        out.governing.insert(out.governing.end(), dset_members_[v->dset].begin(), dset_members_[v->dset].end());
    if (!out.allowed) return;  // an earlier set already refused
    if (v->flags & KW_DSET_ANY_ALLOWED) {
        out.rule = v->any_rule;
        out.reason = KW_REASON_ANY_RULE;
        return;
    }
    auto a = ident != KW_IDENT_NONE ? allows_.find(uint64_t{ident} << 32 | v->dset) : allows_.end();
    if (a != allows_.end()) {
        out.rule = a->second;
        out.reason = KW_REASON_RULE;
    } else {
        out.allowed = false;
        out.rule.reset();
        out.reason = KW_REASON_NO_RULE;
    }
}

GateVerdict GateTables::decide(uint32_t ident, uint8_t proto, const Addr16& addr, uint16_t port) const {
    GateVerdict v;
    check_set(longest(proto, port, addr), ident, v);
    check_set(longest(proto, 0, addr), ident, v);
    if (!v.declared) v.allowed = true;
    std::sort(v.governing.begin(), v.governing.end());
    v.governing.erase(std::unique(v.governing.begin(), v.governing.end()), v.governing.end());
    return v;
}

uint32_t kernel_identity(const IdentityTable& ids, const std::string& spiffe_id) {
    return ids.find(spiffe_id).value_or(KW_IDENT_NONE);
}

std::string refusal(const Policy& policy, const GateVerdict& verdict, const std::string& spiffe_id) {
    auto refuser = std::find_if(verdict.governing.begin(), verdict.governing.end(), [&](uint32_t d) {
        return !rule_allowing(policy, spiffe_id, policy.destinations[d].name);
    });
    std::string name = refuser != verdict.governing.end() ? policy.destinations[*refuser].name : "?";
    return "no rule allows " + spiffe_id + " to reach " + name;
}

MtlsConnect mtls_connect(const Policy& policy, const GateVerdict& verdict, const std::string& spiffe_id) {
    MtlsConnect out;
    if (!verdict.mtls) return out;
    out.ours = true;
    for (uint32_t d : verdict.governing) {
        const Destination& dest = policy.destinations[d];
        if (dest.tls != Tls::Mutual) continue;
        if (!out.destination) {
            out.destination = d;
            out.name = dest.name;
            out.server_identity = dest.identity;
            out.tls_cipher = dest.tls_cipher;
            continue;
        }
        const std::string both = "destinations " + policy.destinations[*out.destination].name + " and " + dest.name +
                                 " both govern this address and port and ";
        if (dest.identity != out.server_identity) {
            out.refusal = both + "name different server identities (" + out.server_identity + ", " + dest.identity +
                          "): no server can be both";
            return out;
        }
        if (dest.tls_cipher && out.tls_cipher && dest.tls_cipher != out.tls_cipher) {
            out.refusal = both + "require different cipher suites (" + std::string(tls_suite_name(out.tls_cipher)) +
                          ", " + std::string(tls_suite_name(dest.tls_cipher)) + "): no handshake can end with both";
            return out;
        }
        if (dest.tls_cipher) out.tls_cipher = dest.tls_cipher;
    }
    if (!verdict.allowed) {
        out.refusal = refusal(policy, verdict, spiffe_id);
        return out;
    }
    out.allowed = true;
    return out;
}

}  // namespace kw::core
