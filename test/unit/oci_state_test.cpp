// The container process state OCI runtimes send their seccomp agent, as runc 1.1 (compact,
// no newline) and crun 1.8 (pretty-printed, a final newline) write it, and what is refused
// with the reason: every field the agent acts on is checked before it does.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <nlohmann/json.hpp>

#include "core/oci_state.h"

using Catch::Matchers::ContainsSubstring;
using kw::core::container_facts;
using kw::core::parse_oci_process_state;
using nlohmann::json;

namespace {

json containerd_state() {
    return {{"ociVersion", "1.0.2-dev"},
            {"fds", {"seccompFd"}},
            {"pid", 4242},
            {"metadata", "kwarden"},
            {"state",
             {{"ociVersion", "1.0.2-dev"},
              {"id", "5e0d83ec1b5c4f4bd9f1a1e3b8c2d6e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"},
              {"status", "creating"},
              {"pid", 4242},
              {"bundle", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/5e0d83ec1b5c"},
              {"annotations",
               {{"io.kubernetes.cri.container-type", "container"},
                {"io.kubernetes.cri.container-name", "billing"},
                {"io.kubernetes.cri.image-name", "example.org/billing:1.4"},
                {"io.kubernetes.cri.sandbox-id", "aa11"},
                {"io.kubernetes.cri.sandbox-name", "billing-7d9f"},
                {"io.kubernetes.cri.sandbox-namespace", "payments"},
                {"io.kubernetes.cri.sandbox-uid", "0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b"},
                {"bundle", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/5e0d83ec1b5c"}}}}}};
}

std::string refusal(const json& j, size_t fds = 1) {
    auto r = parse_oci_process_state(j.dump(), fds);
    REQUIRE_FALSE(r);
    return r.message();
}

}  // namespace

TEST_CASE("runc's compact state and crun's pretty-printed one read alike", "[core][oci]") {
    const json j = containerd_state();
    auto runc = parse_oci_process_state(j.dump(), 1);
    REQUIRE(runc);
    CHECK(runc->pid == 4242);
    CHECK(runc->seccomp_fd == 0);
    CHECK(runc->status == "creating");
    CHECK(runc->metadata == "kwarden");
    CHECK(runc->bundle.starts_with("/run/containerd/"));

    json crun_state = j;
    crun_state["ociVersion"] = crun_state["state"]["ociVersion"] = "0.2.0";
    auto crun = parse_oci_process_state(crun_state.dump(4) + "\n", 1);
    REQUIRE(crun);
    CHECK(crun->oci_version == "0.2.0");
    CHECK(crun->annotations == runc->annotations);

    auto f = container_facts(*runc);
    CHECK_FALSE(f.sandbox);
    CHECK(f.name == "billing");
    CHECK(f.image == "example.org/billing:1.4");
    CHECK(f.pod_namespace == "payments");
    CHECK(f.pod_name == "billing-7d9f");
    CHECK(f.pod_uid == "0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b");
    CHECK(f.sandbox_id == "aa11");
}

TEST_CASE("a bundle started by crun or runc directly has no pod facts", "[core][oci]") {
    json j = containerd_state();
    j["state"].erase("annotations");  // crun leaves it out when there are none
    auto s = parse_oci_process_state(j.dump(), 1);
    REQUIRE(s);
    auto f = container_facts(*s);
    CHECK(f.id == j["state"]["id"]);
    CHECK_FALSE(f.name);
    CHECK_FALSE(f.pod_namespace);
    CHECK_FALSE(f.sandbox);
}

TEST_CASE("the descriptors named must be those received, with one seccompFd", "[core][oci]") {
    json j = containerd_state();
    CHECK_THAT(refusal(j, 0), ContainsSubstring("names 1 descriptor(s) in \"fds\" but 0 came with it"));
    CHECK_THAT(refusal(j, 2), ContainsSubstring("but 2 came"));
    j["fds"] = {"otherFd"};
    CHECK_THAT(refusal(j), ContainsSubstring("no \"seccompFd\""));
    j["fds"] = {"seccompFd", "seccompFd"};
    CHECK_THAT(refusal(j, 2), ContainsSubstring("more than once"));
    j["fds"] = {"pidFd", "seccompFd"};
    auto two = parse_oci_process_state(j.dump(), 2);
    REQUIRE(two);
    CHECK(two->seccomp_fd == 1);
    j.erase("fds");
    CHECK_THAT(refusal(j), ContainsSubstring("\"fds\""));
}

TEST_CASE("malformed states are refused by the field at fault", "[core][oci]") {
    CHECK_THAT(parse_oci_process_state("{\"ociVersion\":", 1).message(), ContainsSubstring("not valid JSON"));
    CHECK_THAT(parse_oci_process_state("[]", 1).message(), ContainsSubstring("not a JSON object"));
    CHECK_THAT(parse_oci_process_state(std::string(kw::core::kOciStateMax + 1, ' '), 1).message(),
               ContainsSubstring("larger than"));

    auto with = [](auto edit) {
        json j = containerd_state();
        edit(j);
        return j;
    };
    CHECK(parse_oci_process_state(with([](json& j) { j["pid"] = 0; }).dump(), 1)->pid == 0);  // crun exec: not said
    CHECK_THAT(refusal(with([](json& j) { j["pid"] = -1; })), ContainsSubstring("\"pid\""));
    CHECK_THAT(refusal(with([](json& j) { j.erase("pid"); })), ContainsSubstring("\"pid\""));
    CHECK_THAT(refusal(with([](json& j) { j["pid"] = 1LL << 40; })), ContainsSubstring("\"pid\""));
    CHECK_THAT(refusal(with([](json& j) { j["pid"] = "4242"; })), ContainsSubstring("\"pid\""));
    CHECK_THAT(refusal(with([](json& j) { j.erase("ociVersion"); })), ContainsSubstring("\"ociVersion\""));
    CHECK_THAT(refusal(with([](json& j) { j["metadata"] = 7; })), ContainsSubstring("\"metadata\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"] = "x"; })), ContainsSubstring("\"state\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"]["id"] = ""; })), ContainsSubstring("\"state.id\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"]["id"] = std::string("a\0b", 3); })),
               ContainsSubstring("\"state.id\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"]["status"] = "paused"; })), ContainsSubstring("\"state.status\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"]["pid"] = -1; })), ContainsSubstring("\"state.pid\""));
    CHECK(parse_oci_process_state(with([](json& j) { j["state"]["pid"] = 0; }).dump(), 1)->init_pid == 0);
    CHECK_THAT(refusal(with([](json& j) { j["state"]["bundle"] = 7; })), ContainsSubstring("\"state.bundle\""));
    // crun exec: its working directory, or no bundle at all: not said.
    CHECK(parse_oci_process_state(with([](json& j) { j["state"]["bundle"] = "."; }).dump(), 1)->bundle.empty());
    CHECK(parse_oci_process_state(with([](json& j) { j["state"].erase("bundle"); }).dump(), 1)->bundle.empty());
    CHECK_THAT(refusal(with([](json& j) { j["state"]["annotations"] = json::array(); })),
               ContainsSubstring("\"state.annotations\""));
    CHECK_THAT(refusal(with([](json& j) { j["state"]["annotations"]["n"] = 1; })), ContainsSubstring("annotation n"));
}
