// The TLS 1.3 mutual handshake the agent runs on a workload's socket, as
// client or server, non-blocking, on a connected TCP socket it does not own. When it is
// done the traffic secrets go to the kernel (ktls.h) and the workload reads and writes
// plaintext; so the handshake must leave nothing behind that kTLS cannot handle:
//   - TLS 1.3 only; no session tickets from us (the server sends none, the client keeps
//     no session), no early data, never KeyUpdate: any non-data record after Finished
//     makes the workload's read() fail with EIO. A third-party server's tickets are read
//     off the socket before kTLS takes it (post_handshake.h);
//   - BoringSSL's socket BIO reads record by record, so application data sent right
//     after Finished stays in the kernel for TLS_RX (no buffering BIO here, ever);
//   - the peer chain is verified by identity::verify_svid only (the one validator), or
//     found among the chains it accepted before (ContextCache::chains), then by the
//     caller's check of the peer's SPIFFE ID.
//
// Cipher selection. This BoringSSL (android-libboringssl, API 17) has no way to restrict
// or order TLS 1.3 cipher suites: SSL_CTX_set_strict_cipher_list does not apply to TLS
// 1.3, SSL_set_compliance_policy and SSL_CTX_set_aes_hw_override_for_testing are not in
// the library. Every client offers all three suites, in the order AES-128-GCM,
// AES-256-GCM, ChaCha20 when it has AES hardware (ChaCha20 first when it has none), and
// the server takes the client's first suite among those it scores best: a suite scores
// lower when it is AES-128-GCM and the key exchange group is CECPQ2 (that group asks for
// 256-bit security), and lower when it is AES and the server has no AES hardware. Hence:
//   - AES-128-GCM (default): what two machines with AES hardware negotiate.
//   - AES-256-GCM: the client offers only the CECPQ2 group (X25519 + HRSS post-quantum
//     hybrid, which BoringSSL of this era implements), and the server then picks
//     AES-256-GCM. Needs AES hardware on the server, and a peer that speaks CECPQ2.
//   - ChaCha20-Poly1305: cannot be requested per connection. It is negotiated only when
//     the server, or the client, runs without AES hardware in BoringSSL's view: a machine
//     without AES-NI, or a process started with OPENSSL_ia32cap="~0x200000000000000".
// The configured suite is a preference: what two kwarden ends negotiate. Either end takes
// any suite kTLS carries, so third-party peers on their defaults get in (an OpenSSL server
// picks AES-256-GCM by its own order; OpenSSL clients offer it first). A destination may
// require one suite ("tls_cipher"); the client then checks after the handshake and fails
// it otherwise, naming both suites and why.
#pragma once

#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "kwarden links BoringSSL (android-libboringssl-dev), never OpenSSL"
#endif
#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "core/result.h"
#include "core/spiffe_id.h"
#include "identity/authority.h"
#include "identity/trust_store.h"
#include "identity/verified_chains.h"
#include "tls/ktls.h"

namespace kw::tls {

enum class Role { client, server };
std::string_view role_name(Role role);  // "client" / "server"

enum class Progress { done, want_read, want_write };

// Decides whether a peer whose X.509-SVID verified may go on; the error says why not.
// Client: is it the server we meant to reach; server: does policy let this client in.
using PeerCheck = std::function<Result<void>(const core::SpiffeId& peer)>;

// The client's check: the server must be exactly EXPECTED. The failure names both IDs.
PeerCheck expect_peer_id(core::SpiffeId expected);

// The SSL_CTX of each (role, SVID, preferred suite), made once and shared by every
// handshake with those settings: certificate, chain and key are parsed and checked once,
// not per connection. Keyed by the SVID's fingerprint, so a rotated SVID gets a context
// of its own; the contexts of SVIDs no longer in use go when the cache is full (it is
// emptied then: kMax is far above the identities x roles x suites of a node). With them,
// the peer chains verified so far (identity/verified_chains.h): a peer presenting the
// same chain again is not path-validated again. Safe to use from several threads.
class ContextCache {
public:
    static constexpr size_t kMax = 256;
    Result<bssl::UniquePtr<SSL_CTX>> get(Role role, const identity::Svid& svid, Cipher cipher);
    size_t size() const;
    uint64_t made() const;  // contexts made so far (misses)
    identity::VerifiedChains& chains() { return chains_; }

private:
    mutable std::mutex mu_;
    std::map<std::tuple<int, std::string, int>, bssl::UniquePtr<SSL_CTX>> contexts_;
    uint64_t made_ = 0;
    identity::VerifiedChains chains_;
};

// The stack a thread running handshake steps is given (the agent's workers, whose memory
// is locked): a handshake's deepest call chain, BoringSSL's with the peer's chain
// verified, uses about 12 KiB of it (tls_test checks it stays under half).
inline constexpr size_t kHandshakeStackBytes = 128 * 1024;

struct HandshakeConfig {
    Role role = Role::client;
    std::shared_ptr<const identity::Svid> svid;         // our certificate, intermediates and key
    std::shared_ptr<const identity::TrustStore> trust;  // bundles the peer chain is verified against
    PeerCheck check_peer;                               // required
    Cipher cipher = Cipher::aes_128_gcm;                // the suite preferred (steers the offer)
    std::optional<Cipher> require;                      // client: the only suite accepted, if set
    std::function<identity::TimePoint()> clock;         // "now" for chain validity; empty: system clock
    ContextCache* contexts = nullptr;                   // shared contexts and chains; null: its own
};

class Handshake {
public:
    // Sets up a handshake on FD (a connected, non-blocking TCP socket; not owned, must
    // outlive the Handshake). Nothing is sent until the first step().
    static Result<std::unique_ptr<Handshake>> create(int fd, HandshakeConfig config);
    ~Handshake();
    Handshake(const Handshake&) = delete;
    Handshake& operator=(const Handshake&) = delete;

    // Advances the handshake as far as the socket allows: done, or which readiness to
    // wait for before the next call. An error is final; failure() holds the same text.
    Result<Progress> step();

    bool done() const { return state_ == State::done; }
    // Why the handshake failed: the rule or the check that refused the peer, with the
    // IDs involved, or what the TLS library or the socket reported. Empty otherwise.
    const std::string& failure() const { return failure_; }

    Role role() const { return config_.role; }
    int fd() const { return fd_; }

    // ---- after done() ----------------------------------------------------------------
    const core::SpiffeId& peer_id() const { return peer_id_; }
    Cipher cipher() const;                            // the negotiated suite
    uint16_t cipher_protocol_id() const;              // IANA number, e.g. 0x1301
    std::string_view cipher_name() const;             // IANA name, e.g. TLS_AES_128_GCM_SHA256
    uint16_t protocol_version() const;                // TLS1_3_VERSION
    // Secrets and next record numbers of both directions, for set_traffic_keys on this
    // socket (through any fd that refers to it). Fails before done() or if the TLS
    // library holds unread bytes from the socket that kTLS would never see.
    Result<TrafficKeys> traffic_keys() const;

private:
    friend struct HandshakeTestAccess;  // tests reach the SSL to prove what it would send
    friend class ContextCache;          // its contexts verify through verify_callback
    enum class State { running, done, failed };
    Handshake(int fd, HandshakeConfig config);
    Result<void> configure();
    Result<void> check_negotiated() const;
    enum ssl_verify_result_t verify_peer(uint8_t* out_alert);
    static enum ssl_verify_result_t verify_callback(SSL* ssl, uint8_t* out_alert);
    Error fail(std::string message);

    int fd_;
    HandshakeConfig config_;
    bssl::UniquePtr<SSL_CTX> ctx_;
    bssl::UniquePtr<SSL> ssl_;
    State state_ = State::running;
    std::string failure_;
    core::SpiffeId peer_id_;
    bool peer_verified_ = false;
};

}  // namespace kw::tls
