// TLS 1.3 mutual handshake on a workload's socket (see handshake.h for the rules and
// for what this BoringSSL allows in cipher selection).
#include "tls/handshake.h"

#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/pool.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kw::tls {
namespace {

// Everything in BoringSSL's error queue, oldest first, and the queue cleared: a later
// call must not report a stale failure.
std::string drain_errors() {
    std::string out;
    while (uint32_t code = ERR_get_error()) {
        char buf[160];
        ERR_error_string_n(code, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "no detail from BoringSSL" : out;
}

// The index under which each SSL points back to its Handshake, for the verify callback.
int handshake_ex_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// Key exchange groups. The client's list is what steers a BoringSSL server's cipher
// choice (see handshake.h): CECPQ2 first asks for AES-256-GCM, and the classic groups
// after it keep servers that do not speak CECPQ2 reachable (they ask for another key share).
std::vector<int> client_groups(Cipher cipher) {
    if (cipher == Cipher::aes_256_gcm) return {NID_CECPQ2, NID_X25519, NID_X9_62_prime256v1};
    return {NID_X25519, NID_X9_62_prime256v1};
}
const std::vector<int> kServerGroups = {NID_X25519, NID_X9_62_prime256v1, NID_CECPQ2};

std::string negotiation_hint(Cipher required) {
    switch (required) {
    case Cipher::aes_128_gcm:
        return "a BoringSSL server picks it when both ends have AES hardware and the client does not offer CECPQ2 "
               "first (--tls-cipher aes-128-gcm); other servers choose by their own order";
    case Cipher::aes_256_gcm:
        return "a BoringSSL server picks it when the client offers CECPQ2 first (--tls-cipher aes-256-gcm) and it has "
               "AES hardware; OpenSSL servers pick it by their own order";
    case Cipher::chacha20_poly1305:
        return "this BoringSSL cannot ask for it: a server picks it when it or the client lacks AES hardware (no "
               "AES-NI, or OPENSSL_ia32cap=\"~0x200000000000000\"), or by its own order";
    }
    return {};
}

}  // namespace

std::string_view role_name(Role role) { return role == Role::client ? "client" : "server"; }

PeerCheck expect_peer_id(core::SpiffeId expected) {
    return [expected = std::move(expected)](const core::SpiffeId& peer) -> Result<void> {
        if (peer.str() == expected.str()) return {};
        return make_error("expected " + expected.str());
    };
}

Handshake::Handshake(int fd, HandshakeConfig config) : fd_(fd), config_(std::move(config)) {}

Handshake::~Handshake() = default;

Result<std::unique_ptr<Handshake>> Handshake::create(int fd, HandshakeConfig config) {
    const std::string where = "TLS " + std::string(role_name(config.role)) + " on fd " + std::to_string(fd) + ": ";
    if (!config.svid || !config.svid->cert || !config.svid->key)
        return make_error(where + "no SVID (certificate and key) to present");
    if (!config.trust) return make_error(where + "no trust store to verify the peer against");
    if (!config.check_peer) return make_error(where + "no check for the peer's SPIFFE ID");
    if (!config.clock) config.clock = identity::now_seconds;
    std::unique_ptr<Handshake> hs(new Handshake(fd, std::move(config)));
    if (auto r = hs->configure(); !r) return make_error(where + r.message());
    return hs;
}

namespace {

// What every handshake of ROLE with SVID, preferring CIPHER, shares.
Result<bssl::UniquePtr<SSL_CTX>> make_context(Role role, const identity::Svid& svid, Cipher cipher,
                                              enum ssl_verify_result_t (*verify)(SSL*, uint8_t*)) {
    ERR_clear_error();
    auto lib_error = [](std::string_view what) { return make_error(std::string(what) + ": " + drain_errors()); };
    const bool server = role == Role::server;
    bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
    if (!ctx) return lib_error("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION))
        return lib_error("restricting to TLS 1.3");
    // No tickets either way: a NewSessionTicket after Finished would reach the workload
    // through kTLS as a non-data record (EIO), and resumption would skip verify_svid.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    if (!SSL_CTX_set_num_tickets(ctx.get(), 0)) return lib_error("SSL_CTX_set_num_tickets(0)");
    SSL_CTX_set_early_data_enabled(ctx.get(), 0);

    const std::vector<int> groups = server ? kServerGroups : client_groups(cipher);
    if (!SSL_CTX_set1_curves(ctx.get(), groups.data(), groups.size())) return lib_error("setting key exchange groups");

    const std::string svid_name = "SVID " + svid.id.str();
    if (!SSL_CTX_use_certificate(ctx.get(), svid.cert.get())) return lib_error(svid_name + " certificate");
    for (const identity::X509Ptr& inter : svid.intermediates)
        if (!SSL_CTX_add1_chain_cert(ctx.get(), inter.get())) return lib_error(svid_name + " chain");
    if (!SSL_CTX_use_PrivateKey(ctx.get(), svid.key.get()) || !SSL_CTX_check_private_key(ctx.get()))
        return lib_error(svid_name + " key");

    // The server requires a client certificate; both ends verify with verify_svid only.
    SSL_CTX_set_custom_verify(ctx.get(), SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), verify);
    return ctx;
}

}  // namespace

Result<bssl::UniquePtr<SSL_CTX>> ContextCache::get(Role role, const identity::Svid& svid, Cipher cipher) {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_tuple(static_cast<int>(role), svid.fingerprint, static_cast<int>(cipher));
    auto it = contexts_.find(key);
    if (it == contexts_.end() || svid.fingerprint.empty()) {
        auto ctx = make_context(role, svid, cipher, &Handshake::verify_callback);
        if (!ctx) return ctx.error();
        made_++;
        if (svid.fingerprint.empty()) return ctx;  // nothing to know it by: not shared
        if (contexts_.size() >= kMax) contexts_.clear();
        it = contexts_.emplace(key, std::move(*ctx)).first;
    }
    SSL_CTX_up_ref(it->second.get());
    return bssl::UniquePtr<SSL_CTX>(it->second.get());
}

size_t ContextCache::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return contexts_.size();
}

uint64_t ContextCache::made() const {
    std::lock_guard<std::mutex> lock(mu_);
    return made_;
}

Result<void> Handshake::configure() {
    ERR_clear_error();
    auto lib_error = [](std::string_view what) { return make_error(std::string(what) + ": " + drain_errors()); };
    const bool server = config_.role == Role::server;

    auto ctx = config_.contexts ? config_.contexts->get(config_.role, *config_.svid, config_.cipher)
                                : make_context(config_.role, *config_.svid, config_.cipher, &Handshake::verify_callback);
    if (!ctx) return ctx.error();
    ctx_ = std::move(*ctx);

    ssl_.reset(SSL_new(ctx_.get()));
    if (!ssl_) return lib_error("SSL_new");
    if (!SSL_set_ex_data(ssl_.get(), handshake_ex_index(), this)) return lib_error("SSL_set_ex_data");
    // A plain socket BIO (BIO_NOCLOSE: the fd is not ours). It reads record by record,
    // so bytes after the handshake stay in the kernel for kTLS.
    if (!SSL_set_fd(ssl_.get(), fd_)) return lib_error("SSL_set_fd");
    if (server)
        SSL_set_accept_state(ssl_.get());
    else
        SSL_set_connect_state(ssl_.get());
    return {};
}

Error Handshake::fail(std::string message) {
    state_ = State::failed;
    // The verify callback's reason is the precise one; what BoringSSL says after it
    // (CERTIFICATE_VERIFY_FAILED) adds nothing.
    if (failure_.empty()) failure_ = std::move(message);
    return make_error(failure_);
}

Result<Progress> Handshake::step() {
    if (state_ == State::done) return Progress::done;
    if (state_ == State::failed) return make_error(failure_);
    ERR_clear_error();
    errno = 0;
    const int rc = SSL_do_handshake(ssl_.get());
    const int saved_errno = errno;
    const std::string where = "TLS handshake (" + std::string(role_name(config_.role)) + ", fd " +
                              std::to_string(fd_) + "): ";
    if (rc == 1) {
        if (auto r = check_negotiated(); !r) return fail(where + r.message());
        state_ = State::done;
        return Progress::done;
    }
    switch (SSL_get_error(ssl_.get(), rc)) {
    case SSL_ERROR_WANT_READ:
        return Progress::want_read;
    case SSL_ERROR_WANT_WRITE:
        return Progress::want_write;
    case SSL_ERROR_ZERO_RETURN:
        return fail(where + "the peer closed the connection");
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() != 0) return fail(where + drain_errors());
        if (rc == 0 || saved_errno == 0) return fail(where + "the peer closed the connection");
        return fail(where + "socket error: " + std::strerror(saved_errno));
    default:
        return fail(where + drain_errors());
    }
}

Cipher Handshake::cipher() const {
    auto got = cipher_from_protocol_id(cipher_protocol_id());
    return got ? *got : config_.cipher;
}

Result<void> Handshake::check_negotiated() const {
    if (SSL_version(ssl_.get()) != TLS1_3_VERSION)
        return make_error("negotiated " + std::string(SSL_get_version(ssl_.get())) + ", only TLS 1.3 is allowed");
    if (!peer_verified_) return make_error("the peer's certificate was never verified");
    if (SSL_session_reused(ssl_.get())) return make_error("a resumed session was negotiated; resumption is disabled");
    const uint16_t negotiated = cipher_protocol_id();
    // Any suite kTLS carries, unless the destination requires one.
    auto got = cipher_from_protocol_id(negotiated);
    if (!got) return make_error("negotiated " + std::string(cipher_name()) + ", which kTLS cannot carry");
    if (config_.role == Role::client && config_.require && *got != *config_.require)
        return make_error("negotiated " + std::string(tls::cipher_name(*got)) + " but the destination requires " +
                          std::string(tls::cipher_name(*config_.require)) + ": " + negotiation_hint(*config_.require));
    return {};
}

enum ssl_verify_result_t Handshake::verify_callback(SSL* ssl, uint8_t* out_alert) {
    auto* self = static_cast<Handshake*>(SSL_get_ex_data(ssl, handshake_ex_index()));
    if (self == nullptr) {
        *out_alert = SSL_AD_INTERNAL_ERROR;
        return ssl_verify_invalid;
    }
    return self->verify_peer(out_alert);
}

enum ssl_verify_result_t Handshake::verify_peer(uint8_t* out_alert) {
    const std::string peer_role(role_name(config_.role == Role::client ? Role::server : Role::client));
    auto refuse = [&](uint8_t alert, std::string reason) {
        failure_ = std::move(reason);
        *out_alert = alert;
        return ssl_verify_invalid;
    };

    const STACK_OF(CRYPTO_BUFFER)* presented = SSL_get0_peer_certificates(ssl_.get());
    if (presented == nullptr || sk_CRYPTO_BUFFER_num(presented) == 0)
        return refuse(SSL_AD_CERTIFICATE_REQUIRED, peer_role + " presented no certificate");
    auto accept = [&](const core::SpiffeId& id) {
        auto allowed = config_.check_peer(id);
        if (!allowed) return refuse(SSL_AD_ACCESS_DENIED, peer_role + " " + id.str() + " refused: " + allowed.message());
        peer_id_ = id;
        peer_verified_ = true;
        return ssl_verify_ok;
    };

    identity::VerifiedChains* known = config_.contexts ? &config_.contexts->chains() : nullptr;
    identity::VerifiedChains::Key key{};
    if (known) {
        std::vector<std::span<const uint8_t>> ders;
        for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(presented); ++i) {
            const CRYPTO_BUFFER* der = sk_CRYPTO_BUFFER_value(presented, i);
            ders.emplace_back(CRYPTO_BUFFER_data(der), CRYPTO_BUFFER_len(der));
        }
        key = identity::VerifiedChains::key_of(ders);
        if (auto id = known->find(key, *config_.trust, config_.clock())) return accept(*id);
    }
    std::vector<identity::X509Ptr> chain;
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(presented); ++i) {
        identity::X509Ptr cert(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(presented, i)));
        if (!cert) {
            ERR_clear_error();
            return refuse(SSL_AD_BAD_CERTIFICATE,
                          peer_role + " certificate " + std::to_string(i) + " of its chain is not valid DER X.509");
        }
        chain.push_back(std::move(cert));
    }
    std::vector<X509*> intermediates;
    for (size_t i = 1; i < chain.size(); ++i) intermediates.push_back(chain[i].get());

    // A snapshot of the bundles as they are now; the TrustStore itself is immutable and
    // kept alive by config_.trust for as long as this handshake runs.
    const identity::BundleSet bundles = config_.trust->bundles();
    auto verified = identity::verify_svid(chain[0].get(), intermediates, bundles, config_.clock());
    if (!verified) {
        // Name the ID the peer claims when its leaf is well-formed, for the event; the
        // verdict stays verify_svid's.
        auto claimed = identity::validate_leaf(chain[0].get());
        const std::string who = claimed ? peer_role + " " + claimed->str() : peer_role + " X.509-SVID";
        return refuse(SSL_AD_BAD_CERTIFICATE, who + " refused: " + verified.message());
    }
    if (known) known->remember(key, *config_.trust, *verified);
    return accept(verified->id);
}

uint16_t Handshake::cipher_protocol_id() const {
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
    return c == nullptr ? 0 : SSL_CIPHER_get_protocol_id(c);
}

std::string_view Handshake::cipher_name() const {
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
    return c == nullptr ? "none" : SSL_CIPHER_standard_name(c);
}

uint16_t Handshake::protocol_version() const { return static_cast<uint16_t>(SSL_version(ssl_.get())); }

Result<TrafficKeys> Handshake::traffic_keys() const {
    const std::string where = "traffic keys (" + std::string(role_name(config_.role)) + ", fd " +
                              std::to_string(fd_) + "): ";
    if (state_ != State::done) return make_error(where + "the handshake is not done");
    // Never true with the socket BIO (no read-ahead in TLS); if it were, those bytes would
    // be lost to TLS_RX.
    if (SSL_has_pending(ssl_.get()))
        return make_error(where + "BoringSSL holds bytes read past the handshake that kTLS would never see");
    bssl::Span<const uint8_t> read_secret, write_secret;
    if (!bssl::SSL_get_traffic_secrets(ssl_.get(), &read_secret, &write_secret))
        return make_error(where + "SSL_get_traffic_secrets: " + drain_errors());
    auto cipher = cipher_from_protocol_id(cipher_protocol_id());
    if (!cipher) return make_error(where + cipher.message());
    auto tx = Secret::from({write_secret.data(), write_secret.size()});
    auto rx = Secret::from({read_secret.data(), read_secret.size()});
    if (!tx || !rx) return make_error(where + (tx ? rx.message() : tx.message()));
    return TrafficKeys{*cipher, *tx, SSL_get_write_sequence(ssl_.get()), *rx, SSL_get_read_sequence(ssl_.get())};
}

}  // namespace kw::tls
