// X.509 for SPIFFE (see x509.h): issuance from a CertTemplate, encodings, and the
// X509-SVID rules. Everything goes through BoringSSL; every object is owned by a
// bssl::UniquePtr, and BoringSSL's error queue is drained into the returned message.
#include "identity/x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <limits>

#include "core/sha256.h"

namespace kw::identity {
namespace {

// Error prefixes: which set of rules a certificate broke.
constexpr std::string_view kLeaf = "X509-SVID leaf: ";
constexpr std::string_view kSigning = "X509-SVID signing certificate: ";
constexpr std::string_view kChain = "X509-SVID chain: ";

// The reason for the oldest error in BoringSSL's queue, which is then cleared so that
// a later call does not report a stale failure.
std::string ssl_reason() {
    uint32_t code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "no detail from BoringSSL";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

Error ssl_error(std::string_view what) { return make_error(std::string(what) + ": " + ssl_reason()); }

time_t to_time_t(TimePoint t) { return static_cast<time_t>(t.time_since_epoch().count()); }

// ---- issuance -----------------------------------------------------------------------

bool add_name_entry(X509_NAME* name, int nid, const std::string& value) {
    if (value.empty()) return true;
    return X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, reinterpret_cast<const uint8_t*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
}

bool set_time(X509* cert, TimePoint t, int (*setter)(X509*, const ASN1_TIME*)) {
    bssl::UniquePtr<ASN1_TIME> time(ASN1_TIME_set(nullptr, to_time_t(t)));
    return time && setter(cert, time.get()) == 1;
}

// Subject key identifier, RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey
// BIT STRING (without tag, length and unused-bits octet).
bssl::UniquePtr<ASN1_OCTET_STRING> key_identifier(X509* cert) {
    const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(cert);
    if (bits == nullptr) return nullptr;
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1(ASN1_STRING_get0_data(bits), static_cast<size_t>(ASN1_STRING_length(bits)), digest);
    bssl::UniquePtr<ASN1_OCTET_STRING> id(ASN1_OCTET_STRING_new());
    if (!id || !ASN1_OCTET_STRING_set(id.get(), digest, sizeof digest)) return nullptr;
    return id;
}

bool add_ext(X509* cert, int nid, void* value, bool critical) {
    return X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_DEFAULT) == 1;
}

bool add_basic_constraints(X509* cert, const CertTemplate& tmpl) {
    bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
    if (!bc) return false;
    bc->ca = tmpl.is_ca ? 0xff : 0;  // DER omits the DEFAULT FALSE
    if (tmpl.path_len) {
        bc->pathlen = ASN1_INTEGER_new();
        if (bc->pathlen == nullptr || !ASN1_INTEGER_set(bc->pathlen, *tmpl.path_len)) return false;
    }
    return add_ext(cert, NID_basic_constraints, bc.get(), true);
}

bool add_key_usage(X509* cert, const KeyUsage& ku) {
    bssl::UniquePtr<ASN1_BIT_STRING> bits(ASN1_BIT_STRING_new());
    if (!bits) return false;
    // Bit numbers from RFC 5280 §4.2.1.3.
    const std::pair<bool, int> flags[] = {{ku.digital_signature, 0}, {ku.key_cert_sign, 5}, {ku.crl_sign, 6}};
    for (const auto& [set, bit] : flags)
        if (set && !ASN1_BIT_STRING_set_bit(bits.get(), bit, 1)) return false;
    return add_ext(cert, NID_key_usage, bits.get(), ku.critical);
}

bool add_ext_key_usage(X509* cert, const std::vector<int>& nids) {
    bssl::UniquePtr<EXTENDED_KEY_USAGE> eku(EXTENDED_KEY_USAGE_new());
    if (!eku) return false;
    for (int nid : nids) {
        bssl::UniquePtr<ASN1_OBJECT> oid(OBJ_nid2obj(nid));
        if (!oid || !sk_ASN1_OBJECT_push(eku.get(), oid.get())) return false;
        oid.release();
    }
    return add_ext(cert, NID_ext_key_usage, eku.get(), false);
}

bool push_general_name(GENERAL_NAMES* names, int type, const std::string& value) {
    bssl::UniquePtr<ASN1_IA5STRING> text(ASN1_IA5STRING_new());
    bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    if (!text || !name || !ASN1_STRING_set(text.get(), value.data(), static_cast<int>(value.size()))) return false;
    GENERAL_NAME_set0_value(name.get(), type, text.release());
    if (!sk_GENERAL_NAME_push(names, name.get())) return false;
    name.release();
    return true;
}

bool add_subject_alt_name(X509* cert, const CertTemplate& tmpl) {
    bssl::UniquePtr<GENERAL_NAMES> names(GENERAL_NAMES_new());
    if (!names) return false;
    for (const std::string& uri : tmpl.uri_sans)
        if (!push_general_name(names.get(), GEN_URI, uri)) return false;
    for (const std::string& dns : tmpl.dns_sans)
        if (!push_general_name(names.get(), GEN_DNS, dns)) return false;
    // RFC 5280 §4.2.1.6: with an empty subject, the SAN carries the identity and is critical.
    bool subject_empty = X509_NAME_entry_count(X509_get_subject_name(cert)) == 0;
    return add_ext(cert, NID_subject_alt_name, names.get(), subject_empty);
}

bool add_key_identifiers(X509* cert, X509* issuer) {
    bssl::UniquePtr<ASN1_OCTET_STRING> ski = key_identifier(cert);
    if (!ski || !add_ext(cert, NID_subject_key_identifier, ski.get(), false)) return false;

    // The authority key identifier repeats the issuer's SKI, so that path building
    // matches it; an issuer without one gets the value it would have had.
    bssl::UniquePtr<AUTHORITY_KEYID> akid(AUTHORITY_KEYID_new());
    if (!akid) return false;
    const ASN1_OCTET_STRING* issuer_ski = issuer ? X509_get0_subject_key_id(issuer) : nullptr;
    akid->keyid =
        issuer_ski != nullptr ? ASN1_OCTET_STRING_dup(issuer_ski) : key_identifier(issuer ? issuer : cert).release();
    return akid->keyid != nullptr && add_ext(cert, NID_authority_key_identifier, akid.get(), false);
}

bool add_extensions(X509* cert, const CertTemplate& tmpl, X509* issuer) {
    if (tmpl.basic_constraints && !add_basic_constraints(cert, tmpl)) return false;
    if (tmpl.key_usage && !add_key_usage(cert, *tmpl.key_usage)) return false;
    if (!tmpl.ext_key_usage.empty() && !add_ext_key_usage(cert, tmpl.ext_key_usage)) return false;
    if ((!tmpl.uri_sans.empty() || !tmpl.dns_sans.empty()) && !add_subject_alt_name(cert, tmpl)) return false;
    return add_key_identifiers(cert, issuer);
}

// ---- validation ---------------------------------------------------------------------

// Text taken from a certificate, for an error message: at most 256 bytes, control and
// non-ASCII bytes as \xNN, since it comes from whoever presented the certificate.
std::string printable(std::string_view text) {
    constexpr size_t kMax = 256;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : text.substr(0, kMax)) {
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    if (text.size() > kMax) out += "...";
    return out;
}

// An error for a broken rule: PREFIX names what was checked ("X509-SVID leaf: ").
Error broken(std::string_view prefix, const std::string& rule) { return make_error(std::string(prefix) + rule); }

// All URI SANs of CERT (none when there is no subjectAltName).
Result<std::vector<std::string>> uri_sans(X509* cert, std::string_view prefix) {
    int critical = -1;
    bssl::UniquePtr<GENERAL_NAMES> names(
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &critical, nullptr)));
    if (!names) {
        ERR_clear_error();
        if (critical == -1) return std::vector<std::string>{};  // absent
        return broken(prefix, "subjectAltName does not parse or appears twice");
    }
    std::vector<std::string> uris;
    for (const GENERAL_NAME* name : names.get()) {
        int type = 0;
        const auto* value = static_cast<const ASN1_STRING*>(GENERAL_NAME_get0_value(name, &type));
        if (type != GEN_URI) continue;
        uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                          static_cast<size_t>(ASN1_STRING_length(value)));
    }
    return uris;
}

// basicConstraints cA; absent counts as false.
Result<bool> is_ca(X509* cert, std::string_view prefix) {
    int critical = -1;
    bssl::UniquePtr<BASIC_CONSTRAINTS> bc(
        static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert, NID_basic_constraints, &critical, nullptr)));
    if (!bc) {
        ERR_clear_error();
        if (critical == -1) return false;
        return broken(prefix, "basicConstraints does not parse or appears twice");
    }
    return bc->ca != 0;
}

// What both rule sets look at, read once.
struct CertFacts {
    uint32_t flags = 0;  // EXFLAG_*
    bool is_ca = false;
    std::vector<std::string> uris;
};

Result<CertFacts> read_facts(X509* cert, std::string_view prefix) {
    if (cert == nullptr) return broken(prefix, "no certificate");
    CertFacts facts;
    // BoringSSL derives these flags from the extensions on first use. An extension that
    // does not parse, or appears twice, sets EXFLAG_INVALID, and the key usage getters
    // then report nothing: refuse such a certificate before looking further.
    facts.flags = X509_get_extension_flags(cert);
    if (facts.flags & EXFLAG_INVALID) return broken(prefix, "has an extension that does not parse or appears twice");
    auto ca = is_ca(cert, prefix);
    if (!ca) return ca.error();
    facts.is_ca = *ca;
    auto uris = uri_sans(cert, prefix);
    if (!uris) return uris.error();
    facts.uris = std::move(*uris);
    return facts;
}

// The one SPIFFE ID of CERT: exactly one URI SAN, valid by core::parse_spiffe_id.
Result<core::SpiffeId> spiffe_id_of(const std::vector<std::string>& uris, std::string_view prefix) {
    if (uris.size() != 1)
        return broken(prefix, "must contain exactly one URI SAN, found " + std::to_string(uris.size()));
    auto id = core::parse_spiffe_id(uris.front());
    if (!id)
        return broken(prefix, "URI SAN is not a valid SPIFFE ID: " + printable(id.message()) + " (" +
                                  printable(uris.front()) + ")");
    return id;
}

// keyUsage bits (KU_*), after checking that the extension is present and critical.
Result<uint32_t> critical_key_usage(X509* cert, uint32_t flags, std::string_view prefix) {
    if (!(flags & EXFLAG_KUSAGE)) return broken(prefix, "keyUsage must be present");
    int index = X509_get_ext_by_NID(cert, NID_key_usage, -1);
    if (index < 0 || !X509_EXTENSION_get_critical(X509_get_ext(cert, index)))
        return broken(prefix, "keyUsage must be marked critical");
    return X509_get_key_usage(cert);
}

}  // namespace

Result<KeyPtr> generate_p256_key() {
    bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
    if (!ec || !EC_KEY_generate_key(ec.get())) return ssl_error("generating a P-256 key");
    KeyPtr key(EVP_PKEY_new());
    if (!key || !EVP_PKEY_assign_EC_KEY(key.get(), ec.get())) return ssl_error("wrapping a P-256 key");
    ec.release();  // owned by KEY now
    return key;
}

std::array<uint8_t, 16> random_serial() {
    std::array<uint8_t, 16> serial{};
    // 128 random bits are all-zero with probability 2^-128; loop anyway, the rule is absolute.
    while (std::all_of(serial.begin(), serial.end(), [](uint8_t b) { return b == 0; }))
        RAND_bytes(serial.data(), serial.size());
    return serial;
}

CertTemplate leaf_template(const core::SpiffeId& id, TimePoint now, Seconds ttl) {
    CertTemplate t;
    t.uri_sans = {id.str()};
    // No CN: an ID can be longer than the 64 characters a CN allows. The subject is not
    // empty so that the SAN can stay non-critical.
    t.organization = "kwarden";
    t.basic_constraints = true;
    t.is_ca = false;
    t.key_usage = KeyUsage{.digital_signature = true, .critical = true};
    t.ext_key_usage = {NID_server_auth, NID_client_auth};
    t.not_before = now - kClockSkew;
    t.not_after = now + ttl;
    t.serial = random_serial();
    return t;
}

CertTemplate ca_template(std::string_view trust_domain, std::string_view common_name, TimePoint now, Seconds ttl) {
    CertTemplate t;
    t.uri_sans = {std::string(core::kSpiffeScheme) + std::string(trust_domain)};
    t.common_name = std::string(common_name);
    t.organization = "kwarden";
    t.basic_constraints = true;
    t.is_ca = true;
    t.key_usage = KeyUsage{.digital_signature = true, .key_cert_sign = true, .crl_sign = true, .critical = true};
    t.not_before = now - kClockSkew;
    t.not_after = now + ttl;
    t.serial = random_serial();
    return t;
}

Result<X509Ptr> issue_certificate(const CertTemplate& tmpl, EVP_PKEY* subject_key, X509* issuer, EVP_PKEY* issuer_key) {
    if (subject_key == nullptr) return make_error("issuing a certificate: no subject key");
    if (issuer != nullptr && issuer_key == nullptr) return make_error("issuing a certificate: no issuer key");
    if (issuer != nullptr && !X509_check_private_key(issuer, issuer_key)) {
        ERR_clear_error();
        return make_error("issuing a certificate: the issuer key does not belong to the issuer certificate");
    }
    EVP_PKEY* signer = issuer != nullptr ? issuer_key : subject_key;

    X509Ptr cert(X509_new());
    bssl::UniquePtr<BIGNUM> serial_bn(BN_bin2bn(tmpl.serial.data(), tmpl.serial.size(), nullptr));
    bssl::UniquePtr<ASN1_INTEGER> serial(serial_bn ? BN_to_ASN1_INTEGER(serial_bn.get(), nullptr) : nullptr);
    if (!cert || !serial || !X509_set_version(cert.get(), X509_VERSION_3) ||
        !X509_set_serialNumber(cert.get(), serial.get()))
        return ssl_error("issuing a certificate: version and serial");

    X509_NAME* subject = X509_get_subject_name(cert.get());
    if (!add_name_entry(subject, NID_organizationName, tmpl.organization) ||
        !add_name_entry(subject, NID_commonName, tmpl.common_name))
        return ssl_error("issuing a certificate: subject name");
    if (!X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject))
        return ssl_error("issuing a certificate: issuer name");

    if (!set_time(cert.get(), tmpl.not_before, X509_set1_notBefore) ||
        !set_time(cert.get(), tmpl.not_after, X509_set1_notAfter))
        return ssl_error("issuing a certificate: validity");
    if (!X509_set_pubkey(cert.get(), subject_key)) return ssl_error("issuing a certificate: public key");
    if (!add_extensions(cert.get(), tmpl, issuer)) return ssl_error("issuing a certificate: extensions");
    if (!X509_sign(cert.get(), signer, EVP_sha256())) return ssl_error("issuing a certificate: signature");
    return cert;
}

// ---- encoding -----------------------------------------------------------------------

namespace {

std::string bio_contents(BIO* bio) {
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!BIO_mem_contents(bio, &data, &len)) return {};
    return std::string(reinterpret_cast<const char*>(data), len);
}

bssl::UniquePtr<BIO> read_bio(std::string_view text) {
    if (text.size() > static_cast<size_t>(std::numeric_limits<int>::max())) return nullptr;
    return bssl::UniquePtr<BIO>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// PEM_read_bio_* fails with PEM_R_NO_START_LINE when only text without PEM blocks is left.
bool pem_at_end() {
    uint32_t code = ERR_peek_last_error();
    return ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE;
}

}  // namespace

std::string to_pem(X509* cert) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    if (!bio || !PEM_write_bio_X509(bio.get(), cert)) return {};
    return bio_contents(bio.get());
}

std::vector<uint8_t> to_der(X509* cert) {
    uint8_t* der = nullptr;
    int len = i2d_X509(cert, &der);
    if (len <= 0) return {};
    std::vector<uint8_t> out(der, der + len);
    OPENSSL_free(der);
    return out;
}

Result<X509Ptr> from_der(const uint8_t* der, size_t len) {
    const uint8_t* p = der;
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(len)));
    if (!cert) return ssl_error("not a DER X.509 certificate");
    if (p != der + len)
        return make_error("not a DER X.509 certificate: " + std::to_string(der + len - p) +
                          " bytes follow the certificate");
    return cert;
}

Result<std::vector<X509Ptr>> certs_from_pem(std::string_view pem) {
    bssl::UniquePtr<BIO> bio = read_bio(pem);
    if (!bio) return ssl_error("reading PEM certificates");
    std::vector<X509Ptr> certs;
    while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) certs.push_back(std::move(cert));
    if (!pem_at_end())
        return ssl_error("reading PEM certificates: block " + std::to_string(certs.size() + 1) +
                         " is not a valid CERTIFICATE");
    ERR_clear_error();
    if (certs.empty()) return make_error("reading PEM certificates: no CERTIFICATE block found");
    return certs;
}

std::string private_key_to_pem(EVP_PKEY* key) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    if (!bio || !PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) return {};
    return bio_contents(bio.get());  // BIO's buffer is cleared when freed (BoringSSL's OPENSSL_free)
}

Result<KeyPtr> private_key_from_pem(std::string_view pem) {
    bssl::UniquePtr<BIO> bio = read_bio(pem);
    KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) return ssl_error("reading a PEM private key");
    return key;
}

// ---- facts --------------------------------------------------------------------------

std::string serial_hex(X509* cert) {
    bssl::UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
    char* hex = bn ? BN_bn2hex(bn.get()) : nullptr;  // uppercase, whole bytes, no leading zero bytes
    if (hex == nullptr) return {};
    std::string out(hex);
    OPENSSL_free(hex);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

std::string sha256_fingerprint(X509* cert) {
    std::vector<uint8_t> der = to_der(cert);
    return core::sha256_hex(std::string_view(reinterpret_cast<const char*>(der.data()), der.size()));
}

namespace {

// Seconds since the epoch of an ASN1_TIME, by difference from the epoch (this BoringSSL
// has no ASN1_TIME_to_posix).
TimePoint to_time_point(const ASN1_TIME* t) {
    bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
    int days = 0;
    int seconds = 0;
    if (!epoch || !ASN1_TIME_diff(&days, &seconds, epoch.get(), t)) {
        ERR_clear_error();
        return TimePoint{};
    }
    return TimePoint{Seconds{int64_t{days} * 86400 + seconds}};
}

}  // namespace

TimePoint not_before(X509* cert) { return to_time_point(X509_get0_notBefore(cert)); }
TimePoint not_after(X509* cert) { return to_time_point(X509_get0_notAfter(cert)); }

std::string format_time(TimePoint t) {
    time_t tt = to_time_t(t);
    std::tm tm{};
    if (gmtime_r(&tt, &tm) == nullptr) return "?";
    char buf[32];
    size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

// ---- validation ---------------------------------------------------------------------

Result<core::SpiffeId> validate_leaf(X509* cert) {
    auto facts = read_facts(cert, kLeaf);
    if (!facts) return facts.error();

    auto id = spiffe_id_of(facts->uris, kLeaf);
    if (!id) return id.error();
    if (id->path.empty()) return broken(kLeaf, "leaf SPIFFE ID must have a path (" + id->str() + ")");

    if (facts->is_ca) return broken(kLeaf, "basicConstraints cA must be false");

    auto usage = critical_key_usage(cert, facts->flags, kLeaf);
    if (!usage) return usage.error();
    if (!(*usage & KU_DIGITAL_SIGNATURE)) return broken(kLeaf, "keyUsage must have digitalSignature");
    if (*usage & KU_KEY_CERT_SIGN) return broken(kLeaf, "keyUsage must not have keyCertSign");
    if (*usage & KU_CRL_SIGN) return broken(kLeaf, "keyUsage must not have cRLSign");

    constexpr uint32_t kTls = XKU_SSL_SERVER | XKU_SSL_CLIENT;
    if ((facts->flags & EXFLAG_XKUSAGE) && (X509_get_extended_key_usage(cert) & kTls) != kTls)
        return broken(kLeaf, "EKU must include serverAuth and clientAuth");
    return id;
}

Result<std::string> validate_signing_certificate(X509* cert) {
    auto facts = read_facts(cert, kSigning);
    if (!facts) return facts.error();

    if (!facts->is_ca) return broken(kSigning, "basicConstraints cA must be true");

    auto usage = critical_key_usage(cert, facts->flags, kSigning);
    if (!usage) return usage.error();
    if (!(*usage & KU_KEY_CERT_SIGN)) return broken(kSigning, "keyUsage must have keyCertSign");

    if (facts->uris.empty()) return std::string();
    auto id = spiffe_id_of(facts->uris, kSigning);
    if (!id) return id.error();
    if (!id->path.empty()) return broken(kSigning, "SPIFFE ID must have no path (" + id->str() + ")");
    return id->trust_domain;
}

Result<VerifiedSvid> verify_svid(X509* leaf, const std::vector<X509*>& intermediates, const BundleSet& bundles,
                                 TimePoint now) {
    auto id = validate_leaf(leaf);
    if (!id) return id.error();
    const std::string& td = id->trust_domain;

    // Only the bundle of the leaf's own trust domain: a federated CA must never vouch
    // for an ID outside its trust domain.
    auto bundle = bundles.find(td);
    if (bundle == bundles.end() || bundle->second == nullptr)
        return broken(kChain, "no trust bundle for trust domain '" + td + "'");

    bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
    if (!store) return ssl_error(std::string(kChain) + "allocating a certificate store");
    for (const X509Ptr& authority : bundle->second->x509_authorities)
        if (!X509_STORE_add_cert(store.get(), authority.get()))
            return ssl_error(std::string(kChain) + "adding an authority of '" + td + "'");

    bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
    if (!untrusted) return ssl_error(std::string(kChain) + "allocating the intermediates");
    for (X509* cert : intermediates) {
        if (cert == nullptr || !sk_X509_push(untrusted.get(), cert))
            return broken(kChain, "an intermediate certificate is missing");
        X509_up_ref(cert);  // the stack frees its elements
    }

    bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
    if (!ctx || !X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()))
        return ssl_error(std::string(kChain) + "setting up path validation");
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
    X509_VERIFY_PARAM_set_time(param, to_time_t(now));
    // Every authority in a bundle is a trust anchor, self-signed or not (as in go-spiffe).
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);

    if (X509_verify_cert(ctx.get()) != 1) {
        int code = X509_STORE_CTX_get_error(ctx.get());
        int depth = X509_STORE_CTX_get_error_depth(ctx.get());
        ERR_clear_error();
        return broken(kChain, X509_verify_cert_error_string(code) + std::string(" (depth ") + std::to_string(depth) +
                                  ", validated against the bundle of trust domain '" + td + "')");
    }

    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    // With partial chains the leaf could anchor itself if a bundle held it; bundles hold
    // signing certificates only, so that path is refused.
    if (sk_X509_num(chain) < 2) return broken(kChain, "the leaf is itself an authority of '" + td + "'");
    VerifiedSvid svid{*id, {}};
    for (size_t depth = 0; depth < sk_X509_num(chain); ++depth) {
        X509* cert = sk_X509_value(chain, depth);
        X509_up_ref(cert);
        svid.chain.emplace_back(cert);
        if (depth == 0) continue;
        auto signer_td = validate_signing_certificate(cert);
        if (!signer_td) return signer_td.error();
        if (!signer_td->empty() && *signer_td != td)
            return broken(kChain, "signing certificate at depth " + std::to_string(depth) + " names trust domain '" +
                                      *signer_td + "', not the leaf's '" + td + "'");
    }
    return svid;
}

}  // namespace kw::identity
