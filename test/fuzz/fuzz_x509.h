// The trust anchors of the X.509 harnesses (fuzz_x509_chain, fuzz_bundle) and the time
// they verify at. The seed corpora hold certificates these CAs issued
// (make_x509_seeds.cpp writes both the anchors and the seeds, in one run).
#pragma once

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "fuzz_common.h"
#include "identity/x509.h"

namespace kw::fuzz {

inline constexpr const char* kOwnTrustDomain = "example.org";
inline constexpr const char* kPartnerTrustDomain = "partner.example";

// 2026-12-01T00:00:00Z: inside every seed certificate's validity.
inline identity::TimePoint fixed_now() {
    using namespace std::chrono;
    return time_point_cast<seconds>(sys_days{year{2026} / 12 / 1});
}

// The CA certificate of TRUST_DOMAIN, from test/fuzz/anchors/TRUST_DOMAIN.pem.
inline identity::X509Ptr anchor(const std::string& trust_domain) {
    std::ifstream in(std::string(KW_FUZZ_DIR) + "/anchors/" + trust_domain + ".pem");
    std::stringstream pem;
    pem << in.rdbuf();
    auto certs = identity::certs_from_pem(pem.str());
    if (!certs || certs->size() != 1) fail("cannot read the anchor of", trust_domain);
    return std::move(certs->front());
}

}  // namespace kw::fuzz
