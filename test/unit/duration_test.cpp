// Duration strings for svid_ttl and --ttl: what parses, to how many seconds, and that each
// refusal says why.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "core/duration.h"

using Catch::Matchers::ContainsSubstring;
using kw::core::format_duration;
using kw::core::parse_duration;

TEST_CASE("durations parse to seconds and format back to their shortest form") {
    struct Case {
        std::string text;
        long seconds;
        std::string shortest;
    };
    const Case cases[] = {
        {"4s", 4, "4s"},         {"90s", 90, "1m30s"},     {"15m", 900, "15m"},
        {"1h", 3600, "1h"},      {"1h30m", 5400, "1h30m"}, {"7d", 604800, "7d"},
        {"1d2h3m4s", 93784, "1d2h3m4s"}, {"0h5m", 300, "5m"},
    };
    for (const Case& c : cases) {
        DYNAMIC_SECTION(c.text) {
            auto d = parse_duration(c.text);
            REQUIRE(d);
            CHECK(d->count() == c.seconds);
            CHECK(format_duration(*d) == c.shortest);
            CHECK(parse_duration(format_duration(*d))->count() == c.seconds);
        }
    }
}

TEST_CASE("malformed durations are refused with the reason") {
    struct Case {
        std::string text;
        std::string reason;
    };
    const Case cases[] = {
        {"", "empty"},
        {"60", "has no unit"},
        {"1w", "unknown unit 'w'"},
        {"1m1h", "largest first"},
        {"1h1h", "largest first"},
        {"-1h", "expected a number"},
        {"1.5h", "unknown unit '.'"},
        {" 1h", "expected a number"},
        {"0s", "longer than zero"},
        {"36501d", "100 years"},
        {"99999999999999999999s", "100 years"},
    };
    for (const Case& c : cases) {
        DYNAMIC_SECTION("'" << c.text << "'") {
            auto d = parse_duration(c.text);
            REQUIRE_FALSE(d);
            CHECK_THAT(d.message(), ContainsSubstring(c.reason));
            CHECK_THAT(d.message(), ContainsSubstring("'" + c.text + "'"));
        }
    }
}

TEST_CASE("a duration with a non-ASCII unit is refused by a message that stays text") {
    // "5é": the unit position holds the first byte of a two-byte character. The message
    // goes into admin replies and events as JSON, which must be valid UTF-8.
    auto d = parse_duration("5\xc3\xa9");
    REQUIRE_FALSE(d);
    CHECK_THAT(d.message(), ContainsSubstring("unknown unit (byte 0xc3)"));
    CHECK_NOTHROW(nlohmann::json(d.message()).dump());
    auto ctl = parse_duration(std::string("5\x01", 2));
    REQUIRE_FALSE(ctl);
    CHECK_THAT(ctl.message(), ContainsSubstring("unknown unit (byte 0x01)"));
}
