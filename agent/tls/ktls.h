// kTLS: from a TLS 1.3 traffic secret to the kernel's crypto_info, and
// its installation on an established TCP socket. This file owns the key schedule step
// that turns a traffic secret into key and iv (RFC 8446 §7.1, §7.3) and the layout of
// `struct tls12_crypto_info_*` (<linux/tls.h>); the handshake that produces the secrets
// is in handshake.h.
//
// Every buffer that holds a secret, a key or a crypto_info is a Secret or a CryptoInfo:
// both are wiped with OPENSSL_cleanse when destroyed, copies included.
#pragma once

#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "kwarden links BoringSSL (android-libboringssl-dev), never OpenSSL"
#endif
#include <openssl/digest.h>

#include <linux/tls.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/result.h"

namespace kw::tls {

// The TLS 1.3 cipher suites the kernel can run, by IANA number. ChaCha20-Poly1305 needs
// kernel 5.11+.
enum class Cipher : uint16_t {
    aes_128_gcm = 0x1301,        // TLS_AES_128_GCM_SHA256 (default)
    aes_256_gcm = 0x1302,        // TLS_AES_256_GCM_SHA384
    chacha20_poly1305 = 0x1303,  // TLS_CHACHA20_POLY1305_SHA256
};
inline constexpr std::array<Cipher, 3> kAllCiphers = {Cipher::aes_128_gcm, Cipher::aes_256_gcm,
                                                      Cipher::chacha20_poly1305};

// IANA name, e.g. "TLS_AES_128_GCM_SHA256".
std::string_view cipher_name(Cipher cipher);
// The suite of an IANA number; errors for anything the kernel cannot run.
Result<Cipher> cipher_from_protocol_id(uint16_t protocol_id);
// Accepts the IANA name or the short form: "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305".
Result<Cipher> parse_cipher(std::string_view name);
// Key length of the AEAD (16 or 32); the iv is always 12 bytes.
size_t key_length(Cipher cipher);
inline constexpr size_t kIvLength = 12;
// The suite's hash: SHA-256, or SHA-384 for AES-256-GCM.
const EVP_MD* cipher_digest(Cipher cipher);

// Up to 48 bytes (a SHA-384 traffic secret), wiped when destroyed.
class Secret {
public:
    static constexpr size_t kCapacity = 48;
    Secret() = default;
    // Refuses more than kCapacity bytes.
    static Result<Secret> from(std::span<const uint8_t> bytes);
    Secret(const Secret&) = default;
    Secret& operator=(const Secret&) = default;
    ~Secret() { wipe(); }

    std::span<const uint8_t> bytes() const { return {bytes_.data(), size_}; }
    size_t size() const { return size_; }
    bool operator==(const Secret& other) const;

private:
    void wipe();
    std::array<uint8_t, kCapacity> bytes_{};
    size_t size_ = 0;
};

// HKDF-Expand-Label(secret, label, context, out.size()) of RFC 8446 §7.1 with DIGEST:
// HKDF-Expand(secret, HkdfLabel{length, "tls13 " + label, context}, length).
Result<void> hkdf_expand_label(const EVP_MD* digest, std::span<const uint8_t> secret, std::string_view label,
                               std::span<const uint8_t> context, std::span<uint8_t> out);

// The record protection of one direction: key = HKDF-Expand-Label(secret, "key", "",
// key_length), iv = HKDF-Expand-Label(secret, "iv", "", 12) (RFC 8446 §7.3).
struct KeyMaterial {
    Secret key;
    Secret iv;
};
Result<KeyMaterial> derive_key_material(Cipher cipher, std::span<const uint8_t> traffic_secret);

// The kernel's `struct tls12_crypto_info_{aes_gcm_128,aes_gcm_256,chacha20_poly1305}` for
// one direction, version TLS_1_3_VERSION. AES-GCM: salt = iv[0..4], iv = iv[4..12];
// ChaCha20-Poly1305: all 12 bytes in iv, no salt. rec_seq = next record number, big-endian.
class CryptoInfo {
public:
    static Result<CryptoInfo> build(Cipher cipher, std::span<const uint8_t> traffic_secret, uint64_t sequence);
    CryptoInfo(const CryptoInfo&) = default;
    CryptoInfo& operator=(const CryptoInfo&) = delete;
    ~CryptoInfo();

    // What setsockopt(SOL_TLS, TLS_TX / TLS_RX) takes.
    const void* data() const { return &info_; }
    socklen_t size() const { return size_; }
    std::span<const uint8_t> bytes() const { return {reinterpret_cast<const uint8_t*>(&info_), size_}; }

private:
    CryptoInfo() = default;
    union Info {
        tls_crypto_info common;
        tls12_crypto_info_aes_gcm_128 aes_128_gcm;
        tls12_crypto_info_aes_gcm_256 aes_256_gcm;
        tls12_crypto_info_chacha20_poly1305 chacha20_poly1305;
    } info_{};
    socklen_t size_ = 0;
};

// What a completed TLS 1.3 handshake hands to the kernel: the application traffic
// secrets of both directions and the next record number of each (not always 0).
struct TrafficKeys {
    Cipher cipher = Cipher::aes_128_gcm;
    Secret tx_secret;  // what this end writes with (its own application traffic secret)
    uint64_t tx_sequence = 0;
    Secret rx_secret;  // what this end reads with (the peer's)
    uint64_t rx_sequence = 0;
};

// kTLS goes on a socket in two steps, because the kernel checks the TCP state in the
// first only. Attaching the "tls" ULP needs an ESTABLISHED socket; setting the keys takes
// any state. A peer may close or reset its side as soon as its last handshake message
// is out (a client that writes one line and half-closes, a server that answers and
// closes); what it sent before must still reach the app. So the ULP goes on as soon as
// the connection is up, before the handshake (without keys it passes data through
// unchanged), and the keys once the handshake is done, whatever the state then.

// setsockopt(FD, SOL_TCP, TCP_ULP, "tls") on an ESTABLISHED TCP socket.
Result<void> attach_tls_ulp(int fd);

// SOL_TLS TLS_TX, then TLS_RX, on a socket FD with the "tls" ULP attached, in any TCP
// state: records the peer sent before its FIN or RST are still decrypted. FD must have no
// TLS record left unread by userspace beyond the handshake. On error the socket may be
// half configured: the caller closes it (the connection is refused, never sent in
// plaintext).
Result<void> set_traffic_keys(int fd, const TrafficKeys& keys);

// attach_tls_ulp, then set_traffic_keys: for a socket that is still ESTABLISHED.
Result<void> install_ktls(int fd, const TrafficKeys& keys);

// Whether this kernel can run kTLS TLS 1.3 with CIPHER: connects a loopback TCP pair and
// installs TCP_ULP "tls" plus TLS_TX and TLS_RX with a throwaway all-zero key. The
// error says what is missing (the tls module, or the cipher) and what to do.
Result<void> probe_ktls(Cipher cipher = Cipher::aes_128_gcm);

}  // namespace kw::tls
