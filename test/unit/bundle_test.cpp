// SPIFFE trust bundle JSON (bundle.h): what bundle_to_json writes, that parsing it gives
// back the same bundle byte for byte, and that each malformation is refused with the
// JSON path of the offending value.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "identity/bundle.h"

using namespace kw::identity;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const TimePoint kNow = now_seconds();

struct Authority {
    KeyPtr key;
    X509Ptr cert;
};

// A certificate from TMPL with a fresh key, self-signed or signed by ISSUER.
Authority make_cert(const CertTemplate& tmpl, const Authority* issuer = nullptr) {
    auto key = generate_p256_key();
    REQUIRE(key.ok());
    auto cert = issue_certificate(tmpl, key->get(), issuer ? issuer->cert.get() : nullptr,
                                  issuer ? issuer->key.get() : nullptr);
    REQUIRE(cert.ok());
    return {std::move(*key), std::move(*cert)};
}

Authority make_ca(const std::string& trust_domain) {
    return make_cert(ca_template(trust_domain, trust_domain + " CA", kNow, 24h));
}

std::vector<uint8_t> decode(std::string text, bool url) {
    if (url) {
        std::replace(text.begin(), text.end(), '-', '+');
        std::replace(text.begin(), text.end(), '_', '/');
        text.append((4 - text.size() % 4) % 4, '=');
    }
    size_t max_len = 0;
    REQUIRE(EVP_DecodedLength(&max_len, text.size()));
    std::vector<uint8_t> out(max_len);
    size_t len = 0;
    REQUIRE(EVP_DecodeBase64(out.data(), &len, out.size(), reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    out.resize(len);
    return out;
}

// The affine coordinates of an EC key, each padded to 32 bytes.
std::pair<std::vector<uint8_t>, std::vector<uint8_t>> coordinates(EVP_PKEY* key) {
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
    REQUIRE(ec != nullptr);
    bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
    REQUIRE(EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), x.get(), y.get(),
                                                nullptr));
    std::vector<uint8_t> xb(32), yb(32);
    REQUIRE(BN_bn2bin_padded(xb.data(), xb.size(), x.get()));
    REQUIRE(BN_bn2bin_padded(yb.data(), yb.size(), y.get()));
    return {xb, yb};
}

// A valid bundle of example.org with two authorities, as JSON.
struct Fixture {
    Authority first = make_ca("example.org");
    Authority second = make_ca("example.org");
    TrustBundle bundle;

    Fixture() {
        bundle.trust_domain = "example.org";
        for (Authority* a : {&first, &second}) {
            X509_up_ref(a->cert.get());
            bundle.x509_authorities.emplace_back(a->cert.get());
        }
        bundle.sequence = 7;
        bundle.refresh_hint_seconds = 300;
    }
    json doc() const { return json::parse(bundle_to_json(bundle)); }
};

// The DER of CERT as standard base64, for hand-built x5c entries.
std::string x5c_of(X509* cert) {
    std::vector<uint8_t> der = to_der(cert);
    std::string out(4 * ((der.size() + 2) / 3) + 1, '\0');
    out.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), der.data(), der.size()));
    return out;
}

}  // namespace

TEST_CASE("a bundle round-trips through JSON with the same certificates, sequence and hint") {
    Fixture f;
    std::string text = bundle_to_json(f.bundle);
    auto parsed = parse_bundle_json(text, "example.org");
    INFO((parsed ? "" : parsed.message()));
    REQUIRE(parsed.ok());
    CHECK(parsed->trust_domain == "example.org");
    REQUIRE(parsed->x509_authorities.size() == 2);
    for (size_t i = 0; i < 2; ++i)
        CHECK(to_der(parsed->x509_authorities[i].get()) == to_der(f.bundle.x509_authorities[i].get()));
    CHECK(parsed->sequence == 7);
    CHECK(parsed->refresh_hint_seconds == 300);
    CHECK(bundle_to_json(*parsed) == text);
}

TEST_CASE("bundle_to_json writes one EC P-256 x509-svid JWK per authority") {
    Fixture f;
    std::string text = bundle_to_json(f.bundle);
    CHECK(text.starts_with("{\n  \"keys\": [\n"));
    CHECK(text.ends_with("}\n"));

    json doc = json::parse(text);
    CHECK(doc["spiffe_sequence"] == 7);
    CHECK(doc["spiffe_refresh_hint"] == 300);
    REQUIRE(doc["keys"].size() == 2);
    const Authority* authorities[] = {&f.first, &f.second};
    for (size_t i = 0; i < 2; ++i) {
        const json& key = doc["keys"][i];
        CHECK(key["use"] == "x509-svid");
        CHECK(key["kty"] == "EC");
        CHECK(key["crv"] == "P-256");
        auto [x, y] = coordinates(authorities[i]->key.get());
        for (const char* name : {"x", "y"}) {
            std::string coordinate = key[name];
            CHECK(coordinate.size() == 43);  // 32 bytes, base64url without padding
            CHECK(coordinate.find_first_of("+/=") == std::string::npos);
            CHECK(decode(coordinate, true) == (name[0] == 'x' ? x : y));
        }
        REQUIRE(key["x5c"].size() == 1);
        CHECK(decode(key["x5c"][0], false) == to_der(authorities[i]->cert.get()));
    }
}

TEST_CASE("sequence and refresh hint are optional") {
    Fixture f;
    f.bundle.refresh_hint_seconds = 0;
    json doc = f.doc();
    CHECK_FALSE(doc.contains("spiffe_refresh_hint"));
    doc.erase("spiffe_sequence");
    auto parsed = parse_bundle_json(doc.dump(), "example.org");
    REQUIRE(parsed.ok());
    CHECK(parsed->sequence == 0);
    CHECK(parsed->refresh_hint_seconds == 0);
}

TEST_CASE("an RSA authority (as federated peers may use) is written as kty RSA and checked by n and e") {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> e(BN_new());
    REQUIRE(BN_set_word(e.get(), RSA_F4));
    REQUIRE(RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr));
    KeyPtr key(EVP_PKEY_new());
    REQUIRE(EVP_PKEY_assign_RSA(key.get(), rsa.release()));
    auto cert = issue_certificate(ca_template("example.org", "RSA CA", kNow, 1h), key.get(), nullptr, nullptr);
    REQUIRE(cert.ok());

    TrustBundle bundle;
    bundle.x509_authorities.push_back(std::move(*cert));
    json doc = json::parse(bundle_to_json(bundle));
    const json& jwk = doc["keys"][0];
    CHECK(jwk["kty"] == "RSA");
    CHECK(jwk["e"] == "AQAB");
    CHECK(decode(jwk["n"], true).size() == 256);
    CHECK_FALSE(jwk.contains("crv"));
    CHECK(parse_bundle_json(doc.dump(), "example.org").ok());

    doc["keys"][0]["e"] = "AQAC";
    auto bent = parse_bundle_json(doc.dump(), "example.org");
    REQUIRE_FALSE(bent.ok());
    CHECK(bent.message() == "/keys/0/e: does not match the public key of the x5c certificate");
}

TEST_CASE("a key with only use and x5c is accepted") {
    Fixture f;
    json doc = f.doc();
    for (const char* name : {"kty", "crv", "x", "y"}) doc["keys"][0].erase(name);
    auto parsed = parse_bundle_json(doc.dump(), "example.org");
    INFO((parsed ? "" : parsed.message()));
    REQUIRE(parsed.ok());
    CHECK(parsed->x509_authorities.size() == 2);
}

TEST_CASE("jwt-svid keys are skipped") {
    Fixture f;
    json doc = f.doc();
    json jwt = doc["keys"][1];
    jwt["use"] = "jwt-svid";
    jwt["kid"] = "some-key-id";
    jwt.erase("x5c");
    doc["keys"].insert(doc["keys"].begin(), jwt);
    auto parsed = parse_bundle_json(doc.dump(), "example.org");
    INFO((parsed ? "" : parsed.message()));
    REQUIRE(parsed.ok());
    CHECK(parsed->x509_authorities.size() == 2);
}

TEST_CASE("a bundle whose authority is a leaf certificate is refused") {
    Authority ca = make_ca("example.org");
    Authority leaf =
        make_cert(leaf_template(*kw::core::parse_spiffe_id("spiffe://example.org/workload"), kNow, 1h), &ca);
    json key = {{"use", "x509-svid"}, {"x5c", json::array({x5c_of(leaf.cert.get())})}};
    json doc = {{"keys", json::array({key})}};
    auto parsed = parse_bundle_json(doc.dump(), "example.org");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.message() == "/keys/0/x5c/0: X509-SVID signing certificate: basicConstraints cA must be true");
}

TEST_CASE("each malformed bundle is refused with the JSON path of the fault") {
    Fixture f;
    Authority other_td = make_ca("other.example");
    Authority stranger = make_ca("example.org");  // a different key for the JWK checks
    json stranger_jwk = json::parse(bundle_to_json([&] {
        TrustBundle b;
        X509_up_ref(stranger.cert.get());
        b.x509_authorities.emplace_back(stranger.cert.get());
        return b;
    }()))["keys"][0];

    struct Case {
        const char* name;
        std::function<void(json&)> bend;
        std::string message;
    };
    const Case cases[] = {
        {"an array at the top", [](json& d) { d = json::array(); }, "/: must be a JSON object"},
        {"no keys", [](json& d) { d.erase("keys"); }, "/keys: must be an array of JWKs"},
        {"keys an object", [](json& d) { d["keys"] = json::object(); }, "/keys: must be an array of JWKs"},
        {"empty keys", [](json& d) { d["keys"] = json::array(); },
         "/keys: contains no key with \"use\": \"x509-svid\""},
        {"a key that is a string", [](json& d) { d["keys"][1] = "key"; }, "/keys/1: must be a JSON object"},
        {"a key without use", [](json& d) { d["keys"][1].erase("use"); }, "/keys/1/use: must be a string"},
        {"no x5c", [](json& d) { d["keys"][1].erase("x5c"); },
         "/keys/1/x5c: must be an array with exactly one certificate"},
        {"two x5c entries", [](json& d) { d["keys"][1]["x5c"].push_back(d["keys"][0]["x5c"][0]); },
         "/keys/1/x5c: must be an array with exactly one certificate"},
        {"empty x5c", [](json& d) { d["keys"][1]["x5c"] = json::array(); },
         "/keys/1/x5c: must be an array with exactly one certificate"},
        {"x5c a string", [](json& d) { d["keys"][1]["x5c"] = d["keys"][1]["x5c"][0]; },
         "/keys/1/x5c: must be an array with exactly one certificate"},
        {"x5c entry a number", [](json& d) { d["keys"][1]["x5c"][0] = 5; }, "/keys/1/x5c/0: must be a base64 string"},
        {"bad base64", [](json& d) { d["keys"][1]["x5c"][0] = "not*base64!"; }, "/keys/1/x5c/0: is not valid base64"},
        {"base64url in x5c", [](json& d) { d["keys"][1]["x5c"][0] = "-_-_"; }, "/keys/1/x5c/0: is not valid base64"},
        {"DER that is no certificate", [](json& d) { d["keys"][1]["x5c"][0] = "aGVsbG8gd29ybGQ="; },
         "/keys/1/x5c/0: not a DER X.509 certificate"},
        {"a CA of another trust domain",
         [&](json& d) {
             d["keys"][1] = {{"use", "x509-svid"}, {"x5c", json::array({x5c_of(other_td.cert.get())})}};
         },
         "/keys/1/x5c/0: certificate's SPIFFE ID names trust domain 'other.example', but the bundle is for "
         "'example.org'"},
        {"x of another key", [&](json& d) { d["keys"][1]["x"] = stranger_jwk["x"]; },
         "/keys/1/x: does not match the public key of the x5c certificate"},
        {"y of another key", [&](json& d) { d["keys"][1]["y"] = stranger_jwk["y"]; }, "/keys/1/y: does not match"},
        {"x not a string", [](json& d) { d["keys"][1]["x"] = 1; }, "/keys/1/x: must be a string"},
        {"another curve", [](json& d) { d["keys"][1]["crv"] = "P-384"; },
         "/keys/1/crv: does not match the public key of the x5c certificate"},
        {"RSA kty", [](json& d) { d["keys"][1]["kty"] = "RSA"; }, "/keys/1/kty: does not match"},
        {"RSA members on an EC key", [](json& d) { d["keys"][1]["n"] = "AQAB"; }, "/keys/1/n: does not match"},
        {"x with padding", [](json& d) { d["keys"][1]["x"] = d["keys"][1]["x"].get<std::string>() + "="; },
         "/keys/1/x: does not match"},
        {"negative sequence", [](json& d) { d["spiffe_sequence"] = -1; },
         "/spiffe_sequence: must be an unsigned integer"},
        {"fractional sequence", [](json& d) { d["spiffe_sequence"] = 1.5; },
         "/spiffe_sequence: must be an unsigned integer"},
        {"sequence a string", [](json& d) { d["spiffe_sequence"] = "7"; },
         "/spiffe_sequence: must be an unsigned integer"},
        {"zero refresh hint", [](json& d) { d["spiffe_refresh_hint"] = 0; },
         "/spiffe_refresh_hint: must be a positive integer number of seconds"},
        {"negative refresh hint", [](json& d) { d["spiffe_refresh_hint"] = -300; },
         "/spiffe_refresh_hint: must be a positive integer number of seconds"},
        {"fractional refresh hint", [](json& d) { d["spiffe_refresh_hint"] = 0.5; },
         "/spiffe_refresh_hint: must be a positive integer number of seconds"},
    };
    for (const Case& c : cases) {
        DYNAMIC_SECTION(c.name) {
            json doc = f.doc();
            REQUIRE(parse_bundle_json(doc.dump(), "example.org").ok());
            c.bend(doc);
            auto parsed = parse_bundle_json(doc.dump(), "example.org");
            REQUIRE_FALSE(parsed.ok());
            CHECK_THAT(parsed.message(), ContainsSubstring(c.message));
        }
    }
}

TEST_CASE("text that is not JSON is refused with the parser's position") {
    auto parsed = parse_bundle_json("{\"keys\": [}", "example.org");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.message(), ContainsSubstring("/: not valid JSON: parse error at line 1, column 11"));
}

TEST_CASE("only x509-svid keys count: a bundle of jwt-svid keys is refused") {
    Fixture f;
    json doc = f.doc();
    for (json& key : doc["keys"]) key["use"] = "jwt-svid";
    auto parsed = parse_bundle_json(doc.dump(), "example.org");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.message() == "/keys: contains no key with \"use\": \"x509-svid\"");
}

TEST_CASE("load_bundle_file reads a bundle and names the file in errors") {
    Fixture f;
    std::string dir_pattern = (std::filesystem::temp_directory_path() / "kw_bundle_XXXXXX").string();
    REQUIRE(mkdtemp(dir_pattern.data()) != nullptr);
    std::filesystem::path dir = dir_pattern;
    std::ofstream(dir / "good.json") << bundle_to_json(f.bundle);
    std::ofstream(dir / "bad.json") << "{\"keys\": []}";

    auto good = load_bundle_file((dir / "good.json").string(), "example.org");
    auto bad = load_bundle_file((dir / "bad.json").string(), "example.org");
    auto missing = load_bundle_file((dir / "missing.json").string(), "example.org");
    std::filesystem::remove_all(dir);

    REQUIRE(good.ok());
    CHECK(good->x509_authorities.size() == 2);
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.message(), ContainsSubstring("bad.json' (trust domain 'example.org'): /keys: contains no key"));
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.message(), ContainsSubstring("missing.json' (trust domain 'example.org'): cannot open: "));
}

TEST_CASE("a bundle is parsed only for a valid trust domain name") {
    Fixture f;
    auto parsed = parse_bundle_json(bundle_to_json(f.bundle), "Example.org");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.message(), ContainsSubstring("trust domain contains a character outside [a-z0-9._-]"));
}
