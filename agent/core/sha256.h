// SHA-256, hex-encoded the way policies and pins write it (lowercase). BoringSSL does the
// hashing, in sha256.cpp only: this header keeps core's include graph free of it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kw::core {

// Incremental hashing, for content read in chunks from one fd.
class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t len);
    std::string hex_digest();  // finishes the hash: call once

private:
    alignas(8) unsigned char ctx_[112];  // a SHA256_CTX (its size is checked in sha256.cpp)
};

std::string sha256_hex(std::string_view data);

}  // namespace kw::core
