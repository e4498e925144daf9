// SPIFFE trust bundles as JSON (see bundle.h). Parsing is strict about the x509-svid
// keys, which decide whom the agent trusts, and skips the others (jwt-svid). Errors
// name the JSON pointer of the offending value.
#include "identity/bundle.h"

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_field.h"

namespace kw::identity {
namespace {

using json = nlohmann::json;
using Members = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kX509SvidUse = "x509-svid";
constexpr size_t kMaxBundleFileBytes = 4 << 20;  // far above any real bundle

Error at(const std::string& path, std::string_view rule) { return make_error(path + ": " + std::string(rule)); }

// ---- base64 -------------------------------------------------------------------------

std::string base64(const uint8_t* data, size_t len) {
    size_t out_len = 0;
    if (!EVP_EncodedLength(&out_len, len)) return {};
    std::string out(out_len, '\0');  // includes the NUL EVP_EncodeBlock writes
    out.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), data, len));
    return out;
}

// base64url without padding (RFC 7515 §2), as JWK coordinates are written.
std::string base64url(const std::vector<uint8_t>& data) {
    std::string out = base64(data.data(), data.size());
    out.erase(std::find(out.begin(), out.end(), '='), out.end());
    std::replace(out.begin(), out.end(), '+', '-');
    std::replace(out.begin(), out.end(), '/', '_');
    return out;
}

// Standard base64 with padding (x5c, RFC 7517 §4.7); no whitespace allowed.
std::optional<std::vector<uint8_t>> decode_base64(std::string_view text) {
    size_t max_len = 0;
    if (!EVP_DecodedLength(&max_len, text.size())) return std::nullopt;
    std::vector<uint8_t> out(max_len);
    size_t len = 0;
    if (!EVP_DecodeBase64(out.data(), &len, out.size(), reinterpret_cast<const uint8_t*>(text.data()), text.size()))
        return std::nullopt;
    out.resize(len);
    return out;
}

// ---- JWK members of a public key ------------------------------------------------------

std::vector<uint8_t> bn_bytes(const BIGNUM* bn) {
    std::vector<uint8_t> out(BN_num_bytes(bn));
    BN_bn2bin(bn, out.data());
    return out;
}

std::string curve_name(int nid) {
    switch (nid) {
        case NID_X9_62_prime256v1:
            return "P-256";
        case NID_secp384r1:
            return "P-384";
        case NID_secp521r1:
            return "P-521";
        default:
            return {};
    }
}

// The JWK members that describe KEY (RFC 7518 §6.2, §6.3), in the order they are
// written: EC keys by curve and affine coordinates (each the full field length), RSA
// keys by modulus and exponent. Other key types have none.
Members jwk_members(EVP_PKEY* key) {
    if (const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key)) {
        const EC_GROUP* group = EC_KEY_get0_group(ec);
        std::string crv = curve_name(EC_GROUP_get_curve_name(group));
        // Uncompressed point: 0x04 || X || Y, each coordinate padded to the field size.
        std::vector<uint8_t> point(1 + 2 * ((EC_GROUP_get_degree(group) + 7) / 8));
        if (crv.empty() || EC_POINT_point2oct(group, EC_KEY_get0_public_key(ec), POINT_CONVERSION_UNCOMPRESSED,
                                              point.data(), point.size(), nullptr) != point.size())
            return {{"kty", "EC"}};
        size_t half = (point.size() - 1) / 2;
        return {{"kty", "EC"},
                {"crv", crv},
                {"x", base64url({point.begin() + 1, point.begin() + 1 + half})},
                {"y", base64url({point.begin() + 1 + half, point.end()})}};
    }
    if (const RSA* rsa = EVP_PKEY_get0_RSA(key))
        return {
            {"kty", "RSA"}, {"n", base64url(bn_bytes(RSA_get0_n(rsa)))}, {"e", base64url(bn_bytes(RSA_get0_e(rsa)))}};
    return {};
}

Members certificate_jwk(X509* cert) {
    KeyPtr key(X509_get_pubkey(cert));
    return key ? jwk_members(key.get()) : Members{};
}

// ---- parsing ------------------------------------------------------------------------

// json::parse without exceptions only says that the text was discarded; a second pass
// with this handler recovers the parser's own message (line, column, what it expected).
class ParseErrorSax : public nlohmann::json_sax<json> {
public:
    std::string message = "unknown parse error";

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
        message = ex.what();
        // "[json.exception.parse_error.101] parse error at line 1, ...": drop the tag.
        if (size_t tag_end = message.find("] "); message.starts_with("[") && tag_end != std::string::npos)
            message.erase(0, tag_end + 2);
        return false;
    }
};

std::string parse_error_message(std::string_view text) {
    ParseErrorSax sax;
    json::sax_parse(text.begin(), text.end(), &sax);
    return sax.message;
}

// The optional string member NAME of OBJECT; an error if present with another type.
Result<std::optional<std::string>> optional_string(const json& object, const char* name, const std::string& path) {
    auto it = object.find(name);
    if (it == object.end()) return std::optional<std::string>();
    if (!it->is_string()) return at(path + "/" + name, "must be a string");
    return std::optional<std::string>(it->get<std::string>());
}

// One x509-svid key at PATH: its single x5c certificate, checked as a signing
// certificate of TRUST_DOMAIN whose public key is the one the JWK members describe.
Result<X509Ptr> parse_authority(const json& key, const std::string& path, std::string_view trust_domain) {
    auto x5c = key.find("x5c");
    if (x5c == key.end() || !x5c->is_array() || x5c->size() != 1)
        return at(path + "/x5c", "must be an array with exactly one certificate");
    const std::string cert_path = path + "/x5c/0";
    if (!x5c->front().is_string()) return at(cert_path, "must be a base64 string");
    auto der = decode_base64(x5c->front().get_ref<const std::string&>());
    if (!der) return at(cert_path, "is not valid base64 (standard alphabet, padded, no whitespace)");
    auto cert = from_der(der->data(), der->size());
    if (!cert) return at(cert_path, cert.message());

    auto signer_td = validate_signing_certificate(cert->get());
    if (!signer_td) return at(cert_path, signer_td.message());
    if (!signer_td->empty() && *signer_td != trust_domain)
        return at(cert_path, "certificate's SPIFFE ID names trust domain '" + *signer_td +
                                 "', but the bundle is for '" + std::string(trust_domain) + "'");

    // Key members that are given must describe the certificate's key.
    Members expected = certificate_jwk(cert->get());
    for (const char* name : {"kty", "crv", "x", "y", "n", "e"}) {
        auto given = optional_string(key, name, path);
        if (!given) return given.error();
        if (!*given) continue;
        auto match = std::find_if(expected.begin(), expected.end(), [&](const auto& m) { return m.first == name; });
        if (match == expected.end() || match->second != **given)
            return at(path + "/" + name, "does not match the public key of the x5c certificate");
    }
    return std::move(*cert);
}

}  // namespace

Result<TrustBundle> parse_bundle_json(std::string_view text, std::string_view trust_domain) {
    if (auto td = core::validate_trust_domain(trust_domain); !td)
        return make_error("trust bundle for '" + std::string(trust_domain) + "': " + td.message());
    json doc = json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded()) return at("/", "not valid JSON: " + parse_error_message(text));
    if (!doc.is_object()) return at("/", "must be a JSON object");

    TrustBundle bundle;
    bundle.trust_domain = std::string(trust_domain);

    auto keys = doc.find("keys");
    if (keys == doc.end() || !keys->is_array()) return at("/keys", "must be an array of JWKs");
    for (size_t i = 0; i < keys->size(); ++i) {
        const std::string path = "/keys/" + std::to_string(i);
        const json& key = (*keys)[i];
        if (!key.is_object()) return at(path, "must be a JSON object");
        auto use = key.find("use");
        if (use == key.end() || !use->is_string()) return at(path + "/use", "must be a string");
        if (use->get_ref<const std::string&>() != kX509SvidUse) continue;  // jwt-svid: not ours
        auto cert = parse_authority(key, path, trust_domain);
        if (!cert) return cert.error();
        bundle.x509_authorities.push_back(std::move(*cert));
    }
    if (bundle.x509_authorities.empty()) return at("/keys", "contains no key with \"use\": \"x509-svid\"");

    if (auto seq = doc.find("spiffe_sequence"); seq != doc.end()) {
        if (!seq->is_number_unsigned()) return at("/spiffe_sequence", "must be an unsigned integer");
        bundle.sequence = seq->get<uint64_t>();
    }
    if (auto hint = doc.find("spiffe_refresh_hint"); hint != doc.end()) {
        // Non-negative integers parse as unsigned; negative ones and fractions do not.
        if (!hint->is_number_unsigned() || hint->get<uint64_t>() == 0 ||
            hint->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return at("/spiffe_refresh_hint", "must be a positive integer number of seconds");
        bundle.refresh_hint_seconds = static_cast<int64_t>(hint->get<uint64_t>());
    }
    return bundle;
}

Result<TrustBundle> load_bundle_file(const std::string& path, std::string_view trust_domain) {
    const std::string what = "trust bundle file '" + path + "' (trust domain '" + std::string(trust_domain) + "')";
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(what + ": cannot open: " + std::strerror(errno));
    std::string text(kMaxBundleFileBytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) return make_error(what + ": cannot read: " + std::strerror(errno));
    if (static_cast<size_t>(in.gcount()) > kMaxBundleFileBytes)
        return make_error(what + ": larger than " + std::to_string(kMaxBundleFileBytes) + " bytes");
    text.resize(static_cast<size_t>(in.gcount()));
    auto bundle = parse_bundle_json(text, trust_domain);
    if (!bundle) return make_error(what + ": " + bundle.message());
    return bundle;
}

std::string bundle_to_json(const TrustBundle& bundle) {
    nlohmann::ordered_json keys = nlohmann::ordered_json::array();
    for (const X509Ptr& authority : bundle.x509_authorities) {
        nlohmann::ordered_json key;
        key["use"] = kX509SvidUse;
        for (const auto& [name, value] : certificate_jwk(authority.get())) key[name] = value;
        std::vector<uint8_t> der = to_der(authority.get());
        key["x5c"] = nlohmann::ordered_json::array({base64(der.data(), der.size())});
        keys.push_back(std::move(key));
    }
    nlohmann::ordered_json doc;
    doc["keys"] = std::move(keys);
    doc["spiffe_sequence"] = bundle.sequence;
    if (bundle.refresh_hint_seconds > 0) doc["spiffe_refresh_hint"] = bundle.refresh_hint_seconds;
    return core::json_text(doc, 2) + "\n";
}

}  // namespace kw::identity
