// X.509-SVID issuance and validation: issued chains verify, here and with
// the OpenSSL command line as an independent verifier; each rule is broken by bending
// one template field and the refusal names that rule; chain rules hold per trust domain.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <openssl/x509v3.h>

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "identity/x509.h"

using namespace kw::identity;
using Catch::Matchers::ContainsSubstring;
using Catch::Matchers::StartsWith;
using namespace std::chrono_literals;

namespace {

const TimePoint kNow = now_seconds();

struct Issued {
    KeyPtr key;
    X509Ptr cert;
};

X509Ptr share(const X509Ptr& cert) {
    X509_up_ref(cert.get());
    return X509Ptr(cert.get());
}

// Issues TMPL with a fresh key; ISSUER null means self-signed.
Issued issue(const CertTemplate& tmpl, const Issued* issuer = nullptr) {
    auto key = generate_p256_key();
    REQUIRE(key.ok());
    auto cert = issue_certificate(tmpl, key->get(), issuer ? issuer->cert.get() : nullptr,
                                  issuer ? issuer->key.get() : nullptr);
    INFO((cert ? "" : cert.message()));
    REQUIRE(cert.ok());
    return {std::move(*key), std::move(*cert)};
}

kw::core::SpiffeId spiffe_id(const std::string& text) {
    auto id = kw::core::parse_spiffe_id(text);
    REQUIRE(id.ok());
    return *id;
}

// Root and intermediate of one trust domain, and its bundle (the root only).
struct Pki {
    std::string trust_domain;
    Issued root;
    Issued intermediate;
    TrustBundle bundle;

    explicit Pki(const std::string& td)
        : trust_domain(td),
          root(issue(ca_template(td, td + " root", kNow, 24h))),
          intermediate(issue(ca_template(td, td + " intermediate", kNow, 12h), &root)) {
        bundle.trust_domain = td;
        bundle.x509_authorities.push_back(share(root.cert));
    }

    CertTemplate leaf_tmpl(const std::string& path = "/workload") const {
        return leaf_template(spiffe_id("spiffe://" + trust_domain + path), kNow, 1h);
    }
    Issued leaf(const CertTemplate& tmpl) const { return issue(tmpl, &intermediate); }
    Issued leaf() const { return leaf(leaf_tmpl()); }
    BundleSet bundles() const { return {{trust_domain, &bundle}}; }
};

// A scratch directory for files handed to the openssl command, removed afterwards.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "kw_x509_XXXXXX").string();
        REQUIRE(mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    std::string write(const std::string& name, const std::string& content) const {
        std::filesystem::path file = path_ / name;
        std::ofstream(file) << content;
        return file.string();
    }

private:
    std::filesystem::path path_;
};

struct CommandResult {
    int status = -1;
    std::string output;  // stdout and stderr
};

CommandResult run(const std::string& command) {
    CommandResult result;
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, pipe)) result.output.append(buf, n);
    int status = pclose(pipe);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

// `openssl verify -x509_strict [PURPOSE]` of LEAF over PKI's intermediate up to ROOT.
CommandResult openssl_verify(const Pki& pki, X509* root, X509* leaf, const std::string& purpose) {
    TempDir dir;
    std::string root_file = dir.write("root.pem", to_pem(root));
    std::string intermediate = dir.write("intermediate.pem", to_pem(pki.intermediate.cert.get()));
    std::string leaf_file = dir.write("leaf.pem", to_pem(leaf));
    return run("openssl verify -x509_strict" + purpose + " -CAfile " + root_file + " -untrusted " + intermediate + " " +
               leaf_file);
}

void check_openssl_accepts(const Pki& pki, X509* leaf) {
    for (std::string purpose : {"", " -purpose sslclient", " -purpose sslserver"}) {
        CommandResult r = openssl_verify(pki, pki.root.cert.get(), leaf, purpose);
        INFO("purpose:" << purpose << "\n" << r.output);
        CHECK(r.status == 0);
        CHECK_THAT(r.output, ContainsSubstring("leaf.pem: OK"));
    }
}

// A template with one field bent, and the rule the result must be refused under.
struct BentTemplate {
    const char* name;
    std::function<void(CertTemplate&)> bend;
    const char* rule;
};

kw::Result<std::string> validate_signing(const Pki& pki, const CertTemplate& tmpl) {
    Issued ca = issue(tmpl, &pki.root);
    return validate_signing_certificate(ca.cert.get());
}

std::string lower_hex_only(const std::string& text) {
    std::string out;
    for (char c : text)
        if (std::isxdigit(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(c));
    return out;
}

const std::vector<std::string> kIds = {
    "spiffe://example.org/billing/api", "spiffe://kwarden.local/demo/client", "spiffe://td-1_x.y/a/B/c.d",
    "spiffe://example.org/" + std::string(150, 'x') + "/long",  // longer than a CN may be
};

}  // namespace

// ---- issuance and verification ------------------------------------------------------

TEST_CASE("an issued root, intermediate and leaf chain verifies and yields the leaf's ID") {
    for (const std::string& text : kIds) {
        DYNAMIC_SECTION(text) {
            kw::core::SpiffeId id = spiffe_id(text);
            Pki pki(id.trust_domain);
            Issued leaf = pki.leaf(leaf_template(id, kNow, 1h));
            auto svid = verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow);
            INFO((svid ? "" : svid.message()));
            REQUIRE(svid.ok());
            CHECK(svid->id.str() == text);
            REQUIRE(svid->chain.size() == 3);
            CHECK(X509_cmp(svid->chain[0].get(), leaf.cert.get()) == 0);
            CHECK(X509_cmp(svid->chain[1].get(), pki.intermediate.cert.get()) == 0);
            CHECK(X509_cmp(svid->chain[2].get(), pki.root.cert.get()) == 0);
        }
    }
}

TEST_CASE("the OpenSSL command line accepts issued chains under x509_strict for client and server use") {
    for (const std::string& text : kIds) {
        DYNAMIC_SECTION(text) {
            kw::core::SpiffeId id = spiffe_id(text);
            Pki pki(id.trust_domain);
            check_openssl_accepts(pki, pki.leaf(leaf_template(id, kNow, 1h)).cert.get());
        }
    }
}

TEST_CASE("the OpenSSL command line, as used here, refuses a chain to another root") {
    Pki pki("example.org");
    Pki other("example.org");
    CommandResult r = openssl_verify(pki, other.root.cert.get(), pki.leaf().cert.get(), "");
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, !ContainsSubstring("leaf.pem: OK"));
}

TEST_CASE("a leaf with an empty subject gets a critical SAN and still passes x509_strict") {
    Pki pki("example.org");
    CertTemplate tmpl = pki.leaf_tmpl();
    tmpl.organization.clear();
    tmpl.dns_sans = {"workload.example.org"};
    Issued leaf = pki.leaf(tmpl);
    CHECK(X509_NAME_entry_count(X509_get_subject_name(leaf.cert.get())) == 0);
    int index = X509_get_ext_by_NID(leaf.cert.get(), NID_subject_alt_name, -1);
    REQUIRE(index >= 0);
    CHECK(X509_EXTENSION_get_critical(X509_get_ext(leaf.cert.get(), index)) == 1);
    CHECK(validate_leaf(leaf.cert.get()).ok());
    check_openssl_accepts(pki, leaf.cert.get());
}

TEST_CASE("issued certificates carry the template's names, validity and extensions") {
    Pki pki("example.org");
    CertTemplate tmpl = pki.leaf_tmpl();
    Issued leaf = pki.leaf(tmpl);
    X509* cert = leaf.cert.get();

    CHECK(X509_get_version(cert) == X509_VERSION_3);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(pki.intermediate.cert.get())) == 0);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(pki.root.cert.get()), X509_get_subject_name(pki.root.cert.get())) == 0);
    CHECK(not_before(cert) == tmpl.not_before);
    CHECK(not_after(cert) == tmpl.not_after);
    CHECK(tmpl.not_before == kNow - kClockSkew);

    // basicConstraints critical; SAN non-critical under a non-empty subject.
    for (auto [nid, critical] : {std::pair{NID_basic_constraints, 1}, std::pair{NID_subject_alt_name, 0},
                                 std::pair{NID_key_usage, 1}, std::pair{NID_ext_key_usage, 0}}) {
        int index = X509_get_ext_by_NID(cert, nid, -1);
        INFO("extension " << OBJ_nid2sn(nid));
        REQUIRE(index >= 0);
        CHECK(X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == critical);
    }

    // The AKID names the issuer's SKI; the self-signed root names its own.
    const ASN1_OCTET_STRING* leaf_akid = X509_get0_authority_key_id(cert);
    const ASN1_OCTET_STRING* int_ski = X509_get0_subject_key_id(pki.intermediate.cert.get());
    REQUIRE(leaf_akid != nullptr);
    REQUIRE(int_ski != nullptr);
    CHECK(ASN1_OCTET_STRING_cmp(leaf_akid, int_ski) == 0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(pki.root.cert.get()),
                                X509_get0_subject_key_id(pki.root.cert.get())) == 0);
    CHECK(ASN1_STRING_length(int_ski) == 20);  // SHA-1

    // The CA template leaves pathlen out; a template that sets it gets it.
    CHECK(X509_get_pathlen(pki.intermediate.cert.get()) == -1);
    CertTemplate limited = ca_template("example.org", "limited", kNow, 1h);
    limited.path_len = 0;
    CHECK(X509_get_pathlen(issue(limited, &pki.root).cert.get()) == 0);
}

TEST_CASE("issuance refuses an issuer key that does not belong to the issuer certificate") {
    Pki pki("example.org");
    auto subject = generate_p256_key();
    auto stranger = generate_p256_key();
    REQUIRE(subject.ok());
    REQUIRE(stranger.ok());
    auto cert = issue_certificate(pki.leaf_tmpl(), subject->get(), pki.intermediate.cert.get(), stranger->get());
    REQUIRE_FALSE(cert.ok());
    CHECK_THAT(cert.message(), ContainsSubstring("issuer key does not belong to the issuer certificate"));
}

// ---- leaf rules ---------------------------------------------------------------------

TEST_CASE("the unmodified leaf template passes validate_leaf, and allowed variations too") {
    Pki pki("example.org");
    const std::pair<const char*, std::function<void(CertTemplate&)>> variations[] = {
        {"as issued", [](CertTemplate&) {}},
        {"no EKU", [](CertTemplate& t) { t.ext_key_usage.clear(); }},
        {"no basicConstraints", [](CertTemplate& t) { t.basic_constraints = false; }},
        {"a DNS SAN beside the URI SAN", [](CertTemplate& t) { t.dns_sans = {"api.example.org"}; }},
        {"EKU with more than the two", [](CertTemplate& t) { t.ext_key_usage.push_back(NID_code_sign); }},
    };
    for (const auto& [name, bend] : variations) {
        DYNAMIC_SECTION(name) {
            CertTemplate tmpl = pki.leaf_tmpl("/billing");
            bend(tmpl);
            auto id = validate_leaf(pki.leaf(tmpl).cert.get());
            INFO((id ? "" : id.message()));
            REQUIRE(id.ok());
            CHECK(id->str() == "spiffe://example.org/billing");
        }
    }
}

TEST_CASE("each leaf rule broken by one template field is refused with that rule") {
    Pki pki("example.org");
    const BentTemplate cases[] = {
        {"two URI SANs", [](CertTemplate& t) { t.uri_sans.push_back("spiffe://example.org/other"); },
         "must contain exactly one URI SAN, found 2"},
        {"no URI SAN but a DNS SAN",
         [](CertTemplate& t) {
             t.uri_sans.clear();
             t.dns_sans = {"example.org"};
         },
         "must contain exactly one URI SAN, found 0"},
        {"no SAN at all", [](CertTemplate& t) { t.uri_sans.clear(); }, "must contain exactly one URI SAN, found 0"},
        {"upper-case trust domain", [](CertTemplate& t) { t.uri_sans = {"spiffe://TD/x"}; },
         "URI SAN is not a valid SPIFFE ID: trust domain contains a character outside [a-z0-9._-] (spiffe://TD/x)"},
        {"https URI", [](CertTemplate& t) { t.uri_sans = {"https://x"}; },
         "URI SAN is not a valid SPIFFE ID: scheme must be 'spiffe://' (https://x)"},
        {"URI with a control byte", [](CertTemplate& t) { t.uri_sans = {"spiffe://example.org/a\nb"}; },
         "path segment 'a\\x0ab' contains a character outside [a-zA-Z0-9._-] (spiffe://example.org/a\\x0ab)"},
        {"ID without a path", [](CertTemplate& t) { t.uri_sans = {"spiffe://example.org"}; },
         "leaf SPIFFE ID must have a path (spiffe://example.org)"},
        {"cA=true", [](CertTemplate& t) { t.is_ca = true; }, "basicConstraints cA must be false"},
        {"keyUsage not critical", [](CertTemplate& t) { t.key_usage->critical = false; },
         "keyUsage must be marked critical"},
        {"keyUsage absent", [](CertTemplate& t) { t.key_usage.reset(); }, "keyUsage must be present"},
        {"keyCertSign", [](CertTemplate& t) { t.key_usage->key_cert_sign = true; },
         "keyUsage must not have keyCertSign"},
        {"cRLSign", [](CertTemplate& t) { t.key_usage->crl_sign = true; }, "keyUsage must not have cRLSign"},
        {"no digitalSignature", [](CertTemplate& t) { t.key_usage->digital_signature = false; },
         "keyUsage must have digitalSignature"},
        {"EKU serverAuth only", [](CertTemplate& t) { t.ext_key_usage = {NID_server_auth}; },
         "EKU must include serverAuth and clientAuth"},
        {"EKU clientAuth only", [](CertTemplate& t) { t.ext_key_usage = {NID_client_auth}; },
         "EKU must include serverAuth and clientAuth"},
    };
    for (const BentTemplate& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CertTemplate tmpl = pki.leaf_tmpl();
            c.bend(tmpl);
            Issued leaf = pki.leaf(tmpl);
            auto id = validate_leaf(leaf.cert.get());
            REQUIRE_FALSE(id.ok());
            CHECK_THAT(id.message(), StartsWith("X509-SVID leaf: ") && ContainsSubstring(c.rule));
            // verify_svid applies the same rule before it looks at the chain.
            auto svid = verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow);
            REQUIRE_FALSE(svid.ok());
            CHECK_THAT(svid.message(), ContainsSubstring(c.rule));
        }
    }
}

TEST_CASE("a certificate with a duplicated extension is refused as a leaf and as a signing certificate") {
    Pki pki("example.org");
    for (bool as_leaf : {true, false}) {
        DYNAMIC_SECTION((as_leaf ? "leaf" : "signing certificate")) {
            Issued issued = as_leaf ? pki.leaf() : issue(ca_template("example.org", "ca", kNow, 1h), &pki.root);
            // Append a second keyUsage, re-sign, and re-parse so nothing is cached.
            bssl::UniquePtr<ASN1_BIT_STRING> bits(ASN1_BIT_STRING_new());
            REQUIRE(ASN1_BIT_STRING_set_bit(bits.get(), 0, 1));
            REQUIRE(X509_add1_ext_i2d(issued.cert.get(), NID_key_usage, bits.get(), 1, X509V3_ADD_APPEND) == 1);
            REQUIRE(X509_sign(issued.cert.get(), pki.intermediate.key.get(), EVP_sha256()));
            std::vector<uint8_t> der = to_der(issued.cert.get());
            auto cert = from_der(der.data(), der.size());
            REQUIRE(cert.ok());
            std::string message =
                as_leaf ? validate_leaf(cert->get()).message() : validate_signing_certificate(cert->get()).message();
            CHECK_THAT(message, StartsWith(as_leaf ? "X509-SVID leaf: " : "X509-SVID signing certificate: ") &&
                                    ContainsSubstring("has an extension that does not parse or appears twice"));
        }
    }
}

// ---- signing certificate rules ------------------------------------------------------

TEST_CASE("the CA template passes validate_signing_certificate and yields its trust domain") {
    Pki pki("example.org");
    auto td = validate_signing_certificate(pki.intermediate.cert.get());
    REQUIRE(td.ok());
    CHECK(*td == "example.org");
    CHECK(validate_signing_certificate(pki.root.cert.get()).ok());

    CertTemplate anonymous = ca_template("example.org", "no ID", kNow, 1h);
    anonymous.uri_sans.clear();
    auto none = validate_signing(pki, anonymous);
    REQUIRE(none.ok());
    CHECK(none->empty());
}

TEST_CASE("each signing certificate rule broken by one template field is refused with that rule") {
    Pki pki("example.org");
    const BentTemplate cases[] = {
        {"cA=false", [](CertTemplate& t) { t.is_ca = false; }, "basicConstraints cA must be true"},
        {"no basicConstraints", [](CertTemplate& t) { t.basic_constraints = false; },
         "basicConstraints cA must be true"},
        {"no keyCertSign", [](CertTemplate& t) { t.key_usage->key_cert_sign = false; },
         "keyUsage must have keyCertSign"},
        {"keyUsage not critical", [](CertTemplate& t) { t.key_usage->critical = false; },
         "keyUsage must be marked critical"},
        {"keyUsage absent", [](CertTemplate& t) { t.key_usage.reset(); }, "keyUsage must be present"},
        {"ID with a path", [](CertTemplate& t) { t.uri_sans = {"spiffe://example.org/ca"}; },
         "SPIFFE ID must have no path (spiffe://example.org/ca)"},
        {"two URI SANs", [](CertTemplate& t) { t.uri_sans.push_back("spiffe://example.org"); },
         "must contain exactly one URI SAN, found 2"},
        {"invalid URI", [](CertTemplate& t) { t.uri_sans = {"spiffe://example.org:443"}; },
         "URI SAN is not a valid SPIFFE ID: trust domain contains a port"},
    };
    for (const BentTemplate& c : cases) {
        DYNAMIC_SECTION(c.name) {
            CertTemplate tmpl = ca_template("example.org", "bent", kNow, 1h);
            c.bend(tmpl);
            auto td = validate_signing(pki, tmpl);
            REQUIRE_FALSE(td.ok());
            CHECK_THAT(td.message(), StartsWith("X509-SVID signing certificate: ") && ContainsSubstring(c.rule));
        }
    }
}

// ---- chain rules --------------------------------------------------------------------

TEST_CASE("an expired leaf is refused") {
    Pki pki("example.org");
    Issued leaf = pki.leaf();
    REQUIRE(verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow).ok());
    auto svid = verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow + 2h);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(), StartsWith("X509-SVID chain: ") && ContainsSubstring("certificate has expired") &&
                                   ContainsSubstring("depth 0"));
}

TEST_CASE("a leaf that is not yet valid is refused") {
    Pki pki("example.org");
    CertTemplate tmpl = pki.leaf_tmpl();
    tmpl.not_before = kNow + 30min;
    Issued leaf = pki.leaf(tmpl);
    REQUIRE(verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow + 31min).ok());
    auto svid = verify_svid(leaf.cert.get(), {pki.intermediate.cert.get()}, pki.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(), StartsWith("X509-SVID chain: ") && ContainsSubstring("certificate is not yet valid"));
}

TEST_CASE("a leaf is refused when only another trust domain's bundle is given") {
    Pki a("a.example");
    Pki b("b.example");
    auto svid = verify_svid(a.leaf().cert.get(), {a.intermediate.cert.get()}, b.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK(svid.message() == "X509-SVID chain: no trust bundle for trust domain 'a.example'");
}

TEST_CASE("an intermediate naming another trust domain under the right root is refused") {
    Pki a("a.example");
    Issued foreign_intermediate = issue(ca_template("b.example", "b under a", kNow, 12h), &a.root);
    Issued leaf = issue(a.leaf_tmpl(), &foreign_intermediate);
    auto svid = verify_svid(leaf.cert.get(), {foreign_intermediate.cert.get()}, a.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(),
               ContainsSubstring("signing certificate at depth 1 names trust domain 'b.example', not the leaf's "
                                 "'a.example'"));
}

TEST_CASE("a leaf claiming trust domain B signed by A's CA is refused although both bundles are present") {
    Pki a("a.example");
    Pki b("b.example");
    Issued leaf = a.leaf(b.leaf_tmpl());  // spiffe://b.example/workload, issued by A's intermediate
    const BundleSet both = {{"a.example", &a.bundle}, {"b.example", &b.bundle}};
    auto svid = verify_svid(leaf.cert.get(), {a.intermediate.cert.get()}, both, kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(), StartsWith("X509-SVID chain: ") &&
                                   ContainsSubstring("unable to get local issuer certificate") &&
                                   ContainsSubstring("trust domain 'b.example'"));
    // The same leaf with A's ID verifies against the same set: the refusal is the domain.
    CHECK(verify_svid(a.leaf().cert.get(), {a.intermediate.cert.get()}, both, kNow).ok());
}

TEST_CASE("a chain to another root of the same trust domain is refused") {
    Pki issuer("example.org");
    Pki other("example.org");
    auto svid = verify_svid(issuer.leaf().cert.get(), {issuer.intermediate.cert.get()}, other.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(), ContainsSubstring("unable to get local issuer certificate"));
}

TEST_CASE("a chain without its intermediate is refused") {
    Pki pki("example.org");
    auto svid = verify_svid(pki.leaf().cert.get(), {}, pki.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(), ContainsSubstring("unable to get local issuer certificate"));
}

TEST_CASE("a path-valid intermediate that breaks a SPIFFE signing rule is refused") {
    Pki pki("example.org");
    CertTemplate tmpl = ca_template("example.org", "soft", kNow, 12h);
    tmpl.key_usage->critical = false;  // path validation allows it; SPIFFE does not
    Issued intermediate = issue(tmpl, &pki.root);
    Issued leaf = issue(pki.leaf_tmpl(), &intermediate);
    auto svid = verify_svid(leaf.cert.get(), {intermediate.cert.get()}, pki.bundles(), kNow);
    REQUIRE_FALSE(svid.ok());
    CHECK_THAT(svid.message(),
               StartsWith("X509-SVID signing certificate: ") && ContainsSubstring("keyUsage must be marked critical"));
}

TEST_CASE("every authority in a bundle is a trust anchor, self-signed or not") {
    Pki pki("example.org");
    TrustBundle intermediate_only;
    intermediate_only.trust_domain = "example.org";
    intermediate_only.x509_authorities.push_back(share(pki.intermediate.cert));
    auto svid = verify_svid(pki.leaf().cert.get(), {}, {{"example.org", &intermediate_only}}, kNow);
    INFO((svid ? "" : svid.message()));
    REQUIRE(svid.ok());
    CHECK(svid->chain.size() == 2);
}

// ---- serials, fingerprints, times, encodings ----------------------------------------

TEST_CASE("random serials are distinct and never zero") {
    std::set<std::array<uint8_t, 16>> seen;
    for (int i = 0; i < 100; ++i) {
        auto serial = random_serial();
        CHECK_FALSE(std::all_of(serial.begin(), serial.end(), [](uint8_t b) { return b == 0; }));
        seen.insert(serial);
    }
    CHECK(seen.size() == 100);
}

TEST_CASE("the serial is written as a positive INTEGER and shown without leading zero bytes") {
    Pki pki("example.org");
    CertTemplate tmpl = pki.leaf_tmpl();
    tmpl.serial = {0x00, 0x00, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d};
    Issued leaf = pki.leaf(tmpl);
    CHECK(ASN1_STRING_type(X509_get0_serialNumber(leaf.cert.get())) == V_ASN1_INTEGER);  // not NEG_INTEGER
    CHECK(serial_hex(leaf.cert.get()) == "ff0102030405060708090a0b0c0d");
}

TEST_CASE("sha256_fingerprint matches the OpenSSL command line") {
    Pki pki("example.org");
    Issued leaf = pki.leaf();
    TempDir dir;
    std::string file = dir.write("leaf.pem", to_pem(leaf.cert.get()));
    CommandResult r = run("openssl x509 -noout -fingerprint -sha256 -in " + file);
    REQUIRE(r.status == 0);
    std::string fingerprint = sha256_fingerprint(leaf.cert.get());
    CHECK(fingerprint.size() == 64);
    CHECK(fingerprint == lower_hex_only(r.output.substr(r.output.find('=') + 1)));
}

TEST_CASE("format_time writes RFC 3339 UTC") {
    CHECK(format_time(TimePoint{}) == "1970-01-01T00:00:00Z");
    CHECK(format_time(TimePoint{Seconds{1795341600}}) == "2026-11-22T10:00:00Z");
    CHECK(format_time(TimePoint{Seconds{2840140800}}) == "2060-01-01T00:00:00Z");
}

TEST_CASE("validity round-trips through UTCTime and GeneralizedTime") {
    Pki pki("example.org");
    CertTemplate tmpl = pki.leaf_tmpl();
    tmpl.not_before = TimePoint{Seconds{1795341600}};  // UTCTime (before 2050)
    tmpl.not_after = TimePoint{Seconds{2840140800}};   // GeneralizedTime (2060)
    Issued leaf = pki.leaf(tmpl);
    CHECK(format_time(not_before(leaf.cert.get())) == "2026-11-22T10:00:00Z");
    CHECK(format_time(not_after(leaf.cert.get())) == "2060-01-01T00:00:00Z");
}

TEST_CASE("certificates round-trip through PEM and DER") {
    Pki pki("example.org");
    Issued leaf = pki.leaf();
    std::string pem = to_pem(leaf.cert.get()) + to_pem(pki.intermediate.cert.get());
    CHECK(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    auto certs = certs_from_pem(pem);
    REQUIRE(certs.ok());
    REQUIRE(certs->size() == 2);
    CHECK(to_der((*certs)[0].get()) == to_der(leaf.cert.get()));
    CHECK(to_der((*certs)[1].get()) == to_der(pki.intermediate.cert.get()));

    std::vector<uint8_t> der = to_der(leaf.cert.get());
    auto parsed = from_der(der.data(), der.size());
    REQUIRE(parsed.ok());
    CHECK(X509_cmp(parsed->get(), leaf.cert.get()) == 0);

    der.push_back(0);
    auto trailing = from_der(der.data(), der.size());
    REQUIRE_FALSE(trailing.ok());
    CHECK_THAT(trailing.message(), ContainsSubstring("1 bytes follow the certificate"));
}

TEST_CASE("certs_from_pem refuses text without certificates and broken blocks") {
    auto empty = certs_from_pem("no PEM here\n");
    REQUIRE_FALSE(empty.ok());
    CHECK_THAT(empty.message(), ContainsSubstring("no CERTIFICATE block found"));

    auto broken = certs_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    REQUIRE_FALSE(broken.ok());
    CHECK_THAT(broken.message(), ContainsSubstring("block 1 is not a valid CERTIFICATE"));
}

TEST_CASE("private keys round-trip through PKCS#8 PEM") {
    auto key = generate_p256_key();
    REQUIRE(key.ok());
    std::string pem = private_key_to_pem(key->get());
    CHECK(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    auto parsed = private_key_from_pem(pem);
    REQUIRE(parsed.ok());
    CHECK(EVP_PKEY_cmp(parsed->get(), key->get()) == 1);
    CHECK(EVP_PKEY_id(parsed->get()) == EVP_PKEY_EC);

    // The parsed key signs certificates that verify under the original's public half.
    auto cert = issue_certificate(ca_template("example.org", "self", kNow, 1h), parsed->get(), nullptr, nullptr);
    REQUIRE(cert.ok());
    CHECK(X509_verify(cert->get(), key->get()) == 1);

    CHECK_FALSE(private_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
}
