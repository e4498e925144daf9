// Held calls: targets, the mTLS decision, tls events (see held_call.h).
#include "runtime/held_call.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "core/wall_clock.h"

namespace kw::runtime {

std::string Target::text() const {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (v4)
        inet_ntop(AF_INET, addr.data() + 12, buf, sizeof buf);
    else
        inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
    return buf;
}

std::optional<Target> parse_sockaddr(std::vector<uint8_t> raw) {
    Target t;
    sa_family_t family = 0;
    if (raw.size() < sizeof(family)) return std::nullopt;
    std::memcpy(&family, raw.data(), sizeof(family));
    if (family == AF_INET && raw.size() >= sizeof(sockaddr_in)) {
        sockaddr_in in{};
        std::memcpy(&in, raw.data(), sizeof(in));
        t.addr[10] = t.addr[11] = 0xff;
        std::memcpy(t.addr.data() + 12, &in.sin_addr, 4);
        t.port = ntohs(in.sin_port);
        t.v4 = true;
    } else if (family == AF_INET6 && raw.size() >= sizeof(sockaddr_in6)) {
        sockaddr_in6 in6{};
        std::memcpy(&in6, raw.data(), sizeof(in6));
        std::memcpy(t.addr.data(), &in6.sin6_addr, 16);
        t.port = ntohs(in6.sin6_port);
        // An IPv6 socket reaches IPv4 services through v4-mapped addresses.
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        t.v4 = std::memcmp(t.addr.data(), mapped, 12) == 0;
    } else {
        return std::nullopt;
    }
    t.raw = std::move(raw);
    return t;
}

std::string spiffe_name(const PolicyView& view, uint32_t ident) {
    if (ident == KW_IDENT_NONE) return "unattested";
    return view.ids.name(ident).value_or("unattested");
}

core::MtlsConnect decide_mtls(const PolicyView& view, uint32_t ident, const Target& target) {
    std::string name = spiffe_name(view, ident);
    if (name == "unattested") ident = KW_IDENT_NONE;
    auto verdict = view.gate.decide(ident, KW_PROTO_TCP, target.addr, target.port);
    return core::mtls_connect(view.policy, verdict, name);
}

nlohmann::json tls_event(const TlsEventFacts& f) {
    using nlohmann::json;
    auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - f.started);
    bool done = f.handshake && f.handshake->done();
    return {{"type", "tls"},
            {"time", core::now_rfc3339()},
            {"role", f.role},
            {"result", f.result},
            {"pid", f.call.tid},
            {"tgid", f.tgid},
            {"spiffe_id", f.spiffe_id},
            {"peer_id", done ? json(f.handshake->peer_id().str()) : json(nullptr)},
            {"expected_peer_id", f.expected_peer},
            {"destination", f.destination},
            {"dst_addr", f.addr},
            {"dst_port", f.port},
            {"cipher", done ? json(std::string(f.handshake->cipher_name())) : json(nullptr)},
            {"duration_ns", took.count()},
            {"error", nullptr}};
}

}  // namespace kw::runtime
