// kTLS key derivation, crypto_info layout and installation (see ktls.h).
#include "tls/ktls.h"

#include <openssl/hkdf.h>
#include <openssl/mem.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/tls_suite.h"
#include "core/unique_fd.h"

namespace kw::tls {
namespace {

constexpr std::string_view kLabelPrefix = "tls13 ";

std::string errno_text(int err) { return std::strerror(err); }

struct ErrnoHint {
    int err;
    std::string_view hint;
};

// Why TCP_ULP "tls" failed, in terms an operator can act on.
constexpr ErrnoHint kUlpHints[] = {
    {ENOENT, "the kernel has no \"tls\" ULP: load the tls module (modprobe tls; needs CONFIG_TLS)"},
    {ENOTCONN, "the socket is not ESTABLISHED (not connected yet, or the peer already closed or reset it): the "
               "ULP goes on before the handshake"},
    {EEXIST, "a ULP is already attached to this socket (kTLS installed twice?)"},
    {EOPNOTSUPP, "not a TCP socket"},
    {ENOPROTOOPT, "not a TCP socket"},
};
// Why SOL_TLS TLS_TX / TLS_RX failed.
constexpr ErrnoHint kTlsOptHints[] = {
    {EINVAL, "the kernel refused the crypto parameters (TLS 1.3 or this cipher unsupported by this kernel?)"},
    {ENOPROTOOPT, "the tls ULP is not attached to this socket"},
    {EBUSY, "this direction is already configured"},
};

// "strerror: hint" for ERR.
template <size_t N>
std::string explain(int err, const ErrnoHint (&hints)[N]) {
    for (const ErrnoHint& h : hints)
        if (h.err == err) return errno_text(err) + ": " + std::string(h.hint);
    return errno_text(err);
}

void put_be64(unsigned char (&out)[8], uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<unsigned char>(v & 0xff);
        v >>= 8;
    }
}

// Fills one tls12_crypto_info_* from key material. Every variant has the same field
// names; the kernel's own field sizes give the split: AES-GCM salt[4] + iv[8],
// ChaCha20-Poly1305 salt[0] + iv[12].
template <typename Info>
void fill(Info& info, uint16_t cipher_type, const KeyMaterial& km, uint64_t sequence) {
    static_assert(sizeof info.salt + sizeof info.iv == kIvLength, "TLS 1.3 nonce is 12 bytes");
    info.info.version = TLS_1_3_VERSION;
    info.info.cipher_type = cipher_type;
    std::memcpy(info.key, km.key.bytes().data(), sizeof info.key);
    const uint8_t* iv = km.iv.bytes().data();
    std::memcpy(info.salt, iv, sizeof info.salt);
    std::memcpy(info.iv, iv + sizeof info.salt, sizeof info.iv);
    put_be64(info.rec_seq, sequence);
}

Result<void> set_tls_direction(int fd, int direction, const TrafficKeys& keys) {
    const bool tx = direction == TLS_TX;
    auto info = CryptoInfo::build(keys.cipher, (tx ? keys.tx_secret : keys.rx_secret).bytes(),
                                  tx ? keys.tx_sequence : keys.rx_sequence);
    if (!info) return info.error();
    if (::setsockopt(fd, SOL_TLS, direction, info->data(), info->size()) != 0) {
        int err = errno;
        return make_error(std::string("setsockopt(fd ") + std::to_string(fd) + ", SOL_TLS, " +
                          (tx ? "TLS_TX" : "TLS_RX") + ", " + std::string(cipher_name(keys.cipher)) +
                          "): " + explain(err, kTlsOptHints));
    }
    return {};
}

}  // namespace

std::string_view cipher_name(Cipher cipher) {
    std::string_view name = core::tls_suite_name(static_cast<uint16_t>(cipher));
    return name.empty() ? "unknown cipher" : name;
}

Result<Cipher> cipher_from_protocol_id(uint16_t protocol_id) {
    for (Cipher c : kAllCiphers)
        if (static_cast<uint16_t>(c) == protocol_id) return c;
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%04x", protocol_id);
    return make_error(std::string("cipher suite ") + hex +
                      " cannot run in kTLS: expected TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or "
                      "TLS_CHACHA20_POLY1305_SHA256");
}

Result<Cipher> parse_cipher(std::string_view name) {
    auto id = core::parse_tls_suite(name);
    if (!id) return id.error();
    return static_cast<Cipher>(*id);
}

size_t key_length(Cipher cipher) { return cipher == Cipher::aes_128_gcm ? 16 : 32; }

const EVP_MD* cipher_digest(Cipher cipher) {
    return cipher == Cipher::aes_256_gcm ? EVP_sha384() : EVP_sha256();
}

// ---- Secret ------------------------------------------------------------------------

Result<Secret> Secret::from(std::span<const uint8_t> bytes) {
    if (bytes.size() > kCapacity)
        return make_error("secret of " + std::to_string(bytes.size()) + " bytes exceeds the " +
                          std::to_string(kCapacity) + "-byte buffer");
    Secret s;
    std::memcpy(s.bytes_.data(), bytes.data(), bytes.size());
    s.size_ = bytes.size();
    return s;
}

bool Secret::operator==(const Secret& other) const {
    return size_ == other.size_ && CRYPTO_memcmp(bytes_.data(), other.bytes_.data(), size_) == 0;
}

void Secret::wipe() {
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
    size_ = 0;
}

// ---- key schedule -------------------------------------------------------------------

Result<void> hkdf_expand_label(const EVP_MD* digest, std::span<const uint8_t> secret, std::string_view label,
                               std::span<const uint8_t> context, std::span<uint8_t> out) {
    // struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } HkdfLabel;
    const size_t label_len = kLabelPrefix.size() + label.size();
    if (label_len > 255 || context.size() > 255 || out.size() > 0xffff)
        return make_error("HKDF-Expand-Label '" + std::string(label) + "': label, context or length out of range");
    std::array<uint8_t, 2 + 1 + 255 + 1 + 255> info{};
    size_t n = 0;
    info[n++] = static_cast<uint8_t>(out.size() >> 8);
    info[n++] = static_cast<uint8_t>(out.size());
    info[n++] = static_cast<uint8_t>(label_len);
    std::memcpy(&info[n], kLabelPrefix.data(), kLabelPrefix.size());
    n += kLabelPrefix.size();
    std::memcpy(&info[n], label.data(), label.size());
    n += label.size();
    info[n++] = static_cast<uint8_t>(context.size());
    if (!context.empty()) std::memcpy(&info[n], context.data(), context.size());
    n += context.size();
    if (HKDF_expand(out.data(), out.size(), digest, secret.data(), secret.size(), info.data(), n) != 1)
        return make_error("HKDF-Expand-Label '" + std::string(label) + "': HKDF_expand failed (secret of " +
                          std::to_string(secret.size()) + " bytes, output of " + std::to_string(out.size()) + ")");
    return {};
}

Result<KeyMaterial> derive_key_material(Cipher cipher, std::span<const uint8_t> traffic_secret) {
    const EVP_MD* md = cipher_digest(cipher);
    if (traffic_secret.size() != EVP_MD_size(md))
        return make_error(std::string(cipher_name(cipher)) + ": traffic secret of " +
                          std::to_string(traffic_secret.size()) + " bytes, expected " +
                          std::to_string(EVP_MD_size(md)));
    // Each output goes through a stack buffer that is wiped before returning.
    auto expand = [&](std::string_view label, size_t len) -> Result<Secret> {
        std::array<uint8_t, Secret::kCapacity> buf{};
        std::span<uint8_t> out(buf.data(), len);
        auto r = hkdf_expand_label(md, traffic_secret, label, {}, out);
        Result<Secret> s = r ? Secret::from(out) : Result<Secret>(r.error());
        OPENSSL_cleanse(buf.data(), buf.size());
        return s;
    };
    auto key = expand("key", key_length(cipher));
    if (!key) return key.error();
    auto iv = expand("iv", kIvLength);
    if (!iv) return iv.error();
    KeyMaterial km{*key, *iv};
    return km;
}

// ---- crypto_info --------------------------------------------------------------------

Result<CryptoInfo> CryptoInfo::build(Cipher cipher, std::span<const uint8_t> traffic_secret, uint64_t sequence) {
    auto km = derive_key_material(cipher, traffic_secret);
    if (!km) return km.error();
    CryptoInfo ci;
    std::memset(&ci.info_, 0, sizeof ci.info_);
    switch (cipher) {
    case Cipher::aes_128_gcm:
        fill(ci.info_.aes_128_gcm, TLS_CIPHER_AES_GCM_128, *km, sequence);
        ci.size_ = sizeof ci.info_.aes_128_gcm;
        break;
    case Cipher::aes_256_gcm:
        fill(ci.info_.aes_256_gcm, TLS_CIPHER_AES_GCM_256, *km, sequence);
        ci.size_ = sizeof ci.info_.aes_256_gcm;
        break;
    case Cipher::chacha20_poly1305:
        fill(ci.info_.chacha20_poly1305, TLS_CIPHER_CHACHA20_POLY1305, *km, sequence);
        ci.size_ = sizeof ci.info_.chacha20_poly1305;
        break;
    }
    return ci;
}

CryptoInfo::~CryptoInfo() { OPENSSL_cleanse(&info_, sizeof info_); }

// ---- installation -------------------------------------------------------------------

Result<void> attach_tls_ulp(int fd) {
    static constexpr char kUlp[] = "tls";
    if (::setsockopt(fd, SOL_TCP, TCP_ULP, kUlp, sizeof kUlp - 1) != 0) {
        int err = errno;
        return make_error("setsockopt(fd " + std::to_string(fd) + ", SOL_TCP, TCP_ULP, \"tls\"): " +
                          explain(err, kUlpHints));
    }
    return {};
}

Result<void> set_traffic_keys(int fd, const TrafficKeys& keys) {
    if (auto r = set_tls_direction(fd, TLS_TX, keys); !r) return r;
    return set_tls_direction(fd, TLS_RX, keys);
}

Result<void> install_ktls(int fd, const TrafficKeys& keys) {
    if (auto r = attach_tls_ulp(fd); !r) return r;
    return set_traffic_keys(fd, keys);
}

Result<void> probe_ktls(Cipher cipher) {
    auto fail = [&](std::string what) {
        return make_error("kTLS probe (" + std::string(cipher_name(cipher)) + ", loopback TCP): " + what);
    };
    core::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener.valid()) return fail("socket(AF_INET, SOCK_STREAM): " + errno_text(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        return fail("listening on 127.0.0.1: " + errno_text(errno) + " (is the loopback interface up?)");
    core::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client.valid() || ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return fail("connecting to 127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + ": " + errno_text(errno));
    core::UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!server.valid()) return fail("accept4: " + errno_text(errno));

    // A throwaway key: the secret is all zero and the connection never carries data.
    std::array<uint8_t, 48> zero{};
    auto secret = Secret::from({zero.data(), static_cast<size_t>(EVP_MD_size(cipher_digest(cipher)))});
    if (!secret) return fail(secret.message());
    TrafficKeys keys{cipher, *secret, 0, *secret, 0};
    if (auto r = install_ktls(client.get(), keys); !r) return fail(r.message());
    return {};
}

}  // namespace kw::tls
