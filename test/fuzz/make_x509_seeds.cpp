// Writes the trust anchors of the X.509 harnesses (anchors/<trust domain>.pem) and the
// seeds that need them (corpus/x509_chain/, corpus/bundle/): certificates issued by those
// anchors, valid at fuzz::fixed_now(). Run from build-fuzz/: ./make_x509_seeds. Running it
// again replaces anchors and seeds together (new keys each time).
#include <filesystem>

#include "fuzz_x509.h"
#include "identity/bundle.h"

using namespace kw;
using namespace kw::identity;
using namespace std::chrono_literals;

namespace {

struct Issued {
    KeyPtr key;
    X509Ptr cert;
};

Issued issue(const CertTemplate& tmpl, const Issued* issuer) {
    auto key = generate_p256_key();
    if (!key) fuzz::fail("key", key.message());
    auto cert = issue_certificate(tmpl, key->get(), issuer ? issuer->cert.get() : nullptr,
                                  issuer ? issuer->key.get() : nullptr);
    if (!cert) fuzz::fail("issue", cert.message());
    return {std::move(*key), std::move(*cert)};
}

Issued leaf(const Issued& ca, const std::string& id) {
    auto parsed = core::parse_spiffe_id(id);
    if (!parsed) fuzz::fail("id", id);
    return issue(leaf_template(*parsed, fuzz::fixed_now(), 24h * 365), &ca);
}

void write(const std::filesystem::path& path, const std::string& bytes) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

// The chain harness's input: each certificate as a 2-byte big-endian length and its DER.
std::string chain(std::initializer_list<X509*> certs) {
    std::string out;
    for (X509* c : certs) {
        auto der = to_der(c);
        out += static_cast<char>(der.size() >> 8);
        out += static_cast<char>(der.size() & 0xff);
        out.append(der.begin(), der.end());
    }
    return out;
}

}  // namespace

int main() {
    const std::filesystem::path dir = KW_FUZZ_DIR;
    const auto now = fuzz::fixed_now();
    Issued own = issue(ca_template(fuzz::kOwnTrustDomain, "example.org CA", now - 24h * 30, 24h * 3650), nullptr);
    Issued partner = issue(ca_template(fuzz::kPartnerTrustDomain, "partner CA", now - 24h * 30, 24h * 3650), nullptr);
    Issued stranger = issue(ca_template(fuzz::kOwnTrustDomain, "stranger CA", now - 24h * 30, 24h * 3650), nullptr);
    Issued inter = issue(ca_template(fuzz::kOwnTrustDomain, "example.org intermediate", now - 24h, 24h * 365), &own);
    write(dir / "anchors" / (std::string(fuzz::kOwnTrustDomain) + ".pem"), to_pem(own.cert.get()));
    write(dir / "anchors" / (std::string(fuzz::kPartnerTrustDomain) + ".pem"), to_pem(partner.cert.get()));

    Issued a = leaf(own, "spiffe://example.org/web");
    Issued b = leaf(inter, "spiffe://example.org/db/primary");
    Issued c = leaf(partner, "spiffe://partner.example/api");
    Issued d = leaf(stranger, "spiffe://example.org/impostor");
    const auto seeds = dir / "corpus" / "x509_chain";
    write(seeds / "leaf_of_own_ca", chain({a.cert.get()}));
    write(seeds / "leaf_via_intermediate", chain({b.cert.get(), inter.cert.get()}));
    write(seeds / "leaf_of_partner", chain({c.cert.get()}));
    write(seeds / "leaf_of_stranger", chain({d.cert.get()}));
    write(seeds / "ca_as_leaf", chain({own.cert.get()}));
    write(seeds / "pem_chain", to_pem(b.cert.get()) + to_pem(inter.cert.get()));

    // The seeds reach past path validation: the harness's trust store accepts these.
    TrustBundle own_bundle, partner_bundle;
    own_bundle.trust_domain = fuzz::kOwnTrustDomain;
    own_bundle.x509_authorities.push_back(X509Ptr(X509_dup(own.cert.get())));
    partner_bundle.trust_domain = fuzz::kPartnerTrustDomain;
    partner_bundle.x509_authorities.push_back(X509Ptr(X509_dup(partner.cert.get())));
    BundleSet set{{own_bundle.trust_domain, &own_bundle}, {partner_bundle.trust_domain, &partner_bundle}};
    for (auto [l, inter_cert] : {std::pair{&a, (X509*)nullptr}, {&b, inter.cert.get()}, {&c, (X509*)nullptr}}) {
        std::vector<X509*> rest;
        if (inter_cert) rest.push_back(inter_cert);
        if (auto v = verify_svid(l->cert.get(), rest, set, now); !v) fuzz::fail("a seed does not verify", v.message());
    }

    TrustBundle bundle;
    bundle.trust_domain = fuzz::kOwnTrustDomain;
    bundle.sequence = 7;
    bundle.refresh_hint_seconds = 300;
    bundle.x509_authorities.push_back(X509Ptr(X509_dup(own.cert.get())));
    const auto bundles = dir / "corpus" / "bundle";
    write(bundles / "one_authority", bundle_to_json(bundle));
    bundle.x509_authorities.push_back(X509Ptr(X509_dup(stranger.cert.get())));
    std::string two = bundle_to_json(bundle);
    write(bundles / "two_authorities", two);
    // A JWT authority among them, which parsing skips.
    auto j = nlohmann::json::parse(two);
    j["keys"].push_back({{"use", "jwt-svid"}, {"kty", "EC"}, {"crv", "P-256"}, {"kid", "k1"},
                         {"x", j["keys"][0]["x"]}, {"y", j["keys"][0]["y"]}});
    write(bundles / "with_jwt_key", j.dump(2));
    return 0;
}
