// SPIFFE trust bundles as JSON (the SPIFFE Trust Domain and Bundle format): a JWK set
// whose X.509 authorities are keys with "use": "x509-svid" and exactly one "x5c" entry,
// plus "spiffe_sequence" and "spiffe_refresh_hint". The trust domain is not in the
// document: the caller says which trust domain a bundle belongs to (policy federation
// entries, our own CA).
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"
#include "identity/x509.h"

namespace kw::identity {

// Parses bundle JSON for TRUST_DOMAIN. Each x509-svid key must carry exactly one x5c
// certificate, which must be a signing certificate (validate_signing_certificate) whose
// SPIFFE ID, if any, names TRUST_DOMAIN, and whose public key matches the JWK's kty/crv/
// x/y when those are given. Keys with another "use" (jwt-svid) are skipped. A bundle
// with no x509-svid key is an error. Errors name the JSON path: "/keys/1/x5c: ...".
Result<TrustBundle> parse_bundle_json(std::string_view json, std::string_view trust_domain);
Result<TrustBundle> load_bundle_file(const std::string& path, std::string_view trust_domain);

// Serialises a bundle: {"keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256",
// "x": ..., "y": ..., "x5c": [base64 DER]}], "spiffe_sequence": N,
// "spiffe_refresh_hint": S}. Pretty-printed, two-space indent, trailing newline.
std::string bundle_to_json(const TrustBundle& bundle);

}  // namespace kw::identity
