// json_text (core/json_field.h): whatever bytes a peer or a policy put into a reply or an
// event, the JSON line can be written; valid UTF-8 is kept exactly, invalid bytes become
// U+FFFD. And the parsers' own messages, which quote the input, go through it too.
#include <catch2/catch_test_macros.hpp>

#include <string>

#include "core/json_field.h"
#include "core/policy.h"

using kw::core::json_text;
using nlohmann::json;

TEST_CASE("json_text keeps valid UTF-8 such as é and a curly quote unchanged") {
    std::string text = "caf\xc3\xa9 \xe2\x80\x99quoted\xe2\x80\x99 \xf0\x9f\x94\x92";
    std::string line = json_text(json{{"name", text}});
    CHECK(json::parse(line)["name"] == text);
    CHECK(line == json{{"name", text}}.dump());
}

TEST_CASE("json_text replaces invalid UTF-8 bytes where dump() would throw") {
    for (std::string bad : {std::string("\xff"), std::string("caf\xe9"), std::string("\xe2\x80"),
                            std::string("\xc3\x28"), std::string("\xed\xa0\x80"), std::string("a\xc0\xafz")}) {
        json j{{"error", "got '" + bad + "'"}};
        CHECK_THROWS_AS(j.dump(), json::type_error);
        std::string line;
        REQUIRE_NOTHROW(line = json_text(j));
        auto back = json::parse(line);  // valid JSON, valid UTF-8
        CHECK(back["error"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);
    }
}

TEST_CASE("json_text writes indented output like dump(2)") {
    json j{{"a", 1}, {"b", "\xc3\xa9"}};
    CHECK(json_text(j, 2) == j.dump(2));
}

TEST_CASE("a policy written with typographic quotes is refused with a message that serialises") {
    // The parser's message quotes what it last read: the first byte of a three-byte
    // character, invalid UTF-8 on its own. The agent puts it in its reply.
    auto parsed = kw::core::parse_policy("{\xe2\x80\x9cversion\xe2\x80\x9d: 1}");
    REQUIRE_FALSE(parsed.errors.empty());
    json reply{{"ok", false}, {"error", parsed.errors[0].to_string()}};
    auto back = json::parse(json_text(reply));
    CHECK(back["error"].get<std::string>().find("not valid JSON") != std::string::npos);
}

TEST_CASE("an admin request line of invalid UTF-8 gets a parse error that serialises") {
    std::string message;
    try {
        json request = json::parse(std::string("{\"op\":\"st\xff\xfe" "atus\"}"));
        FAIL("parsed: " << request.size());
    } catch (const json::parse_error& e) {
        message = e.what();
    }
    REQUIRE_FALSE(message.empty());
    json reply{{"ok", false}, {"error", "request is not valid JSON: " + message}};
    json back;
    REQUIRE_NOTHROW(back = json::parse(json_text(reply)));
    CHECK(back["ok"] == false);
}
