// Records after the handshake (see post_handshake.h).
#include "tls/post_handshake.h"

#include <openssl/aead.h>
#include <openssl/mem.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kw::tls {
namespace {

constexpr size_t kHeader = 5;
constexpr size_t kMaxCiphertext = (1u << 14) + 256;  // RFC 8446 §5.2
constexpr uint8_t kApplicationData = 23;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kNewSessionTicket = 4;
constexpr uint8_t kKeyUpdate = 24;

const EVP_AEAD* aead_of(Cipher cipher) {
    switch (cipher) {
    case Cipher::aes_128_gcm: return EVP_aead_aes_128_gcm();
    case Cipher::aes_256_gcm: return EVP_aead_aes_256_gcm();
    case Cipher::chacha20_poly1305: return EVP_aead_chacha20_poly1305();
    }
    return nullptr;
}

// The plaintext of a copy of one record; the inner content type is its last non-zero byte.
Result<std::vector<uint8_t>> open_record(const TrafficKeys& keys, const uint8_t* record, size_t length) {
    auto km = derive_key_material(keys.cipher, keys.rx_secret.bytes());
    if (!km) return km.error();
    bssl::ScopedEVP_AEAD_CTX ctx;
    if (!EVP_AEAD_CTX_init(ctx.get(), aead_of(keys.cipher), km->key.bytes().data(), km->key.size(),
                           EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr))
        return make_error("cannot set up the record decryption");
    uint8_t nonce[kIvLength];
    std::memcpy(nonce, km->iv.bytes().data(), kIvLength);
    for (int i = 0; i < 8; ++i) nonce[kIvLength - 1 - i] ^= static_cast<uint8_t>(keys.rx_sequence >> (8 * i));
    std::vector<uint8_t> plain(length - kHeader);
    size_t out = 0;
    const bool ok = EVP_AEAD_CTX_open(ctx.get(), plain.data(), &out, plain.size(), nonce, sizeof nonce,
                                      record + kHeader, length - kHeader, record, kHeader) == 1;
    OPENSSL_cleanse(nonce, sizeof nonce);
    if (!ok) {
        OPENSSL_cleanse(plain.data(), plain.size());
        return make_error("a record after the handshake does not decrypt (record number " +
                          std::to_string(keys.rx_sequence) + ")");
    }
    plain.resize(out);
    return plain;
}

}  // namespace

Result<NextRecord> peek_record(int fd, const TrafficKeys& keys) {
    std::vector<uint8_t> buf(kHeader + kMaxCiphertext);
    ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return NextRecord{NextRecord::closed};
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return NextRecord{};
        if (errno == ECONNRESET || errno == EPIPE) return NextRecord{NextRecord::closed};
        return make_error(std::string("reading after the handshake: ") + std::strerror(errno));
    }
    const size_t have = static_cast<size_t>(n);
    if (have < kHeader) return NextRecord{};
    const size_t body = (static_cast<size_t>(buf[3]) << 8) | buf[4];
    if (buf[0] != kApplicationData || buf[1] != 0x03 || buf[2] != 0x03 || body > kMaxCiphertext || body < 17)
        return make_error("the record after the handshake is not a TLS 1.3 record (type " + std::to_string(buf[0]) +
                          ", length " + std::to_string(body) + ")");
    if (have < kHeader + body) return NextRecord{};
    NextRecord next{NextRecord::other, kHeader + body};
    auto plain = open_record(keys, buf.data(), next.length);
    if (!plain) return plain.error();
    std::vector<uint8_t>& p = *plain;
    while (!p.empty() && p.back() == 0) p.pop_back();  // padding
    if (p.empty()) return make_error("a record after the handshake has no content type");
    const uint8_t type = p.back();
    p.pop_back();
    if (type == kHandshake) {
        // Whole handshake messages: type (1), length (3), body.
        size_t at = 0;
        bool tickets_only = true;
        while (at < p.size()) {
            if (p.size() - at < 4) return make_error("a handshake message after the handshake is cut short");
            const uint8_t msg = p[at];
            const size_t len = (static_cast<size_t>(p[at + 1]) << 16) | (static_cast<size_t>(p[at + 2]) << 8) | p[at + 3];
            if (p.size() - at - 4 < len)
                return make_error("a handshake message after the handshake spans records, which is not handled");
            if (msg == kKeyUpdate) next.kind = NextRecord::key_update;
            if (msg == kNewSessionTicket)
                ++next.tickets;
            else if (tickets_only) {
                tickets_only = false;
                next.handshake_type = msg;
            }
            at += 4 + len;
        }
        if (next.kind != NextRecord::key_update && tickets_only && next.tickets > 0) next.kind = NextRecord::ticket_record;
    }
    OPENSSL_cleanse(p.data(), p.size());
    OPENSSL_cleanse(buf.data(), buf.size());
    return next;
}

Result<void> consume_record(int fd, size_t length) {
    std::vector<uint8_t> buf(length);
    ssize_t n = ::recv(fd, buf.data(), length, MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(length))
        return make_error("dropping a ticket record: " + std::string(n < 0 ? std::strerror(errno) : "short read"));
    return {};
}

}  // namespace kw::tls
