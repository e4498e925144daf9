// The library pattern for `make bench`: kw_load's connections with BoringSSL inside the
// process (kw_load_tls), as an application linking a TLS library does. TLS 1.3 only,
// both ends present an X.509-SVID chain and require and verify the peer's against the
// root; no session tickets and no resumption, so every connection is a full handshake
// like the agent's. The cipher is steered as the agent steers it (agent/tls/handshake.h:
// this BoringSSL cannot restrict TLS 1.3 suites): AES-256-GCM by a client offering only
// CECPQ2, ChaCha20-Poly1305 by running without AES hardware in BoringSSL's view
// (OPENSSL_ia32cap). Both ends check the negotiated suite and fail on any other, so a
// wrong setup cannot measure another cipher; --peer-id also checks the peer's URI SAN.
#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "kw_load_tls links BoringSSL (android-libboringssl-dev), never OpenSSL"
#endif
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kw_load_io.h"

namespace {

struct Settings {
    std::string cert, key, ca, peer_id;
    std::string cipher = "aes-128-gcm";
    uint16_t cipher_id = 0x1301;
} settings;

bssl::UniquePtr<SSL_CTX> context;

void print_errors(const char* what) {
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    std::fprintf(stderr, "kw_load_tls: %s: %s\n", what, e ? buf : "no library error");
    ERR_clear_error();
}

bool peer_has_uri(SSL* ssl, const std::string& want) {
    bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl));
    if (!peer) return false;
    bssl::UniquePtr<GENERAL_NAMES> names(
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer.get(), NID_subject_alt_name, nullptr, nullptr)));
    if (!names) return false;
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
        if (n->type != GEN_URI) continue;
        const ASN1_STRING* uri = n->d.uniformResourceIdentifier;
        if (std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri)) == want)
            return true;
    }
    return false;
}

}  // namespace

extern "C" int kw_conn_option(const char* name, const char* value) {
    std::string n = name;
    if (n == "--cert") settings.cert = value;
    else if (n == "--key") settings.key = value;
    else if (n == "--ca") settings.ca = value;
    else if (n == "--peer-id") settings.peer_id = value;
    else if (n == "--cipher") settings.cipher = value;
    else return -1;
    return 0;
}

extern "C" int kw_conn_setup(int server) {
    if (settings.cipher == "aes-128-gcm") settings.cipher_id = 0x1301;
    else if (settings.cipher == "aes-256-gcm") settings.cipher_id = 0x1302;
    else if (settings.cipher == "chacha20-poly1305") settings.cipher_id = 0x1303;
    else {
        std::fprintf(stderr, "kw_load_tls: unknown --cipher '%s'\n", settings.cipher.c_str());
        return -1;
    }
    if (settings.cert.empty() || settings.key.empty() || settings.ca.empty()) {
        std::fprintf(stderr, "kw_load_tls: --cert, --key and --ca are required\n");
        return -1;
    }
    context.reset(SSL_CTX_new(TLS_method()));
    SSL_CTX* ctx = context.get();
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) || !SSL_CTX_set_num_tickets(ctx, 0)) {
        print_errors("setting up the TLS 1.3 context");
        return -1;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    const std::vector<int> groups = server ? std::vector<int>{NID_X25519, NID_X9_62_prime256v1, NID_CECPQ2}
                                   : settings.cipher_id == 0x1302 ? std::vector<int>{NID_CECPQ2}
                                                                  : std::vector<int>{NID_X25519, NID_X9_62_prime256v1};
    if (!SSL_CTX_set1_curves(ctx, groups.data(), groups.size())) {
        print_errors("setting key exchange groups");
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, settings.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        print_errors(("loading " + settings.cert + " and " + settings.key).c_str());
        return -1;
    }
    if (SSL_CTX_load_verify_locations(ctx, settings.ca.c_str(), nullptr) != 1) {
        print_errors(("loading " + settings.ca).c_str());
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    return 0;
}

extern "C" struct kw_conn kw_conn_start(int fd, int server) {
    kw_conn c{};
    c.fd = -1;
    bssl::UniquePtr<SSL> ssl(SSL_new(context.get()));
    if (!ssl || !SSL_set_fd(ssl.get(), fd)) {
        print_errors("SSL_new");
        close(fd);
        return c;
    }
    int rc = server ? SSL_accept(ssl.get()) : SSL_connect(ssl.get());
    if (rc != 1) {
        print_errors(server ? "handshake (server)" : "handshake (client)");
        close(fd);
        return c;
    }
    uint16_t got = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(ssl.get()));
    if (got != settings.cipher_id) {
        std::fprintf(stderr, "kw_load_tls: negotiated %s, not the %s asked for (see kw_load_tls.cpp)\n",
                     SSL_CIPHER_standard_name(SSL_get_current_cipher(ssl.get())), settings.cipher.c_str());
        close(fd);
        return c;
    }
    if (!settings.peer_id.empty() && !peer_has_uri(ssl.get(), settings.peer_id)) {
        std::fprintf(stderr, "kw_load_tls: the peer is not %s\n", settings.peer_id.c_str());
        close(fd);
        return c;
    }
    c.fd = fd;
    c.tls = ssl.release();
    return c;
}

extern "C" ssize_t kw_conn_read(struct kw_conn* c, void* buf, size_t len) {
    int n = SSL_read(static_cast<SSL*>(c->tls), buf, len > 0x7fffffff ? 0x7fffffff : static_cast<int>(len));
    if (n > 0) return n;
    int err = SSL_get_error(static_cast<SSL*>(c->tls), n);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    ERR_clear_error();
    if (err != SSL_ERROR_SYSCALL || errno == 0) errno = EPROTO;
    return err == SSL_ERROR_SYSCALL && n == 0 ? 0 : -1;
}

extern "C" int kw_conn_write_all(struct kw_conn* c, const void* buf, size_t len) {
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE a blocking SSL_write writes all or fails.
    int n = SSL_write(static_cast<SSL*>(c->tls), buf, static_cast<int>(len));
    if (n == static_cast<int>(len)) return 0;
    ERR_clear_error();
    if (errno == 0) errno = EPROTO;
    return -1;
}

extern "C" void kw_conn_close(struct kw_conn* c) {
    if (c->tls) SSL_free(static_cast<SSL*>(c->tls));
    c->tls = nullptr;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}
