// SPIFFE ID rules: what parse_spiffe_id accepts, and for each refusal,
// that the message names the rule broken.
#include <catch2/catch_test_macros.hpp>

#include <string>

#include "core/spiffe_id.h"

using kw::core::parse_spiffe_id;
using kw::core::validate_trust_domain;

namespace {

struct Valid {
    std::string text;
    std::string trust_domain;
    std::string path;
};

struct Invalid {
    std::string text;
    std::string rule;  // a distinctive part of the message
};

// Section names go to the console: a NUL shows as backslash-zero.
std::string printable(const std::string& text) {
    std::string out;
    for (char c : text) out += c == '\0' ? std::string("\\0") : std::string(1, c);
    return out;
}

}  // namespace

TEST_CASE("valid SPIFFE IDs split into trust domain and path") {
    const Valid cases[] = {
        {"spiffe://example.org", "example.org", ""},
        {"spiffe://example.org/billing", "example.org", "/billing"},
        {"spiffe://example.org/billing/api", "example.org", "/billing/api"},
        {"spiffe://a", "a", ""},
        {"spiffe://td-1_x.y/p", "td-1_x.y", "/p"},
        {"spiffe://example.org/Upper/CASE", "example.org", "/Upper/CASE"},
        {"spiffe://example.org/a.b/c_d/e-f", "example.org", "/a.b/c_d/e-f"},
        {"spiffe://example.org/...", "example.org", "/..."},
        {"spiffe://example.org/.hidden", "example.org", "/.hidden"},
        {"spiffe://example.org/..x", "example.org", "/..x"},
        {"spiffe://123/456", "123", "/456"},
        {"spiffe://kwarden.local/demo/client", "kwarden.local", "/demo/client"},
    };
    for (const Valid& c : cases) {
        DYNAMIC_SECTION(c.text) {
            auto id = parse_spiffe_id(c.text);
            INFO((id ? "" : id.message()));
            REQUIRE(id.ok());
            CHECK(id->trust_domain == c.trust_domain);
            CHECK(id->path == c.path);
            CHECK(id->str() == c.text);
        }
    }
}

TEST_CASE("invalid SPIFFE IDs are refused with the rule they break") {
    const Invalid cases[] = {
        {"", "scheme must be 'spiffe://'"},
        {"example.org/billing", "scheme must be 'spiffe://'"},
        {"https://example.org/billing", "scheme must be 'spiffe://'"},
        {"spiffe:/example.org", "scheme must be 'spiffe://'"},
        {"SPIFFE://example.org/billing", "scheme must be lowercase"},
        {"Spiffe://example.org", "scheme must be lowercase"},
        {"spiffe://", "trust domain is empty"},
        {"spiffe:///billing", "trust domain is empty"},
        {"spiffe://Example.org/billing", "trust domain contains a character outside [a-z0-9._-]"},
        {"spiffe://exa mple.org", "trust domain contains a character outside [a-z0-9._-]"},
        {"spiffe://exam+ple.org", "trust domain contains a character outside [a-z0-9._-]"},
        {"spiffe://example.org:8443/billing", "port (':')"},
        {"spiffe://user@example.org/billing", "userinfo ('@')"},
        {"spiffe://example.org/billing?x=1", "query ('?')"},
        {"spiffe://example.org/billing#frag", "fragment ('#')"},
        {"spiffe://example.org/bil%6Cing", "percent-encoding ('%')"},
        {"spiffe://example.org%2e/x", "percent-encoding ('%')"},
        {"spiffe://example.org/", "ends with '/'"},
        {"spiffe://example.org/billing/", "ends with '/'"},
        {"spiffe://example.org//billing", "empty segment"},
        {"spiffe://example.org/billing//api", "empty segment"},
        {"spiffe://example.org/.", "'.' or '..' segment"},
        {"spiffe://example.org/..", "'.' or '..' segment"},
        {"spiffe://example.org/a/./b", "'.' or '..' segment"},
        {"spiffe://example.org/a/../b", "'.' or '..' segment"},
        {"spiffe://example.org/bill ing", "outside [a-zA-Z0-9._-]"},
        {"spiffe://example.org/bill:ing", "outside [a-zA-Z0-9._-]"},
        {"spiffe://example.org/bill@ing", "outside [a-zA-Z0-9._-]"},
        {"spiffe://example.org/caf\xc3\xa9", "outside [a-zA-Z0-9._-]"},
        {std::string("spiffe://example.org/a\0b", 24), "outside [a-zA-Z0-9._-]"},
    };
    for (const Invalid& c : cases) {
        DYNAMIC_SECTION(printable(c.text)) {
            auto id = parse_spiffe_id(c.text);
            REQUIRE_FALSE(id.ok());
            INFO(id.message());
            CHECK(id.message().find(c.rule) != std::string::npos);
        }
    }
}

TEST_CASE("a SPIFFE ID of exactly 2048 bytes is accepted and one byte more is refused") {
    const std::string prefix = "spiffe://example.org/";
    std::string at_limit = prefix + std::string(2048 - prefix.size(), 'a');
    REQUIRE(at_limit.size() == 2048);
    CHECK(parse_spiffe_id(at_limit).ok());

    auto over = parse_spiffe_id(at_limit + "a");
    REQUIRE_FALSE(over.ok());
    CHECK(over.message() == "is 2049 bytes long; the limit is 2048");
}

TEST_CASE("the length limit counts the whole ID, scheme included") {
    std::string long_domain = "spiffe://" + std::string(2040, 'a');  // 2049 bytes
    auto id = parse_spiffe_id(long_domain);
    REQUIRE_FALSE(id.ok());
    CHECK(id.message().find("limit is 2048") != std::string::npos);
}

TEST_CASE("a trust domain on its own follows the trust domain rules") {
    CHECK(validate_trust_domain("example.org").ok());
    CHECK(validate_trust_domain("td_1-x").ok());

    auto empty = validate_trust_domain("");
    REQUIRE_FALSE(empty.ok());
    CHECK(empty.message() == "trust domain is empty");

    auto upper = validate_trust_domain("Example.org");
    REQUIRE_FALSE(upper.ok());
    CHECK(upper.message() == "trust domain contains a character outside [a-z0-9._-]");

    auto with_scheme = validate_trust_domain("spiffe://example.org");
    REQUIRE_FALSE(with_scheme.ok());
    CHECK(with_scheme.message() == "trust domain contains a character outside [a-z0-9._-]");
}
