// SHA-256 over BoringSSL, hex-encoded the way policies and pins write it (lowercase).
#pragma once

#include <string>
#include <string_view>

#include <openssl/sha.h>

#ifndef OPENSSL_IS_BORINGSSL
#error "kwarden links BoringSSL (android-libboringssl-dev); this header resolved to another OpenSSL"
#endif

namespace kw::core {

// Incremental hashing, for content read in chunks from one fd.
class Sha256 {
public:
    Sha256() { SHA256_Init(&ctx_); }
    void update(const void* data, size_t len) { SHA256_Update(&ctx_, data, len); }
    std::string hex_digest();  // finishes the hash: call once

private:
    SHA256_CTX ctx_;
};

std::string sha256_hex(std::string_view data);

}  // namespace kw::core
