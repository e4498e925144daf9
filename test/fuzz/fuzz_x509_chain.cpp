// A peer's X.509 chain (identity/x509.cpp verify_svid, through the TrustStore the TLS
// verify callback uses, agent/tls/handshake.cpp): what any peer presents in a handshake.
// The input is up to 8 certificates, each a 2-byte big-endian length and its DER, or a
// PEM text (CA and bundle files). Parsing, the SVID rules and path validation never
// crash, and an accepted chain names an ID of a trust domain we hold.
#include <memory>

#include "fuzz_x509.h"
#include "identity/trust_store.h"

using namespace kw;
using namespace kw::identity;

namespace {

const TrustStore& trust() {
    static const TrustStore store = [] {
        auto own = std::make_shared<TrustBundle>();
        own->trust_domain = fuzz::kOwnTrustDomain;
        own->x509_authorities.push_back(fuzz::anchor(fuzz::kOwnTrustDomain));
        auto partner = std::make_shared<TrustBundle>();
        partner->trust_domain = fuzz::kPartnerTrustDomain;
        partner->x509_authorities.push_back(fuzz::anchor(fuzz::kPartnerTrustDomain));
        return TrustStore(own, {partner});
    }();
    return store;
}

// What `svid list` and the events show of a certificate.
void describe(X509* cert) {
    (void)serial_hex(cert);
    (void)sha256_fingerprint(cert);
    (void)format_time(not_before(cert));
    (void)format_time(not_after(cert));
    (void)validate_leaf(cert);
    (void)validate_signing_certificate(cert);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<X509Ptr> certs;
    std::string_view text = fuzz::as_text(data, size);
    if (text.starts_with("-----BEGIN")) {
        auto pem = certs_from_pem(text);
        if (!pem) return 0;
        certs = std::move(*pem);
    } else {
        while (size >= 2 && certs.size() < 8) {
            size_t len = (size_t{data[0]} << 8) | data[1];
            data += 2;
            size -= 2;
            if (len > size) len = size;
            auto cert = from_der(data, len);
            data += len;
            size -= len;
            if (cert) certs.push_back(std::move(*cert));
        }
    }
    if (certs.empty()) return 0;
    for (const auto& c : certs) describe(c.get());
    std::vector<X509*> intermediates;
    for (size_t i = 1; i < certs.size(); ++i) intermediates.push_back(certs[i].get());
    auto verified = verify_svid(certs[0].get(), intermediates, trust().bundles(), fuzz::fixed_now());
    if (verified) {
        if (!trust().find(verified->id.trust_domain)) fuzz::fail("verified an ID of a trust domain we do not hold");
        if (verified->id.path.empty()) fuzz::fail("verified a leaf without a path");
        if (verified->chain.size() < 2) fuzz::fail("a verified chain does not reach an authority");
    } else if (verified.message().empty()) {
        fuzz::fail("refused a chain without a reason");
    }
    return 0;
}
