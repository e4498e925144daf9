// The SSL inside a tls::Handshake, for tests that check what went over the wire: what
// an SSL would send, or which certificate the peer presented. One definition, shared by
// every test that reaches in, so the friend class cannot differ between them.
#pragma once

#include <openssl/ssl.h>

#include "tls/handshake.h"

namespace kw::tls {
struct HandshakeTestAccess {
    static SSL* ssl(const Handshake& hs) { return hs.ssl_.get(); }
};
}  // namespace kw::tls
