// SHA-256 hex digests (see sha256.h).
#include "core/sha256.h"

#include <openssl/sha.h>

#ifndef OPENSSL_IS_BORINGSSL
#error "kwarden links BoringSSL (android-libboringssl-dev); this header resolved to another OpenSSL"
#endif

namespace kw::core {
namespace {

static_assert(sizeof(SHA256_CTX) <= sizeof(Sha256{}) && alignof(SHA256_CTX) <= 8,
              "Sha256's storage no longer holds a SHA256_CTX");

SHA256_CTX* ctx(unsigned char* storage) { return reinterpret_cast<SHA256_CTX*>(storage); }

}  // namespace

Sha256::Sha256() { SHA256_Init(ctx(ctx_)); }

void Sha256::update(const void* data, size_t len) { SHA256_Update(ctx(ctx_), data, len); }

std::string Sha256::hex_digest() {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, ctx(ctx_));
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * sizeof digest);
    for (unsigned char byte : digest) {
        out += kHex[byte >> 4];
        out += kHex[byte & 0xf];
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    Sha256 hash;
    hash.update(data.data(), data.size());
    return hash.hex_digest();
}

}  // namespace kw::core
