// kw_ktls_selftest: proves on a real kernel (the VM; `modprobe tls` first) that the keys
// agent/tls derives are the ones the handshake negotiated. For each cipher it can
// negotiate, over loopback TCP:
//   A. kwarden client ⇄ kwarden server, kTLS installed on both sockets: a small message
//      and 8 MiB each way with plain write()/read(), compared byte-exact;
//      getsockopt(SOL_TLS, TLS_TX/TLS_RX) reports the cipher, /proc/net/tls_stat counts
//      the software kTLS sockets;
//   B. kwarden client with kTLS ⇄ a BoringSSL server that keeps its own record layer;
//   C. a BoringSSL client with its own record layer ⇄ kwarden server with kTLS.
//   D. a record the kernel sends with our crypto_info (record number 5) opens with
//      BoringSSL's AEAD under the expected key and iv: for AES-128-GCM those of RFC 8448
//      for its server application traffic secret, independent of our derivation.
// A alone would pass with keys derived wrongly in the same way on both ends; B and C
// check them against BoringSSL's records, in both roles; D checks the layout without
// any handshake.
//
// Which ciphers a handshake can negotiate depends on AES hardware (see
// agent/tls/handshake.h). With it, ChaCha20-Poly1305 runs in a child started with
// OPENSSL_ia32cap clearing AES-NI; without it (QEMU's default CPU), the AES suites get D
// only and say so. One line per cipher; exit status 1 on any failure.
#include <openssl/aead.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/unique_fd.h"
#include "identity/authority.h"
#include "tls/handshake.h"
#include "tls/ktls.h"

namespace {

using kw::Error;
using kw::make_error;
using kw::Result;
using kw::core::UniqueFd;
using namespace kw::tls;
using namespace kw::identity;

constexpr size_t kBulkBytes = 8u << 20;
constexpr char kNoAesNi[] = "~0x200000000000000";  // OPENSSL_ia32cap: clear CPUID.1:ECX.AESNI

std::string errno_text() { return std::strerror(errno); }

// ---- setup ---------------------------------------------------------------------------

struct Identities {
    std::shared_ptr<const SigningAuthority> ca;
    std::shared_ptr<const TrustStore> trust;
    std::shared_ptr<const Svid> client, server;
};

Result<Identities> make_identities() {
    auto ca = SigningAuthority::ephemeral("selftest.example", now_seconds());
    if (!ca) return ca.error();
    Identities ids{*ca, nullptr, nullptr, nullptr};
    std::shared_ptr<const TrustBundle> bundle(ids.ca, &ids.ca->bundle());
    ids.trust = std::make_shared<const TrustStore>(bundle, std::vector<std::shared_ptr<const TrustBundle>>{});
    for (auto [path, out] : {std::pair{"/client", &ids.client}, std::pair{"/server", &ids.server}}) {
        auto id = kw::core::parse_spiffe_id(std::string("spiffe://selftest.example") + path);
        if (!id) return id.error();
        auto svid = ids.ca->issue(*id, std::chrono::hours(1), now_seconds());
        if (!svid) return svid.error();
        *out = *svid;
    }
    return ids;
}

// A connected loopback TCP pair, both ends non-blocking for the handshake.
Result<std::pair<UniqueFd, UniqueFd>> loopback_pair() {
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (!listener.valid() || bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener.get(), 1) != 0 || getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        return make_error("loopback listener: " + errno_text());
    UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client.valid() || connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return make_error("loopback connect: " + errno_text());
    UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!server.valid()) return make_error("loopback accept: " + errno_text());
    fcntl(client.get(), F_SETFL, fcntl(client.get(), F_GETFL) | O_NONBLOCK);
    return std::pair{std::move(client), std::move(server)};
}

void set_blocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK); }

// One end of a handshake as the driver sees it: one non-blocking step.
using Stepper = std::function<Result<Progress>()>;

Stepper kwarden_end(Handshake& hs) {
    return [&hs] { return hs.step(); };
}

// BoringSSL on its own, with its record layer kept for the data: the reference the
// kTLS end is checked against. It verifies nothing (the kwarden end does), sends no
// ticket (the kTLS end would read it as EIO), and offers the groups that steer the
// cipher as the kwarden client does (see handshake.h).
Result<bssl::UniquePtr<SSL>> reference_end(int fd, Role role, const Svid& svid, Cipher cipher) {
    bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
    const std::vector<int> groups = role == Role::server ? std::vector<int>{NID_X25519, NID_CECPQ2}
                                    : cipher == Cipher::aes_256_gcm ? std::vector<int>{NID_CECPQ2}
                                                                    : std::vector<int>{NID_X25519};
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) &&
              SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) && SSL_CTX_set_num_tickets(ctx.get(), 0) &&
              SSL_CTX_set1_curves(ctx.get(), groups.data(), groups.size()) &&
              SSL_CTX_use_certificate(ctx.get(), svid.cert.get()) && SSL_CTX_use_PrivateKey(ctx.get(), svid.key.get());
    for (const X509Ptr& inter : svid.intermediates) ok = ok && SSL_CTX_add1_chain_cert(ctx.get(), inter.get());
    bssl::UniquePtr<SSL> ssl(ok ? SSL_new(ctx.get()) : nullptr);
    if (!ssl || !SSL_set_fd(ssl.get(), fd)) return make_error("BoringSSL reference end: setup failed");
    role == Role::server ? SSL_set_accept_state(ssl.get()) : SSL_set_connect_state(ssl.get());
    return ssl;
}

Stepper reference_stepper(SSL* ssl) {
    return [ssl]() -> Result<Progress> {
        int rc = SSL_do_handshake(ssl);
        if (rc == 1) return Progress::done;
        int err = SSL_get_error(ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return Progress::want_read;
        if (err == SSL_ERROR_WANT_WRITE) return Progress::want_write;
        char buf[160];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        return make_error(std::string("BoringSSL reference end: ") + buf);
    };
}

// Runs both ends to completion in this thread, waiting in poll() for whatever each
// last asked for.
Result<void> drive(int client_fd, Stepper client, int server_fd, Stepper server) {
    struct End {
        int fd;
        Stepper step;
        short wait = 0;  // 0: done
        const char* name;
    } ends[2] = {{client_fd, std::move(client), POLLOUT, "client"}, {server_fd, std::move(server), POLLIN, "server"}};
    for (int rounds = 0; ends[0].wait != 0 || ends[1].wait != 0; ++rounds) {
        if (rounds > 1000) return make_error("handshake did not finish in 1000 rounds");
        for (End& e : ends) {
            if (e.wait == 0) continue;
            auto p = e.step();
            if (!p) return make_error(std::string(e.name) + ": " + p.message());
            e.wait = *p == Progress::done ? 0 : *p == Progress::want_read ? POLLIN : POLLOUT;
        }
        pollfd pfds[2] = {{ends[0].fd, ends[0].wait, 0}, {ends[1].fd, ends[1].wait, 0}};
        poll(pfds, 2, 50);
    }
    return {};
}

// ---- data ----------------------------------------------------------------------------

using Writer = std::function<bool(const uint8_t*, size_t)>;  // writes all or fails
using Reader = std::function<ssize_t(uint8_t*, size_t)>;     // like read()

Writer fd_writer(int fd) {
    return [fd](const uint8_t* p, size_t n) {
        while (n > 0) {
            ssize_t w = write(fd, p, n);
            if (w <= 0) return false;
            p += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    };
}
Reader fd_reader(int fd) {
    return [fd](uint8_t* p, size_t n) { return read(fd, p, n); };
}
Writer ssl_writer(SSL* ssl) {
    return [ssl](const uint8_t* p, size_t n) {
        while (n > 0) {
            int chunk = static_cast<int>(std::min<size_t>(n, 1 << 20));
            int w = SSL_write(ssl, p, chunk);
            if (w <= 0) return false;
            p += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    };
}
Reader ssl_reader(SSL* ssl) {
    return [ssl](uint8_t* p, size_t n) -> ssize_t {
        int r = SSL_read(ssl, p, static_cast<int>(std::min<size_t>(n, 1 << 20)));
        return r > 0 ? r : -1;
    };
}

// Sends DATA through WRITE (in a thread, so large transfers cannot deadlock) and checks
// that READ yields exactly DATA.
Result<void> transfer(const std::vector<uint8_t>& data, const Writer& write_all, const Reader& read_some,
                      const std::string& what) {
    bool wrote = false;
    std::thread writer([&] { wrote = write_all(data.data(), data.size()); });
    std::vector<uint8_t> got(data.size());
    size_t have = 0;
    while (have < got.size()) {
        ssize_t r = read_some(got.data() + have, got.size() - have);
        if (r <= 0) break;
        have += static_cast<size_t>(r);
    }
    int read_errno = errno;
    writer.join();
    if (!wrote) return make_error(what + ": write failed: " + errno_text());
    if (have != data.size())
        return make_error(what + ": read " + std::to_string(have) + " of " + std::to_string(data.size()) +
                          " bytes: " + std::strerror(read_errno));
    if (got != data) return make_error(what + ": bytes differ");
    return {};
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(gen());
    return v;
}

// ---- kernel views --------------------------------------------------------------------

std::map<std::string, long> tls_stat() {
    std::map<std::string, long> stat;
    std::ifstream in("/proc/net/tls_stat");
    std::string name;
    long value;
    while (in >> name >> value) stat[name] = value;
    return stat;
}

// What getsockopt(SOL_TLS, DIRECTION) reports; the key it returns is wiped at once.
// The kernel wants the exact size of the cipher's struct, so that is what we ask for.
Result<void> check_reported_cipher(int fd, int direction, Cipher cipher) {
    union {
        tls_crypto_info common;
        tls12_crypto_info_aes_gcm_128 a;
        tls12_crypto_info_aes_gcm_256 b;
        tls12_crypto_info_chacha20_poly1305 c;
    } info{};
    const uint16_t want = cipher == Cipher::aes_128_gcm   ? TLS_CIPHER_AES_GCM_128
                          : cipher == Cipher::aes_256_gcm ? TLS_CIPHER_AES_GCM_256
                                                          : TLS_CIPHER_CHACHA20_POLY1305;
    socklen_t len = cipher == Cipher::aes_128_gcm   ? sizeof info.a
                    : cipher == Cipher::aes_256_gcm ? sizeof info.b
                                                    : sizeof info.c;
    int rc = getsockopt(fd, SOL_TLS, direction, &info, &len);
    int err = errno;
    const uint16_t version = info.common.version, type = info.common.cipher_type;
    OPENSSL_cleanse(&info, sizeof info);
    const char* dir = direction == TLS_TX ? "TLS_TX" : "TLS_RX";
    if (rc != 0) return make_error(std::string("getsockopt(SOL_TLS, ") + dir + "): " + std::strerror(err));
    if (version != TLS_1_3_VERSION || type != want)
        return make_error(std::string(dir) + " reports version 0x" + std::to_string(version) + " cipher " +
                          std::to_string(type) + ", expected TLS 1.3 cipher " + std::to_string(want));
    return {};
}

// ---- the three connections -------------------------------------------------------------

HandshakeConfig kwarden_config(Role role, const Identities& ids, Cipher cipher, kw::tls::PeerCheck check) {
    HandshakeConfig c;
    c.role = role;
    c.svid = role == Role::client ? ids.client : ids.server;
    c.trust = ids.trust;
    c.check_peer = std::move(check);
    c.cipher = cipher;
    return c;
}

kw::tls::PeerCheck expect(const std::shared_ptr<const Svid>& svid) { return expect_peer_id(svid->id); }

Result<void> install(const Handshake& hs) {
    auto keys = hs.traffic_keys();
    if (!keys) return keys.error();
    if (auto r = install_ktls(hs.fd(), *keys); !r) return r;
    set_blocking(hs.fd());
    return {};
}

// A: kTLS on both ends.
Result<std::string> ktls_both_ends(const Identities& ids, Cipher cipher) {
    auto fds = loopback_pair();
    if (!fds) return fds.error();
    auto& [cfd, sfd] = *fds;
    auto client = Handshake::create(cfd.get(), kwarden_config(Role::client, ids, cipher, expect(ids.server)));
    auto server = Handshake::create(sfd.get(), kwarden_config(Role::server, ids, cipher, expect(ids.client)));
    if (!client) return client.error();
    if (!server) return server.error();
    if (auto r = drive(cfd.get(), kwarden_end(**client), sfd.get(), kwarden_end(**server)); !r) return r.error();
    if ((*client)->cipher_protocol_id() != static_cast<uint16_t>(cipher))
        return make_error("negotiated " + std::string((*client)->cipher_name()));

    const auto before = tls_stat();
    for (const Handshake* hs : {client->get(), server->get()})
        if (auto r = install(*hs); !r) return r.error();
    const auto after = tls_stat();
    auto delta = [&](const std::string& k) {
        auto a = after.find(k), b = before.find(k);
        return (a == after.end() ? 0 : a->second) - (b == before.end() ? 0 : b->second);
    };
    if (delta("TlsTxSw") != 2 || delta("TlsRxSw") != 2 || delta("TlsCurrTxSw") != 2 || delta("TlsCurrRxSw") != 2)
        return make_error("/proc/net/tls_stat: TlsTxSw +" + std::to_string(delta("TlsTxSw")) + " TlsRxSw +" +
                          std::to_string(delta("TlsRxSw")) + " TlsCurrTxSw +" + std::to_string(delta("TlsCurrTxSw")) +
                          " TlsCurrRxSw +" + std::to_string(delta("TlsCurrRxSw")) + ", expected +2 each");
    for (int fd : {cfd.get(), sfd.get()})
        for (int dir : {TLS_TX, TLS_RX})
            if (auto r = check_reported_cipher(fd, dir, cipher); !r) return r.error();

    const std::string hello = "hello from the client", reply = "hello from the server";
    const auto bulk_up = random_bytes(kBulkBytes, 1), bulk_down = random_bytes(kBulkBytes, 2);
    for (auto [data, from, to, what] :
         {std::tuple{std::vector<uint8_t>(hello.begin(), hello.end()), cfd.get(), sfd.get(), "small client->server"},
          std::tuple{std::vector<uint8_t>(reply.begin(), reply.end()), sfd.get(), cfd.get(), "small server->client"},
          std::tuple{bulk_up, cfd.get(), sfd.get(), "8 MiB client->server"},
          std::tuple{bulk_down, sfd.get(), cfd.get(), "8 MiB server->client"}})
        if (auto r = transfer(data, fd_writer(from), fd_reader(to), what); !r) return r.error();
    if (delta("TlsDecryptError") != 0) return make_error("/proc/net/tls_stat: TlsDecryptError went up");
    return std::string("kTLS<->kTLS 8 MiB each way, TLS_TX/TLS_RX report the cipher, tls_stat Sw +2");
}

// B and C: kwarden's end with kTLS against BoringSSL's own record layer.
Result<void> ktls_against_boringssl(const Identities& ids, Cipher cipher, Role kwarden_role) {
    auto fds = loopback_pair();
    if (!fds) return fds.error();
    auto& [cfd, sfd] = *fds;
    const bool kw_client = kwarden_role == Role::client;
    const int kw_fd = kw_client ? cfd.get() : sfd.get(), ref_fd = kw_client ? sfd.get() : cfd.get();
    auto hs = Handshake::create(kw_fd, kwarden_config(kwarden_role, ids, cipher,
                                                      expect(kw_client ? ids.server : ids.client)));
    if (!hs) return hs.error();
    const Role ref_role = kw_client ? Role::server : Role::client;
    auto ref = reference_end(ref_fd, ref_role, kw_client ? *ids.server : *ids.client, cipher);
    if (!ref) return ref.error();
    Stepper kw = kwarden_end(**hs), rs = reference_stepper(ref->get());
    auto r = kw_client ? drive(cfd.get(), kw, sfd.get(), rs) : drive(cfd.get(), rs, sfd.get(), kw);
    if (!r) return r;
    if (auto i = install(**hs); !i) return i;
    set_blocking(ref_fd);

    const std::string who = std::string("kwarden ") + std::string(role_name(kwarden_role)) + " (kTLS) ";
    const auto up = random_bytes(kBulkBytes, 3), down = random_bytes(kBulkBytes, 4);
    if (auto t = transfer(up, fd_writer(kw_fd), ssl_reader(ref->get()), who + "-> BoringSSL"); !t) return t;
    return transfer(down, ssl_writer(ref->get()), fd_reader(kw_fd), "BoringSSL -> " + who);
}

Result<void> read_exact(int fd, uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) return make_error(std::string("read: ") + (r == 0 ? "end of stream" : errno_text()));
        p += r;
        n -= static_cast<size_t>(r);
    }
    return {};
}

// D: installs kTLS with SECRET (TX record number 5) on one end, reads the raw record at
// the other and opens it with KEY and IV as RFC 8446 §5.2-5.3 say: nonce = iv XOR the
// record number, additional data = the record header, inner content type at the end.
Result<void> kernel_record_opens(Cipher cipher, std::span<const uint8_t> secret, std::span<const uint8_t> key,
                                 std::span<const uint8_t> iv) {
    constexpr uint64_t kSequence = 5;
    auto fds = loopback_pair();
    if (!fds) return fds.error();
    auto& [cfd, sfd] = *fds;
    set_blocking(cfd.get());
    set_blocking(sfd.get());
    auto s = Secret::from(secret);
    if (!s) return s.error();
    if (auto r = install_ktls(cfd.get(), TrafficKeys{cipher, *s, kSequence, *s, 0}); !r) return r;
    const std::string msg = "kTLS record check";
    if (!fd_writer(cfd.get())(reinterpret_cast<const uint8_t*>(msg.data()), msg.size()))
        return make_error("write through kTLS: " + errno_text());

    uint8_t header[5];
    if (auto r = read_exact(sfd.get(), header, sizeof header); !r) return r;
    if (header[0] != 0x17 || header[1] != 0x03 || header[2] != 0x03)
        return make_error("the kernel's record header is not TLS 1.3 application_data");
    std::vector<uint8_t> body(static_cast<size_t>(header[3]) << 8 | header[4]);
    if (auto r = read_exact(sfd.get(), body.data(), body.size()); !r) return r;

    std::vector<uint8_t> nonce(iv.begin(), iv.end());
    for (int i = 0; i < 8; ++i) nonce[4 + i] ^= static_cast<uint8_t>(kSequence >> (56 - 8 * i));
    const EVP_AEAD* aead = cipher == Cipher::aes_128_gcm   ? EVP_aead_aes_128_gcm()
                           : cipher == Cipher::aes_256_gcm ? EVP_aead_aes_256_gcm()
                                                           : EVP_aead_chacha20_poly1305();
    bssl::ScopedEVP_AEAD_CTX ctx;
    std::vector<uint8_t> plain(body.size());
    size_t plain_len = 0;
    if (!EVP_AEAD_CTX_init(ctx.get(), aead, key.data(), key.size(), EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr) ||
        !EVP_AEAD_CTX_open(ctx.get(), plain.data(), &plain_len, plain.size(), nonce.data(), nonce.size(),
                           body.data(), body.size(), header, sizeof header)) {
        ERR_clear_error();
        return make_error("the kernel's record does not open with the expected key and iv at record number 5");
    }
    plain.resize(plain_len);
    std::vector<uint8_t> want(msg.begin(), msg.end());
    want.push_back(0x17);  // TLSInnerPlaintext.type = application_data
    if (plain != want)
        return make_error("the kernel's record opened to other bytes");
    return {};
}

// The secret, key and iv D uses: RFC 8448's for AES-128-GCM, else a fixed secret and
// our derivation (which the unit tests check against RFC 8448).
Result<void> record_check(Cipher cipher) {
    if (cipher == Cipher::aes_128_gcm) {
        static constexpr uint8_t kSecret[] = {0xa1, 0x1a, 0xf9, 0xf0, 0x55, 0x31, 0xf8, 0x56, 0xad, 0x47, 0x11,
                                              0x6b, 0x45, 0xa9, 0x50, 0x32, 0x82, 0x04, 0xb4, 0xf4, 0x4b, 0xfb,
                                              0x6b, 0x3a, 0x4b, 0x4f, 0x1f, 0x3f, 0xcb, 0x63, 0x16, 0x43};
        static constexpr uint8_t kKey[] = {0x9f, 0x02, 0x28, 0x3b, 0x6c, 0x9c, 0x07, 0xef,
                                           0xc2, 0x6b, 0xb9, 0xf2, 0xac, 0x92, 0xe3, 0x56};
        static constexpr uint8_t kIv[] = {0xcf, 0x78, 0x2b, 0x88, 0xdd, 0x83, 0x54, 0x9a, 0xad, 0xf1, 0xe9, 0x84};
        return kernel_record_opens(cipher, kSecret, kKey, kIv);
    }
    std::vector<uint8_t> secret(static_cast<size_t>(EVP_MD_size(cipher_digest(cipher))), 0x42);
    auto km = derive_key_material(cipher, secret);
    if (!km) return km.error();
    return kernel_record_opens(cipher, secret, km->key.bytes(), km->iv.bytes());
}

// One cipher, one line. NEGOTIABLE: whether a handshake here can end with CIPHER.
// Returns whether it passed.
bool run_cipher(const Identities& ids, Cipher cipher, bool negotiable) {
    const std::string name(cipher_name(cipher));
    auto fail = [&](const std::string& why) {
        std::printf("%s: FAIL: %s\n", name.c_str(), why.c_str());
        std::fflush(stdout);
        return false;
    };
    if (auto p = probe_ktls(cipher); !p) return fail(p.message());
    if (auto d = record_check(cipher); !d) return fail("record check: " + d.message());
    if (!negotiable) {
        std::printf("%s: ok: kernel records open with the expected key/iv (record number 5); handshakes skipped: "
                    "no AES hardware, BoringSSL negotiates ChaCha20-Poly1305 instead\n",
                    name.c_str());
        std::fflush(stdout);
        return true;
    }
    auto a = ktls_both_ends(ids, cipher);
    if (!a) return fail(a.message());
    for (Role role : {Role::client, Role::server})
        if (auto r = ktls_against_boringssl(ids, cipher, role); !r) return fail(r.message());
    std::printf("%s: ok: kernel records open with the expected key/iv (record number 5); %s; kTLS<->BoringSSL "
                "records 8 MiB each way as client and as server\n",
                name.c_str(), a->c_str());
    std::fflush(stdout);
    return true;
}

// Re-runs this program for CIPHER with AES-NI hidden from BoringSSL.
bool run_without_aes_ni(Cipher cipher) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("OPENSSL_ia32cap", kNoAesNi, 1);
        const std::string arg(cipher_name(cipher));
        execl("/proc/self/exe", "kw_ktls_selftest", "--cipher", arg.c_str(), static_cast<char*>(nullptr));
        std::printf("%s: FAIL: exec /proc/self/exe: %s\n", arg.c_str(), std::strerror(errno));
        _exit(1);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto ids = make_identities();
    if (!ids) {
        std::printf("setup: FAIL: %s\n", ids.message().c_str());
        return 1;
    }
    if (argc == 3 && std::string(argv[1]) == "--cipher") {
        auto cipher = parse_cipher(argv[2]);
        if (!cipher) {
            std::printf("%s\n", cipher.message().c_str());
            return 2;
        }
        return run_cipher(*ids, *cipher, true) ? 0 : 1;
    }
    const bool aes_hw = EVP_has_aes_hardware();
    bool ok = true;
    for (Cipher cipher : kAllCiphers) {
        if (cipher == Cipher::chacha20_poly1305 && aes_hw)
            ok = run_without_aes_ni(cipher) && ok;
        else
            ok = run_cipher(*ids, cipher, cipher == Cipher::chacha20_poly1305 || aes_hw) && ok;
    }
    return ok ? 0 : 1;
}
