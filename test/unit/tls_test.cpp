// TLS 1.3 for kTLS: the key schedule step against RFC 8448's traces, the
// kernel's crypto_info layout per cipher, and real mutual handshakes between a client and
// a server Handshake over loopback TCP, driven non-blocking in one thread: who is
// refused and why, matching keys, no ticket left on the wire, and a clear error when the
// kernel has no kTLS (the host; installation itself is proven in the VM selftest).
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <openssl/aead.h>
#include <openssl/sha.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/unique_fd.h"
#include "handshake_test_access.h"
#include "identity/authority.h"
#include "tls/handshake.h"
#include "tls/ktls.h"
#include "tls/post_handshake.h"

using Catch::Matchers::ContainsSubstring;
using kw::core::UniqueFd;
using namespace kw::identity;
using namespace kw::tls;
using namespace std::chrono_literals;

namespace {

std::vector<uint8_t> hex(std::string_view text) {
    std::vector<uint8_t> out;
    int high = -1;
    for (char c : text) {
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (v < 0) continue;
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<uint8_t>(high << 4 | v));
            high = -1;
        }
    }
    return out;
}

std::vector<uint8_t> bytes_of(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }
template <size_t N>
std::vector<uint8_t> bytes_of(const unsigned char (&a)[N]) { return {a, a + N}; }

// RFC 8448 §3 (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256).
struct TrafficVector {
    const char* name;
    const char* secret;
    const char* key;
    const char* iv;
};
constexpr TrafficVector kRfc8448[] = {
    {"server handshake", "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
     "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc", "5d 31 3e b2 67 12 76 ee 13 00 0b 30"},
    {"client handshake", "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21",
     "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"},
    {"server application", "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
     "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"},
    {"client application", "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5",
     "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", "5b 78 92 3d ee 08 57 90 33 e5 23 d9"},
};

// The suite two BoringSSL ends on this machine negotiate by default (see handshake.h).
Cipher native_cipher() { return EVP_has_aes_hardware() ? Cipher::aes_128_gcm : Cipher::chacha20_poly1305; }

// ---- identities ----------------------------------------------------------------------

struct TrustDomain {
    std::shared_ptr<const SigningAuthority> ca;
    std::shared_ptr<const TrustStore> trust;  // this trust domain's bundle only

    std::shared_ptr<const Svid> svid(const std::string& id) const {
        auto parsed = kw::core::parse_spiffe_id(id);
        REQUIRE(parsed);
        auto issued = ca->issue(*parsed, 1h, now_seconds());
        REQUIRE(issued);
        return *issued;
    }
};

TrustDomain trust_domain(const std::string& name) {
    auto ca = SigningAuthority::ephemeral(name, now_seconds());
    REQUIRE(ca);
    // The bundle lives inside the CA: share ownership instead of copying certificates.
    std::shared_ptr<const TrustBundle> bundle(*ca, &(*ca)->bundle());
    return {*ca, std::make_shared<const TrustStore>(bundle, std::vector<std::shared_ptr<const TrustBundle>>{})};
}

// ---- sockets and driving -------------------------------------------------------------

void set_nonblocking(int fd) { REQUIRE(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0); }

// An established loopback TCP connection, both ends non-blocking.
std::pair<UniqueFd, UniqueFd> tcp_pair() {
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener.valid());
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(listener.get(), 1) == 0);
    REQUIRE(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.valid());
    set_nonblocking(client.get());
    set_nonblocking(server.get());
    return {std::move(client), std::move(server)};
}

struct Side {
    HandshakeConfig config;
    std::unique_ptr<Handshake> hs;
    bool running = true;
};

// Both ends of one handshake over loopback TCP.
struct Run {
    std::pair<UniqueFd, UniqueFd> fds = tcp_pair();
    Side client, server;
    std::function<void()> on_client_done;  // runs before the server's next step

    Run(HandshakeConfig c, HandshakeConfig s) {
        c.role = Role::client;
        s.role = Role::server;
        auto ch = Handshake::create(fds.first.get(), std::move(c));
        auto sh = Handshake::create(fds.second.get(), std::move(s));
        INFO((ch ? "" : ch.message()) << (sh ? "" : sh.message()));
        REQUIRE(ch);
        REQUIRE(sh);
        client.hs = std::move(*ch);
        server.hs = std::move(*sh);
    }

    // Steps both ends until neither can go on. An end that fails shuts its socket down
    // as the agent would (it closes it), so the other end sees the end of the stream.
    void drive() {
        for (int round = 0; round < 200 && (client.running || server.running); ++round) {
            bool progressed = false;
            for (Side* side : {&client, &server}) {
                if (!side->running) continue;
                auto p = side->hs->step();
                if (!p || *p == Progress::done) {
                    side->running = false;
                    progressed = true;
                    if (!p) shutdown(side->hs->fd(), SHUT_RDWR);
                    if (p && side == &client && on_client_done) on_client_done();
                }
            }
            if (!progressed) {
                pollfd pfd[2] = {{fds.first.get(), POLLIN, 0}, {fds.second.get(), POLLIN, 0}};
                poll(pfd, 2, 100);
            }
        }
        REQUIRE_FALSE(client.running);
        REQUIRE_FALSE(server.running);
    }
};

HandshakeConfig config(std::shared_ptr<const Svid> svid, std::shared_ptr<const TrustStore> trust, PeerCheck check,
                       Cipher cipher = native_cipher()) {
    HandshakeConfig c;
    c.svid = std::move(svid);
    c.trust = std::move(trust);
    c.check_peer = std::move(check);
    c.cipher = cipher;
    return c;
}

PeerCheck allow_all() {
    return [](const kw::core::SpiffeId&) -> kw::Result<void> { return {}; };
}

kw::core::SpiffeId id_of(const char* text) {
    auto id = kw::core::parse_spiffe_id(text);
    REQUIRE(id);
    return *id;
}

// A handshake in trust domain example.org between spiffe://example.org/web (client) and
// spiffe://example.org/api (server), the client expecting the api.
struct ExampleOrg {
    TrustDomain td = trust_domain("example.org");
    std::shared_ptr<const Svid> web = td.svid("spiffe://example.org/web");
    std::shared_ptr<const Svid> api = td.svid("spiffe://example.org/api");

    Run run(Cipher cipher = native_cipher()) {
        Run r(config(web, td.trust, expect_peer_id(id_of("spiffe://example.org/api")), cipher),
              config(api, td.trust, allow_all(), cipher));
        r.drive();
        return r;
    }
};

}  // namespace

// ---- key schedule ----------------------------------------------------------------------

TEST_CASE("key and iv derived from RFC 8448's traffic secrets match its trace") {
    for (const TrafficVector& v : kRfc8448) {
        INFO(v.name);
        auto km = derive_key_material(Cipher::aes_128_gcm, hex(v.secret));
        REQUIRE(km);
        CHECK(bytes_of(km->key.bytes()) == hex(v.key));
        CHECK(bytes_of(km->iv.bytes()) == hex(v.iv));
    }
}

TEST_CASE("HKDF-Expand-Label with a context matches RFC 8448's derived secret") {
    // Derive-Secret(early_secret, "derived", "") = HKDF-Expand-Label(early, "derived", SHA-256(""), 32).
    const auto early = hex("33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a");
    uint8_t empty_hash[SHA256_DIGEST_LENGTH];
    SHA256(nullptr, 0, empty_hash);
    std::vector<uint8_t> out(32);
    REQUIRE(hkdf_expand_label(EVP_sha256(), early, "derived", empty_hash, out));
    CHECK(out == hex("6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba"));
}

TEST_CASE("a traffic secret of the wrong length for the cipher is refused") {
    const auto sha256_secret = hex(kRfc8448[0].secret);
    auto km = derive_key_material(Cipher::aes_256_gcm, sha256_secret);
    REQUIRE_FALSE(km);
    CHECK_THAT(km.message(), ContainsSubstring("TLS_AES_256_GCM_SHA384: traffic secret of 32 bytes, expected 48"));
}

TEST_CASE("AES-256-GCM keys are 32 bytes expanded with SHA-384") {
    std::vector<uint8_t> secret(48, 0x5a);
    auto km = derive_key_material(Cipher::aes_256_gcm, secret);
    REQUIRE(km);
    std::vector<uint8_t> want(32);
    REQUIRE(hkdf_expand_label(EVP_sha384(), secret, "key", {}, want));
    CHECK(bytes_of(km->key.bytes()) == want);
    CHECK(km->iv.size() == 12);
}

// ---- crypto_info -----------------------------------------------------------------------

// What CryptoInfo::build gives for SECRET at SEQUENCE, read back as the kernel's struct.
template <typename Info>
Info built_crypto_info(Cipher cipher, std::span<const uint8_t> secret, uint64_t sequence, uint16_t cipher_type) {
    auto ci = CryptoInfo::build(cipher, secret, sequence);
    REQUIRE(ci);
    REQUIRE(ci->size() == sizeof(Info));
    Info info;
    std::memcpy(&info, ci->data(), sizeof info);
    CHECK(info.info.version == TLS_1_3_VERSION);
    CHECK(info.info.cipher_type == cipher_type);
    return info;
}

TEST_CASE("AES-128-GCM crypto_info splits the iv into salt and explicit iv, rec_seq big-endian") {
    const TrafficVector& v = kRfc8448[2];
    auto info = built_crypto_info<tls12_crypto_info_aes_gcm_128>(Cipher::aes_128_gcm, hex(v.secret),
                                                                 0x0102030405060708ULL, TLS_CIPHER_AES_GCM_128);
    CHECK(bytes_of(info.key) == hex(v.key));
    CHECK(bytes_of(info.salt) == hex("cf 78 2b 88"));
    CHECK(bytes_of(info.iv) == hex("dd 83 54 9a ad f1 e9 84"));
    CHECK(bytes_of(info.rec_seq) == hex("01 02 03 04 05 06 07 08"));
}

TEST_CASE("AES-256-GCM crypto_info carries a 32-byte key and the same salt/iv split") {
    std::vector<uint8_t> secret(48, 0xa5);
    auto km = derive_key_material(Cipher::aes_256_gcm, secret);
    REQUIRE(km);
    auto info =
        built_crypto_info<tls12_crypto_info_aes_gcm_256>(Cipher::aes_256_gcm, secret, 7, TLS_CIPHER_AES_GCM_256);
    const auto iv = bytes_of(km->iv.bytes());
    CHECK(bytes_of(info.key) == bytes_of(km->key.bytes()));
    CHECK(bytes_of(info.salt) == std::vector<uint8_t>(iv.begin(), iv.begin() + 4));
    CHECK(bytes_of(info.iv) == std::vector<uint8_t>(iv.begin() + 4, iv.end()));
    CHECK(bytes_of(info.rec_seq) == hex("00 00 00 00 00 00 00 07"));
}

TEST_CASE("ChaCha20-Poly1305 crypto_info has all 12 iv bytes in iv and no salt") {
    const TrafficVector& v = kRfc8448[3];
    auto km = derive_key_material(Cipher::chacha20_poly1305, hex(v.secret));
    REQUIRE(km);
    auto info = built_crypto_info<tls12_crypto_info_chacha20_poly1305>(
        Cipher::chacha20_poly1305, hex(v.secret), 0xfffffffffffffffeULL, TLS_CIPHER_CHACHA20_POLY1305);
    CHECK(bytes_of(info.iv) == hex(v.iv));
    CHECK(km->key.size() == 32);
    CHECK(bytes_of(info.key) == bytes_of(km->key.bytes()));
    CHECK(bytes_of(info.rec_seq) == hex("ff ff ff ff ff ff ff fe"));
}

TEST_CASE("cipher suites are named and parsed by IANA name and short name") {
    CHECK(cipher_name(Cipher::aes_256_gcm) == "TLS_AES_256_GCM_SHA384");
    CHECK(*cipher_from_protocol_id(0x1303) == Cipher::chacha20_poly1305);
    auto ccm = cipher_from_protocol_id(0x1304);
    REQUIRE_FALSE(ccm);
    CHECK_THAT(ccm.message(), ContainsSubstring("0x1304"));
    CHECK(*parse_cipher("aes-128-gcm") == Cipher::aes_128_gcm);
    CHECK(*parse_cipher("TLS_CHACHA20_POLY1305_SHA256") == Cipher::chacha20_poly1305);
    CHECK_FALSE(parse_cipher("aes-128-ccm"));
}

// ---- handshakes ------------------------------------------------------------------------

TEST_CASE("a mutual TLS 1.3 handshake gives each end the other's SPIFFE ID") {
    ExampleOrg org;
    Run r = org.run();
    INFO("client: " << r.client.hs->failure() << " server: " << r.server.hs->failure());
    REQUIRE(r.client.hs->done());
    REQUIRE(r.server.hs->done());
    CHECK(r.client.hs->peer_id().str() == "spiffe://example.org/api");
    CHECK(r.server.hs->peer_id().str() == "spiffe://example.org/web");
    CHECK(r.client.hs->protocol_version() == TLS1_3_VERSION);
    CHECK(r.server.hs->protocol_version() == TLS1_3_VERSION);
    CHECK(r.client.hs->cipher_protocol_id() == static_cast<uint16_t>(native_cipher()));
    CHECK(r.client.hs->cipher_name() == cipher_name(native_cipher()));
    CHECK(r.client.hs->failure().empty());
}

TEST_CASE("client and server derive the same keys for each direction") {
    ExampleOrg org;
    Run r = org.run();
    REQUIRE(r.client.hs->done());
    REQUIRE(r.server.hs->done());
    auto c = r.client.hs->traffic_keys();
    auto s = r.server.hs->traffic_keys();
    REQUIRE(c);
    REQUIRE(s);
    CHECK(c->cipher == native_cipher());
    CHECK(c->tx_secret.size() == 32);
    CHECK(c->tx_secret == s->rx_secret);
    CHECK(c->rx_secret == s->tx_secret);
    CHECK_FALSE(c->tx_secret == c->rx_secret);
    CHECK(c->tx_sequence == s->rx_sequence);
    CHECK(c->rx_sequence == s->tx_sequence);
    auto client_tx = CryptoInfo::build(c->cipher, c->tx_secret.bytes(), c->tx_sequence);
    auto server_rx = CryptoInfo::build(s->cipher, s->rx_secret.bytes(), s->rx_sequence);
    REQUIRE(client_tx);
    REQUIRE(server_rx);
    CHECK(bytes_of(client_tx->bytes()) == bytes_of(server_rx->bytes()));
}

TEST_CASE("no session ticket or other record follows the handshake on the wire") {
    ExampleOrg org;
    Run r = org.run();
    REQUIRE(r.client.hs->done());
    REQUIRE(r.server.hs->done());
    // This BoringSSL seals a TLS 1.3 server's NewSessionTickets only at its next write:
    // a zero-byte write flushes whatever the server would still send.
    SSL* server_ssl = kw::tls::HandshakeTestAccess::ssl(*r.server.hs);
    REQUIRE(SSL_write(server_ssl, "", 0) >= 0);
    CHECK(SSL_get_write_sequence(server_ssl) == 0);
    // Anything sent would sit in the client's receive queue, unread by BoringSSL.
    for (int fd : {r.fds.first.get(), r.fds.second.get()}) {
        char byte;
        errno = 0;
        CHECK(recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == -1);
        CHECK(errno == EAGAIN);
    }
    auto c = r.client.hs->traffic_keys();
    REQUIRE(c);
    CHECK(c->rx_sequence == 0);
    CHECK(c->tx_sequence == 0);
}

TEST_CASE("application data right behind the client's Finished stays in the server's socket") {
    ExampleOrg org;
    Run r(config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api"))),
          config(org.api, org.td.trust, allow_all()));
    // The client is done before the server has read its Finished: these bytes arrive
    // together with the last handshake records, as a workload's first write would.
    const std::string first_write = "GET / HTTP/1.1\r\n";
    bool sent = false;
    r.on_client_done = [&] {
        REQUIRE(send(r.fds.first.get(), first_write.data(), first_write.size(), 0) ==
                static_cast<ssize_t>(first_write.size()));
        sent = true;
    };
    r.drive();
    REQUIRE(sent);
    REQUIRE(r.server.hs->done());
    auto keys = r.server.hs->traffic_keys();
    REQUIRE(keys);
    CHECK(keys->rx_sequence == 0);
    // Nagle may hold the small write until the handshake segment is acknowledged.
    pollfd pfd{r.fds.second.get(), POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 2000) == 1);
    std::string got(64, '\0');
    ssize_t n = recv(r.fds.second.get(), got.data(), got.size(), MSG_DONTWAIT);
    INFO("recv: " << std::strerror(errno));
    REQUIRE(n >= 0);
    got.resize(static_cast<size_t>(n));
    CHECK(got == first_write);
}

TEST_CASE("AES-256-GCM is negotiated when both ends are configured for it") {
    if (!EVP_has_aes_hardware()) SKIP("no AES hardware: BoringSSL's server picks ChaCha20-Poly1305 here");
    ExampleOrg org;
    Run r = org.run(Cipher::aes_256_gcm);
    INFO("client: " << r.client.hs->failure() << " server: " << r.server.hs->failure());
    REQUIRE(r.client.hs->done());
    REQUIRE(r.server.hs->done());
    CHECK(r.client.hs->cipher_protocol_id() == 0x1302);
    CHECK(r.server.hs->cipher_name() == "TLS_AES_256_GCM_SHA384");
    auto keys = r.client.hs->traffic_keys();
    REQUIRE(keys);
    CHECK(keys->cipher == Cipher::aes_256_gcm);
    CHECK(keys->tx_secret.size() == 48);
}

TEST_CASE("the configured suite is a preference: a client takes the suite the server picks") {
    // The suite this machine does not negotiate by default.
    const Cipher wanted = native_cipher() == Cipher::aes_128_gcm ? Cipher::chacha20_poly1305 : Cipher::aes_128_gcm;
    ExampleOrg org;
    Run r = org.run(wanted);
    INFO("client: " << r.client.hs->failure());
    REQUIRE(r.client.hs->done());
    REQUIRE(r.server.hs->done());
    CHECK(r.client.hs->cipher() == native_cipher());
    CHECK(r.client.hs->traffic_keys());
}

TEST_CASE("a destination's required suite refuses any other, naming both suites; the server takes it") {
    const Cipher wanted = native_cipher() == Cipher::aes_128_gcm ? Cipher::chacha20_poly1305 : Cipher::aes_128_gcm;
    ExampleOrg org;
    HandshakeConfig client = config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api")));
    client.require = wanted;
    Run r(std::move(client), config(org.api, org.td.trust, allow_all()));
    r.drive();
    CHECK_FALSE(r.client.hs->done());
    CHECK_THAT(r.client.hs->failure(), ContainsSubstring("negotiated " + std::string(cipher_name(native_cipher())) +
                                                         " but the destination requires " +
                                                         std::string(cipher_name(wanted))));
    CHECK_FALSE(r.client.hs->traffic_keys());
    // The server is done with whatever suite the client's offer decided: the refusing
    // client's agent shuts the socket, so the server app sees an EOF, never data.
    REQUIRE(r.server.hs->done());
    CHECK(r.server.hs->cipher() == native_cipher());
}

TEST_CASE("the client refuses a server with another SPIFFE ID and names both IDs") {
    ExampleOrg org;
    auto other = org.td.svid("spiffe://example.org/db");
    Run r(config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api"))),
          config(other, org.td.trust, allow_all()));
    r.drive();
    CHECK_FALSE(r.client.hs->done());
    CHECK_FALSE(r.server.hs->done());
    CHECK(r.client.hs->failure() == "server spiffe://example.org/db refused: expected spiffe://example.org/api");
    CHECK_THAT(r.server.hs->failure(), ContainsSubstring("ACCESS_DENIED"));
}

TEST_CASE("the client refuses a server whose CA is not in its bundle") {
    ExampleOrg org;
    TrustDomain impostor = trust_domain("example.org");  // same name, another CA
    Run r(config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api"))),
          config(impostor.svid("spiffe://example.org/api"), impostor.trust, allow_all()));
    r.drive();
    CHECK_FALSE(r.client.hs->done());
    CHECK_THAT(r.client.hs->failure(), ContainsSubstring("server spiffe://example.org/api refused: X509-SVID chain:"));
    CHECK_THAT(r.client.hs->failure(), ContainsSubstring("trust domain 'example.org'"));
    CHECK_FALSE(r.server.hs->done());
}

TEST_CASE("the server refuses a client from a trust domain it has no bundle for") {
    ExampleOrg org;
    TrustDomain other = trust_domain("other.org");
    Run r(config(other.svid("spiffe://other.org/web"), org.td.trust,
                 expect_peer_id(id_of("spiffe://example.org/api"))),
          config(org.api, org.td.trust, allow_all()));
    r.drive();
    CHECK_FALSE(r.server.hs->done());
    CHECK(r.server.hs->failure() ==
          "client spiffe://other.org/web refused: X509-SVID chain: no trust bundle for trust domain 'other.org'");
    // TLS 1.3: the client has finished before the server reads its certificate; it
    // learns of the refusal only when the connection is reset.
    CHECK(r.client.hs->peer_id().str() == "spiffe://example.org/api");
}

TEST_CASE("the server's check refuses a client and its reason is kept") {
    ExampleOrg org;
    PeerCheck policy = [](const kw::core::SpiffeId& peer) -> kw::Result<void> {
        if (peer.path == "/web") return kw::make_error("no rule lets spiffe://example.org/web reach this service");
        return {};
    };
    Run r(config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api"))),
          config(org.api, org.td.trust, policy));
    r.drive();
    CHECK_FALSE(r.server.hs->done());
    CHECK(r.server.hs->failure() ==
          "client spiffe://example.org/web refused: no rule lets spiffe://example.org/web reach this service");
    auto step = r.server.hs->step();  // the failure is final
    REQUIRE_FALSE(step);
    CHECK(step.message() == r.server.hs->failure());
}

TEST_CASE("peer certificates are validated at the handshake's clock") {
    ExampleOrg org;
    HandshakeConfig client = config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api")));
    client.clock = [] { return now_seconds() + 2h; };  // the server's 1 h SVID has expired
    Run r(std::move(client), config(org.api, org.td.trust, allow_all()));
    r.drive();
    CHECK_FALSE(r.client.hs->done());
    CHECK_THAT(r.client.hs->failure(),
               ContainsSubstring("server spiffe://example.org/api refused: X509-SVID chain: certificate has expired"));
}

TEST_CASE("a handshake is refused at setup without an SVID, a trust store or a peer check") {
    auto [a, b] = tcp_pair();
    ExampleOrg org;
    HandshakeConfig c = config(org.web, org.td.trust, allow_all());
    c.svid.reset();
    auto no_svid = Handshake::create(a.get(), c);
    REQUIRE_FALSE(no_svid);
    CHECK_THAT(no_svid.message(), ContainsSubstring("no SVID"));
    c = config(org.web, nullptr, allow_all());
    CHECK_THAT(Handshake::create(a.get(), c).message(), ContainsSubstring("no trust store"));
    c = config(org.web, org.td.trust, nullptr);
    CHECK_THAT(Handshake::create(a.get(), c).message(), ContainsSubstring("no check for the peer"));
}

TEST_CASE("traffic keys are refused before the handshake is done") {
    auto [a, b] = tcp_pair();
    ExampleOrg org;
    auto hs = Handshake::create(a.get(), config(org.web, org.td.trust, allow_all()));
    REQUIRE(hs);
    REQUIRE((*hs)->step());
    auto keys = (*hs)->traffic_keys();
    REQUIRE_FALSE(keys);
    CHECK_THAT(keys.message(), ContainsSubstring("the handshake is not done"));
}

// ---- kTLS on this kernel -----------------------------------------------------------------

TEST_CASE("installing kTLS where the kernel has none fails and says to load the tls module") {
    if (probe_ktls()) SKIP("this kernel has kTLS; installation is covered by kw_ktls_selftest in the VM");
    ExampleOrg org;
    Run r = org.run();
    REQUIRE(r.client.hs->done());
    auto keys = r.client.hs->traffic_keys();
    REQUIRE(keys);
    auto installed = install_ktls(r.fds.first.get(), *keys);
    REQUIRE_FALSE(installed);
    CHECK_THAT(installed.message(), ContainsSubstring("SOL_TCP, TCP_ULP, \"tls\"): No such file or directory"));
    CHECK_THAT(installed.message(), ContainsSubstring("modprobe tls"));
}

TEST_CASE("the kTLS probe names the missing piece") {
    auto probe = probe_ktls(Cipher::chacha20_poly1305);
    if (probe) SKIP("this kernel has kTLS with ChaCha20-Poly1305");
    CHECK_THAT(probe.message(), ContainsSubstring("kTLS probe (TLS_CHACHA20_POLY1305_SHA256, loopback TCP)"));
    CHECK_THAT(probe.message(), ContainsSubstring("modprobe tls"));
}

// ---- after the handshake: the server's session tickets -------------------------------

namespace {

// A handshake whose server sends BoringSSL's default session tickets, as third-party
// servers do; the client's receive keys are then where kTLS would take over.
struct TicketRun {
    ExampleOrg org;
    std::unique_ptr<Run> r;
    TrafficKeys keys;

    explicit TicketRun(bool tickets) {
        r = std::make_unique<Run>(config(org.web, org.td.trust, expect_peer_id(id_of("spiffe://example.org/api"))),
                                  config(org.api, org.td.trust, allow_all()));
        if (tickets) {
            SSL* server = HandshakeTestAccess::ssl(*r->server.hs);
            SSL_clear_options(server, SSL_OP_NO_TICKET);
            REQUIRE(SSL_CTX_set_num_tickets(SSL_get_SSL_CTX(server), 2));
        }
        r->drive();
        REQUIRE(r->client.hs->done());
        auto k = r->client.hs->traffic_keys();
        REQUIRE(k);
        keys = std::move(*k);
    }
    SSL* server() { return HandshakeTestAccess::ssl(*r->server.hs); }
    int client_fd() { return r->fds.first.get(); }

    // Reads records until one that is not tickets, consuming the tickets; counts them.
    NextRecord skip_tickets(int& tickets) {
        for (int i = 0; i < 10; ++i) {
            pollfd pfd{client_fd(), POLLIN, 0};
            poll(&pfd, 1, 1000);
            auto next = peek_record(client_fd(), keys);
            INFO((next ? "" : next.message()));
            REQUIRE(next);
            if (next->kind != NextRecord::ticket_record) return *next;
            REQUIRE(consume_record(client_fd(), next->length));
            keys.rx_sequence++;
            tickets += next->tickets;
        }
        FAIL("more than 10 ticket records");
        return {};
    }
};

}  // namespace

TEST_CASE("a server's session tickets are read and dropped, and its data after them stays on the socket for kTLS") {
    TicketRun t(true);
    REQUIRE(SSL_write(t.server(), "hello", 5) == 5);
    int tickets = 0;
    NextRecord next = t.skip_tickets(tickets);
    CHECK(tickets == 2);  // BoringSSL's default, as OpenSSL's
    CHECK(next.kind == NextRecord::other);
    CHECK(next.handshake_type == 0);
    CHECK(next.length == 5 + 5 + 1 + 16);  // header, "hello", content type, tag: still queued, unread
    std::vector<uint8_t> queued(64);
    CHECK(recv(t.client_fd(), queued.data(), queued.size(), MSG_PEEK | MSG_DONTWAIT) == static_cast<ssize_t>(next.length));
}

TEST_CASE("a kwarden server sends no ticket: its first record after the handshake is its data") {
    TicketRun t(false);
    REQUIRE(SSL_write(t.server(), "hi", 2) == 2);
    int tickets = 0;
    CHECK(t.skip_tickets(tickets).kind == NextRecord::other);
    CHECK(tickets == 0);
}

TEST_CASE("nothing yet after the handshake is incomplete; a closed peer is closed; a KeyUpdate is named") {
    TicketRun t(false);
    auto nothing = peek_record(t.client_fd(), t.keys);
    REQUIRE(nothing);
    CHECK(nothing->kind == NextRecord::incomplete);
    REQUIRE(SSL_key_update(t.server(), SSL_KEY_UPDATE_NOT_REQUESTED));
    REQUIRE(SSL_write(t.server(), "x", 1) == 1);
    int tickets = 0;
    CHECK(t.skip_tickets(tickets).kind == NextRecord::key_update);

    TicketRun quiet(false);
    shutdown(quiet.r->fds.second.get(), SHUT_WR);
    CHECK(quiet.skip_tickets(tickets).kind == NextRecord::closed);
}

TEST_CASE("a record that does not decrypt with the receive keys is an error, not a guess") {
    TicketRun t(true);
    REQUIRE(SSL_write(t.server(), "x", 1) == 1);  // BoringSSL's server flushes its tickets with its first write
    t.keys.rx_sequence += 5;                       // the wrong nonce
    pollfd pfd{t.client_fd(), POLLIN, 0};
    poll(&pfd, 1, 1000);
    auto next = peek_record(t.client_fd(), t.keys);
    REQUIRE_FALSE(next);
    CHECK_THAT(next.message(), ContainsSubstring("does not decrypt"));
}

TEST_CASE("the ticket count of a server only grows, and 'none' is learned again after a while") {
    TicketMemory m;
    const auto t0 = TicketMemory::Clock::time_point{} + 1h;
    CHECK_FALSE(m.known("a", t0));
    m.learn("a", 2, t0);
    m.learn("a", 1, t0 + 1s);  // fewer this time: a slow server keeps its count
    CHECK(m.known("a", t0 + 2s) == 2);
    CHECK(m.known("a", t0 + 1h) == 2);
    m.learn("b", 0, t0);
    CHECK(m.known("b", t0 + 59s) == 0);
    CHECK_FALSE(m.known("b", t0 + 61s));  // asked again: its tickets may have come late once
    m.learn("b", 2, t0 + 62s);
    CHECK(m.known("b", t0 + 63s) == 2);
}

TEST_CASE("handshakes with one SVID, role and suite share one TLS context; a rotated SVID gets its own") {
    ExampleOrg org;
    ContextCache cache;
    auto with_cache = [&](std::shared_ptr<const Svid> svid, PeerCheck check) {
        HandshakeConfig c = config(std::move(svid), org.td.trust, std::move(check));
        c.contexts = &cache;
        return c;
    };
    for (int i = 0; i < 3; i++) {
        Run r(with_cache(org.web, expect_peer_id(id_of("spiffe://example.org/api"))), with_cache(org.api, allow_all()));
        r.drive();
        REQUIRE(r.client.hs->done());
        REQUIRE(r.server.hs->done());
        CHECK(r.client.hs->peer_id().str() == "spiffe://example.org/api");
        CHECK(r.server.hs->peer_id().str() == "spiffe://example.org/web");
        CHECK(SSL_get_SSL_CTX(HandshakeTestAccess::ssl(*r.client.hs)) !=
              SSL_get_SSL_CTX(HandshakeTestAccess::ssl(*r.server.hs)));
    }
    CHECK(cache.made() == 2);  // the client's and the server's, once each
    CHECK(cache.size() == 2);
    // The web SVID rotated: a context of its own, with the new certificate.
    auto rotated = org.td.svid("spiffe://example.org/web");
    REQUIRE(rotated->fingerprint != org.web->fingerprint);
    Run r(with_cache(rotated, expect_peer_id(id_of("spiffe://example.org/api"))), with_cache(org.api, allow_all()));
    r.drive();
    REQUIRE(r.client.hs->done());
    CHECK(cache.made() == 3);
    X509* presented = SSL_get_certificate(HandshakeTestAccess::ssl(*r.client.hs));
    REQUIRE(presented != nullptr);
    CHECK(X509_cmp(presented, rotated->cert.get()) == 0);
}

TEST_CASE("a chain verified once is not validated again, yet expiry, a replaced bundle and the peer check still refuse") {
    ExampleOrg org;
    ContextCache cache;
    auto server_cfg = [&](PeerCheck check, std::shared_ptr<const TrustStore> trust) {
        HandshakeConfig s = config(org.api, std::move(trust), std::move(check));
        s.contexts = &cache;
        return s;
    };
    auto client_cfg = [&](std::shared_ptr<const Svid> svid) {
        HandshakeConfig c = config(std::move(svid), org.td.trust, expect_peer_id(id_of("spiffe://example.org/api")));
        c.contexts = &cache;
        return c;
    };
    // First: both chains validated and remembered; then both found.
    for (int i = 0; i < 2; i++) {
        Run r(client_cfg(org.web), server_cfg(allow_all(), org.td.trust));
        r.drive();
        REQUIRE(r.client.hs->done());
        REQUIRE(r.server.hs->done());
        CHECK(r.server.hs->peer_id().str() == "spiffe://example.org/web");
    }
    CHECK(cache.chains().size() == 2);  // the client's chain and the server's
    CHECK(cache.chains().hits() == 2);  // the second time, each end found the other's

    // A hit still goes through the caller's check of the ID.
    {
        PeerCheck refuse_web = [](const kw::core::SpiffeId&) -> kw::Result<void> { return kw::make_error("not today"); };
        Run r(client_cfg(org.web), server_cfg(refuse_web, org.td.trust));
        r.drive();
        CHECK(cache.chains().hits() == 4);
        CHECK_FALSE(r.server.hs->done());
        CHECK(r.server.hs->failure() == "client spiffe://example.org/web refused: not today");
    }
    // A hit at a time past the chain's validity is refused: validated again, and expired.
    {
        HandshakeConfig late = server_cfg(allow_all(), org.td.trust);
        late.clock = [] { return now_seconds() + 2h; };
        Run r(client_cfg(org.web), std::move(late));
        r.drive();
        CHECK(cache.chains().hits() == 5);  // the client's, at the real time
        CHECK_FALSE(r.server.hs->done());
        CHECK_THAT(r.server.hs->failure(), ContainsSubstring("certificate has expired"));
    }
    // The bundle replaced (the CA rotated out, another in under the same name): the
    // chain remembered against the old bundle is validated anew and refused.
    {
        TrustDomain successor = trust_domain("example.org");
        const uint64_t hits = cache.chains().hits();
        Run r(client_cfg(org.web), server_cfg(allow_all(), successor.trust));
        r.drive();
        CHECK(cache.chains().hits() == hits + 1);  // the client's only
        CHECK(cache.chains().size() == 1);         // the server's entry is gone
        CHECK_FALSE(r.server.hs->done());
        CHECK_THAT(r.server.hs->failure(), ContainsSubstring("client spiffe://example.org/web refused: X509-SVID chain:"));
    }
    // Other bytes, another entry: a rotated client SVID is validated, then found.
    auto rotated = org.td.svid("spiffe://example.org/web");
    for (int i = 0; i < 2; i++) {
        Run r(client_cfg(rotated), server_cfg(allow_all(), org.td.trust));
        r.drive();
        REQUIRE(r.server.hs->done());
    }
    CHECK(cache.chains().size() == 2);
}

TEST_CASE("chain keys cover every certificate's bytes and its boundaries") {
    using Key = kw::identity::VerifiedChains::Key;
    const std::vector<uint8_t> a = {1, 2, 3}, b = {4}, ab = {1, 2, 3, 4};
    auto key = [](std::vector<std::span<const uint8_t>> ders) -> Key { return kw::identity::VerifiedChains::key_of(ders); };
    CHECK(key({a, b}) == key({a, b}));
    CHECK(key({a, b}) != key({ab}));
    CHECK(key({a, b}) != key({b, a}));
    CHECK(key({a}) != key({a, b}));
}

TEST_CASE("a handshake's deepest stack fits in half of a handshake worker's stack") {
    // Both ends of a first handshake (contexts made, chains verified) on one thread whose
    // stack is kHandshakeStackBytes painted with a pattern: what the steps overwrote is
    // what they used.
    struct Job {
        ExampleOrg* org;
        bool done = false;
    };
    ExampleOrg org;
    Job job{&org};
    const size_t size = kHandshakeStackBytes;
    void* stack = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    REQUIRE(stack != MAP_FAILED);
    std::memset(stack, 0xa5, size);
    pthread_attr_t attr;
    REQUIRE(pthread_attr_init(&attr) == 0);
    REQUIRE(pthread_attr_setstack(&attr, stack, size) == 0);
    pthread_t thread{};
    auto body = [](void* arg) -> void* {
        auto* j = static_cast<Job*>(arg);
        try {  // a failed REQUIRE is recorded, and must not leave the thread
            ContextCache cache;  // contexts made on this stack too
            HandshakeConfig c = config(j->org->web, j->org->td.trust, expect_peer_id(id_of("spiffe://example.org/api")));
            HandshakeConfig s = config(j->org->api, j->org->td.trust, allow_all());
            c.contexts = s.contexts = &cache;
            Run r(std::move(c), std::move(s));
            r.drive();
            j->done = r.client.hs->done() && r.server.hs->done();
        } catch (...) {
        }
        return nullptr;
    };
    REQUIRE(pthread_create(&thread, &attr, body, &job) == 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attr);
    const auto* bytes = static_cast<const uint8_t*>(stack);
    size_t untouched = 0;  // the stack grows down: from the lowest address up
    while (untouched < size && bytes[untouched] == 0xa5) ++untouched;
    munmap(stack, size);
    const size_t used = size - untouched;
    INFO("stack used: " << used << " of " << size << " bytes");
    CHECK(job.done);
    CHECK(used > 4096);  // the measure saw the work
    CHECK(used < size / 2);
}
