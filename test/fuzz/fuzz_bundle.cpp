// SPIFFE bundles (identity/bundle.cpp): a federated trust domain's bundle file, which its
// operator writes. Parsing never crashes; an accepted bundle holds only signing
// certificates, serialises, and parses back to the same bundle.
#include "fuzz_x509.h"
#include "identity/bundle.h"

using namespace kw;
using namespace kw::identity;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    auto bundle = parse_bundle_json(text, fuzz::kOwnTrustDomain);
    if (!bundle) {
        if (bundle.message().empty()) fuzz::fail("refused a bundle without a reason");
        return 0;
    }
    if (bundle->x509_authorities.empty()) fuzz::fail("accepted a bundle without an X.509 authority");
    if (bundle->trust_domain != fuzz::kOwnTrustDomain) fuzz::fail("the bundle changed trust domain");
    for (const auto& c : bundle->x509_authorities)
        if (!validate_signing_certificate(c.get())) fuzz::fail("accepted a certificate that cannot sign");
    std::string again = bundle_to_json(*bundle);
    auto back = parse_bundle_json(again, fuzz::kOwnTrustDomain);
    if (!back) fuzz::fail("a serialised bundle does not parse back", back.message());
    if (back->sequence != bundle->sequence || back->refresh_hint_seconds != bundle->refresh_hint_seconds ||
        back->x509_authorities.size() != bundle->x509_authorities.size())
        fuzz::fail("a serialised bundle parses back to another bundle", again);
    for (size_t i = 0; i < back->x509_authorities.size(); ++i)
        if (X509_cmp(back->x509_authorities[i].get(), bundle->x509_authorities[i].get()) != 0)
            fuzz::fail("a serialised bundle parses back to other certificates", again);
    if (bundle_to_json(*back) != again) fuzz::fail("serialising is not stable", again);
    return 0;
}
