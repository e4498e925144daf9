// The signing side of a trust domain: the CA that issues this node's X.509-SVIDs, the
// files an operator keeps it in, and the ephemeral single-machine CA the agent makes when
// none is configured.
//
// A CA directory (`kwarden ca init`, `kwarden ca sign-intermediate`) holds PEM files:
//   root.pem            the trust anchor (the trust domain's bundle)
//   root.key            root key: `ca init` only; keep it offline
//   intermediate.pem    the signing certificate, then any certificates between it and root
//   intermediate.key    its key
// The agent reads root.pem, intermediate.pem and intermediate.key; it never needs root.key.
// Files are 0600 in a 0700 directory, and nothing is overwritten without `force`.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "identity/x509.h"

namespace kw::identity {

inline constexpr std::string_view kRootCertFile = "root.pem";
inline constexpr std::string_view kRootKeyFile = "root.key";
inline constexpr std::string_view kIntermediateCertFile = "intermediate.pem";
inline constexpr std::string_view kIntermediateKeyFile = "intermediate.key";
// `svid mint` output, named as spiffe-helper names them.
inline constexpr std::string_view kSvidCertFile = "svid.pem";
inline constexpr std::string_view kSvidKeyFile = "svid_key.pem";
inline constexpr std::string_view kSvidBundleFile = "svid_bundle.pem";

inline constexpr Seconds kDefaultRootTtl{3650 * 86400};
inline constexpr Seconds kDefaultIntermediateTtl{365 * 86400};
inline constexpr Seconds kEphemeralCaTtl{30 * 86400};
// spiffe_refresh_hint of the bundles we publish: how often a federated peer should fetch.
inline constexpr Seconds kBundleRefreshHint{300};

// An issued X.509-SVID. Shared and immutable: a handshake that holds one keeps it alive
// across a rotation; the key is freed (and cleared by BoringSSL) with the last holder.
struct Svid {
    core::SpiffeId id;
    X509Ptr cert;
    KeyPtr key;
    std::vector<X509Ptr> intermediates;  // what a peer needs between the leaf and the bundle
    TimePoint issued_at{};
    TimePoint not_after{};
    TimePoint rotate_at{};
    Seconds ttl{};
    std::string serial;       // lowercase hex
    std::string fingerprint;  // SHA-256 of the DER, lowercase hex
};

class SigningAuthority {
public:
    // Reads DIR (see above) and checks it: the key matches the signing certificate, the
    // chain verifies to root.pem at NOW, every certificate follows the SPIFFE signing
    // rules and names one trust domain.
    static Result<std::shared_ptr<const SigningAuthority>> load_dir(const std::string& dir, TimePoint now);
    // A root and an intermediate made in memory for TRUST_DOMAIN; gone when the agent exits.
    static Result<std::shared_ptr<const SigningAuthority>> ephemeral(std::string_view trust_domain, TimePoint now,
                                                                     Seconds ttl = kEphemeralCaTtl);
    // From parts already in memory (`ca init`, tests): SIGNER signs, CHAIN_UP are the
    // certificates between it and a root in ROOTS (empty when ROOTS signed it).
    static Result<std::shared_ptr<const SigningAuthority>> from_parts(X509Ptr signer, KeyPtr key,
                                                                      std::vector<X509Ptr> chain_up,
                                                                      std::vector<X509Ptr> roots, TimePoint now,
                                                                      std::string source);

    // A fresh P-256 key and a leaf for ID, valid from NOW - skew for TTL, cut at the signing
    // certificate's own not-after. Rotation is due at half of the lifetime granted.
    Result<std::shared_ptr<const Svid>> issue(const core::SpiffeId& id, Seconds ttl, TimePoint now) const;

    const std::string& trust_domain() const { return trust_domain_; }
    const TrustBundle& bundle() const { return bundle_; }
    X509* signer() const { return signer_.get(); }
    TimePoint signer_not_after() const { return not_after(signer_.get()); }
    const std::string& source() const { return source_; }  // directory, or "ephemeral"
    bool is_ephemeral() const { return source_ == "ephemeral"; }

private:
    SigningAuthority() = default;
    std::string trust_domain_;
    X509Ptr signer_;
    KeyPtr key_;
    std::vector<X509Ptr> chain_up_;
    TrustBundle bundle_;
    std::string source_;
};

// ---- CA files ------------------------------------------------------------------------
struct CaInitOptions {
    std::string trust_domain;
    std::string out_dir;
    Seconds root_ttl = kDefaultRootTtl;
    Seconds intermediate_ttl = kDefaultIntermediateTtl;
    bool force = false;
};
// Root and first intermediate into OUT_DIR. Returns the files written.
Result<std::vector<std::string>> ca_init(const CaInitOptions& options, TimePoint now);

struct SignIntermediateOptions {
    std::string root_dir;  // root.pem + root.key
    std::string out_dir;   // gets root.pem, intermediate.pem, intermediate.key
    Seconds ttl = kDefaultIntermediateTtl;
    bool force = false;
};
Result<std::vector<std::string>> ca_sign_intermediate(const SignIntermediateOptions& options, TimePoint now);

struct MintOptions {
    std::string ca_dir;
    std::string spiffe_id;
    std::string out_dir;  // gets svid.pem (leaf + intermediates), svid_key.pem, svid_bundle.pem
    Seconds ttl{3600};
    bool force = false;
};
Result<std::vector<std::string>> svid_mint(const MintOptions& options, TimePoint now);

// The bundle of a CA directory (root.pem), for `bundle show --ca DIR`.
Result<TrustBundle> bundle_of_ca_dir(const std::string& dir);

}  // namespace kw::identity
