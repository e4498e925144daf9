// Who may enrol: an enrolment request names its own pid and hands over exactly one
// descriptor; anything else is refused with an answer that says what was expected.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <nlohmann/json.hpp>

#include "runtime/enrolment.h"

using Catch::Matchers::ContainsSubstring;
using kw::runtime::check_hello;
using kw::runtime::Hello;
using nlohmann::json;

namespace {

std::string refusal(const json& request, pid_t peer, size_t fds) {
    auto r = check_hello(request, peer, fds);
    REQUIRE(std::holds_alternative<std::string>(r));
    return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("a process enrols itself, with one descriptor", "[runtime][enrolment]") {
    auto ok = check_hello({{"op", "enroll"}, {"pid", 4242}, {"command", "python3"}}, 4242, 1);
    REQUIRE(std::holds_alternative<Hello>(ok));
    CHECK(std::get<Hello>(ok).command == "python3");
    auto unnamed = check_hello({{"op", "enroll"}, {"pid", 4242}}, 4242, 1);
    REQUIRE(std::holds_alternative<Hello>(unnamed));
    CHECK(std::get<Hello>(unnamed).command == "?");
}

TEST_CASE("enrolment requests that are refused, and why", "[runtime][enrolment]") {
    CHECK_THAT(refusal({{"op", "enroll"}, {"pid", 4243}}, 4242, 1), ContainsSubstring("not the caller's"));
    CHECK_THAT(refusal({{"op", "enroll"}, {"pid", 4242}}, 4242, 0), ContainsSubstring("exactly one file descriptor"));
    CHECK_THAT(refusal({{"op", "enroll"}, {"pid", 4242}}, 4242, 2), ContainsSubstring("exactly one file descriptor"));
    for (const json& bad : {json::array(), json("enroll"), json{{"op", "enrol"}, {"pid", 1}}, json{{"op", "enroll"}},
                            json{{"op", "enroll"}, {"pid", "4242"}}, json{{"op", "enroll"}, {"pid", 42.5}}})
        CHECK_THAT(refusal(bad, 4242, 1), ContainsSubstring("expected {\"op\":\"enroll\",\"pid\":N}"));
}
