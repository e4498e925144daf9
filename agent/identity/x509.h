// X.509 for SPIFFE: P-256 keys, certificates built from an explicit
// template, and the one validator that decides whether a certificate chain is an
// X.509-SVID of a trust domain. Issuance uses the templates below; tests bend a template
// to break exactly one rule and check that the validator names that rule.
#pragma once

#ifndef __cplusplus
#error "C++ only"
#endif

#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "kwarden links BoringSSL (android-libboringssl-dev), never OpenSSL"
#endif
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/spiffe_id.h"

namespace kw::identity {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<Clock, std::chrono::seconds>;
using Seconds = std::chrono::seconds;

using X509Ptr = bssl::UniquePtr<X509>;
using KeyPtr = bssl::UniquePtr<EVP_PKEY>;

inline TimePoint now_seconds() { return std::chrono::time_point_cast<Seconds>(Clock::now()); }

// A fresh ECDSA P-256 key. The private scalar lives in BoringSSL's heap, which clears
// allocations when they are freed; the agent mlocks that heap (see agent/io/hygiene).
Result<KeyPtr> generate_p256_key();

struct KeyUsage {
    bool digital_signature = false;
    bool key_cert_sign = false;
    bool crl_sign = false;
    bool critical = true;
};

// Everything that goes into a certificate. Issuance fills it from leaf_template() or
// ca_template(); tests modify one field to produce a certificate that breaks one rule.
struct CertTemplate {
    std::vector<std::string> uri_sans;  // written as-is (tests write invalid ones)
    std::vector<std::string> dns_sans;
    std::string common_name;            // subject CN; empty: none
    std::string organization;           // subject O; empty: none
    bool basic_constraints = true;      // extension present
    bool is_ca = false;
    std::optional<int> path_len;        // CA only
    std::optional<KeyUsage> key_usage;  // nullopt: extension absent
    std::vector<int> ext_key_usage;     // NIDs (NID_server_auth, NID_client_auth); empty: absent
    TimePoint not_before{};
    TimePoint not_after{};
    std::array<uint8_t, 16> serial{};   // random, non-zero; encoded as a positive INTEGER
};

// Random 128-bit serial (never zero).
std::array<uint8_t, 16> random_serial();

// Leaf X.509-SVID for ID: one URI SAN, cA=false, keyUsage critical digitalSignature,
// EKU serverAuth+clientAuth. not_before is backdated by kClockSkew, not_after = now+ttl.
inline constexpr Seconds kClockSkew{10};
CertTemplate leaf_template(const core::SpiffeId& id, TimePoint now, Seconds ttl);

// Signing certificate of TRUST_DOMAIN: URI SAN spiffe://TRUST_DOMAIN (no path), cA=true,
// keyUsage critical keyCertSign+cRLSign (+digitalSignature).
CertTemplate ca_template(std::string_view trust_domain, std::string_view common_name, TimePoint now, Seconds ttl);

// Builds and signs (ECDSA-SHA256) a certificate for SUBJECT_KEY's public half. ISSUER
// null means self-signed with SUBJECT_KEY as signer; otherwise ISSUER_KEY signs and the
// issuer name and authority key identifier come from ISSUER.
Result<X509Ptr> issue_certificate(const CertTemplate& tmpl, EVP_PKEY* subject_key, X509* issuer,
                                  EVP_PKEY* issuer_key);

// ---- encoding -----------------------------------------------------------------------
std::string to_pem(X509* cert);
std::vector<uint8_t> to_der(X509* cert);
Result<X509Ptr> from_der(const uint8_t* der, size_t len);
Result<std::vector<X509Ptr>> certs_from_pem(std::string_view pem);  // >= 1 certificate
// PKCS#8 PEM of a private key. Only for `ca` files and `svid mint`, which put keys on disk
// by design; the caller cleanses the returned string (OPENSSL_cleanse) after writing it.
std::string private_key_to_pem(EVP_PKEY* key);
Result<KeyPtr> private_key_from_pem(std::string_view pem);

// ---- facts shown by `svid list` ------------------------------------------------------
std::string serial_hex(X509* cert);              // lowercase hex, no leading zero bytes
std::string sha256_fingerprint(X509* cert);      // lowercase hex of SHA-256(DER), 64 chars
TimePoint not_before(X509* cert);
TimePoint not_after(X509* cert);
std::string format_time(TimePoint t);            // RFC 3339 UTC: 2026-11-22T10:00:00Z

// ---- validation ---------------------------------------------------------------------
// Every error message starts with the rule it breaks, e.g.
//   "X509-SVID leaf: keyUsage must be marked critical"
//   "X509-SVID leaf: must contain exactly one URI SAN, found 2"
//   "X509-SVID signing certificate: SPIFFE ID must have no path (spiffe://td/ca)"

// The rules for a leaf X.509-SVID: exactly one URI SAN and it parses as a SPIFFE ID with
// a non-empty path; basicConstraints cA=false; keyUsage present, critical, with
// digitalSignature, without keyCertSign and cRLSign; EKU, when present, has serverAuth
// and clientAuth. Returns the ID.
Result<core::SpiffeId> validate_leaf(X509* cert);

// The rules for a signing (CA) certificate: basicConstraints cA=true; keyUsage present,
// critical, with keyCertSign; URI SANs, when present: exactly one, a SPIFFE ID with no
// path. Returns the trust domain of that ID, or "" when the certificate carries none.
Result<std::string> validate_signing_certificate(X509* cert);

// X.509 authorities of one trust domain (SPIFFE bundle, see bundle.h).
struct TrustBundle {
    std::string trust_domain;
    std::vector<X509Ptr> x509_authorities;
    uint64_t sequence = 0;
    int64_t refresh_hint_seconds = 0;  // 0: absent
};

// Bundles by trust domain. Never merged: each trust domain has exactly one.
using BundleSet = std::map<std::string, const TrustBundle*, std::less<>>;

struct VerifiedSvid {
    core::SpiffeId id;
    std::vector<X509Ptr> chain;  // leaf first, up to and including the trusted authority
};

// Verifies a presented chain (LEAF plus untrusted INTERMEDIATES) at NOW:
//   1. validate_leaf(leaf);
//   2. the bundle of the leaf's trust domain (only that one; error if absent);
//   3. X.509 path validation against that bundle's authorities only, at NOW;
//   4. every certificate above the leaf passes validate_signing_certificate, and any
//      SPIFFE ID it carries names the leaf's trust domain.
Result<VerifiedSvid> verify_svid(X509* leaf, const std::vector<X509*>& intermediates, const BundleSet& bundles,
                                 TimePoint now);

}  // namespace kw::identity
