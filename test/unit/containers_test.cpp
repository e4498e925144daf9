// Container selectors: what the policy accepts and warns about, which workloads a
// container's facts meet, how an exec in its cgroup then matches (the kernel's rule, as
// match_workload has it), and the runtime's book of enrolled containers against a fake
// host: located by cgroup, entries written once per cgroup and dropped with its last
// process, late processes attested against tables that include the new entries.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <map>

#include "core/compile.h"
#include "core/container_match.h"
#include "core/lint.h"
#include "core/policy.h"
#include "fake_container_host.h"
#include "runtime/containers.h"

using Catch::Matchers::ContainsSubstring;
using namespace kw;
using namespace kw::core;

namespace {

const std::string kCid = "5e0d83ec1b5c4f4bd9f1a1e3b8c2d6e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
const std::string kOtherCid = "aa0d83ec1b5c4f4bd9f1a1e3b8c2d6e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
const std::string kPodCgroup = "/kubepods/burstable/pod0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b/";

ParseOutcome parse(const std::string& selectors) {
    return parse_policy(R"({"version": 1, "trust_domain": "example.org", "workloads": [
        {"id": "spiffe://example.org/cart", "selectors": )" +
                        selectors + R"(}], "destinations": [], "rules": []})");
}

std::string errors_of(const ParseOutcome& out) {
    std::string text;
    for (const auto& p : out.errors) text += p.to_string() + "\n";
    return text;
}

Policy two_workloads() {
    auto out = parse_policy(R"({"version": 1, "trust_domain": "example.org", "workloads": [
        {"id": "spiffe://example.org/cart", "selectors": {"exe": "/srv/cart",
            "container": {"name": "cart", "pod_namespace": "shop"}}},
        {"id": "spiffe://example.org/any-shop", "selectors": {"exe": "/srv/cart",
            "container": {"pod_namespace": "shop", "image": "example.org/cart:1.4"}}},
        {"id": "spiffe://example.org/host", "selectors": {"exe": "/srv/cart"}}
      ], "destinations": [], "rules": []})");
    INFO(errors_of(out));
    REQUIRE(out.policy);
    return *out.policy;
}

ContainerFacts cart_facts() {
    ContainerFacts f;
    f.id = kCid;
    f.name = "cart";
    f.image = "example.org/cart:1.4";
    f.pod_namespace = "shop";
    f.pod_name = "cart-0";
    return f;
}

class OneFileHost : public HostView {
public:
    Result<PinnedContent> pin_file(const std::string&) override {
        PinnedContent c;
        c.key = kw_file_key{0x800001, 77};
        c.ctime_sec = 1000;
        c.sha256 = std::string(64, 'a');
        return c;
    }
    std::optional<CgroupRef> resolve_cgroup(const std::string&) override { return std::nullopt; }
};

Result<CompiledPolicy> compile_one_file(const Policy& p) {
    OneFileHost files;
    IdentityTable ids;
    auto compiled = compile_policy(p, files, ids, {}, {});
    REQUIRE(compiled.ok());
    return compiled;
}

ProcessFacts cart_process(uint64_t cgroup) {
    ProcessFacts f;
    f.exe = kw_file_key{0x800001, 77};
    f.cgroup_ancestors = {1, 50, cgroup};
    return f;
}

}  // namespace

TEST_CASE("a container selector names the container by image, name and pod", "[core][containers]") {
    auto out = parse(R"({"exe": "/srv/cart", "container": {"image": "example.org/cart:1.4", "name": "cart",
                         "pod_namespace": "shop", "pod_name": "cart-0"}})");
    INFO(errors_of(out));
    REQUIRE(out.policy);
    const auto& c = *out.policy->workloads[0].selectors.container;
    CHECK(*c.image == "example.org/cart:1.4");
    CHECK(*c.name == "cart");
    CHECK(*c.pod_namespace == "shop");
    CHECK(*c.pod_name == "cart-0");
    CHECK(lint_policy(*out.policy).empty());
}

TEST_CASE("a container selector that names nothing, or wrongly, is refused by its field", "[core][containers]") {
    CHECK_THAT(errors_of(parse(R"({"container": {}})")),
               ContainsSubstring("/workloads/0/selectors/container: names no container"));
    CHECK_THAT(errors_of(parse(R"({"container": "cart"})")),
               ContainsSubstring("/workloads/0/selectors/container: must be an object"));
    CHECK_THAT(errors_of(parse(R"({"container": {"name": ""}})")),
               ContainsSubstring("/workloads/0/selectors/container/name: must be 1 to 4096 characters"));
    CHECK_THAT(errors_of(parse(R"({"container": {"name": 7}})")),
               ContainsSubstring("/workloads/0/selectors/container/name: must be a string"));
    CHECK_THAT(errors_of(parse(R"({"container": {"labels": {"app": "cart"}}})")),
               ContainsSubstring("/workloads/0/selectors/container"));
}

TEST_CASE("an image pinned by digest is met only by a runtime's name carrying that digest, for that repository",
          "[core][containers]") {
    const std::string d = std::string(64, 'a');
    const std::string e = std::string(64, 'b');
    const std::string pinned = "registry.example/shop@sha256:" + d;
    // containerd names the image by its first reference: a digest when pulled by it alone.
    CHECK(image_selected(pinned, "registry.example/shop@sha256:" + d));
    CHECK(image_selected(pinned, "registry.example/shop:1.4@sha256:" + d));
    CHECK(image_selected("registry.example/shop:1.4@sha256:" + d, "registry.example/shop@sha256:" + d));
    CHECK(image_selected("registry.example:5000/shop@sha256:" + d, "registry.example:5000/shop:2@sha256:" + d));
    CHECK_FALSE(image_selected(pinned, "registry.example/shop@sha256:" + e));   // other content
    CHECK_FALSE(image_selected(pinned, "registry.example/other@sha256:" + d));  // other repository
    CHECK_FALSE(image_selected(pinned, "registry.example/shop:1.4"));           // a tag says no digest
    CHECK_FALSE(image_selected(pinned, "registry.example/shop"));
    // A name is matched as the runtime says it.
    CHECK(image_selected("registry.example/shop:1.4", "registry.example/shop:1.4"));
    CHECK_FALSE(image_selected("registry.example/shop:1.4", "registry.example/shop:1.4@sha256:" + d));
    CHECK_FALSE(image_selected("shop:1.4", "docker.io/library/shop:1.4"));

    auto out = parse(R"({"exe": "/srv/cart", "container": {"image": ")" + pinned + R"("}})");
    INFO(errors_of(out));
    REQUIRE(out.policy);
    ContainerFacts facts = cart_facts();
    facts.image = "registry.example/shop@sha256:" + d;
    CHECK(container_entries(*out.policy, 900, facts).size() == 2);
    facts.image = "registry.example/shop@sha256:" + e;
    CHECK(container_entries(*out.policy, 900, facts).size() == 1);  // governed only

    auto refused = [](const std::string& image) {
        return errors_of(parse(R"({"exe": "/srv/cart", "container": {"image": ")" + image + R"("}})"));
    };
    CHECK_THAT(refused("registry.example/shop@sha512:" + d), ContainsSubstring("/selectors/container/image: pins the image by a digest that is not sha256"));
    CHECK_THAT(refused("registry.example/shop@sha256:" + d.substr(1)), ContainsSubstring("64 lowercase hex digits"));
    CHECK_THAT(refused("registry.example/shop@sha256:" + std::string(64, 'A')), ContainsSubstring("64 lowercase hex digits"));
    CHECK_THAT(refused("@sha256:" + d), ContainsSubstring("names a digest but no image"));
}

TEST_CASE("a container selected without a code selector is a lint warning: a shell exec'd in would get it",
          "[core][containers]") {
    auto out = parse(R"({"container": {"name": "cart"}})");
    REQUIRE(out.policy);
    auto advice = lint_policy(*out.policy);
    REQUIRE(advice.size() == 1);
    CHECK(advice[0].path == "/workloads/0/selectors/container");
    CHECK_THAT(advice[0].message, ContainsSubstring("a shell exec'd into it"));
}

TEST_CASE("a container meets the workloads whose every container field it has", "[core][containers]") {
    Policy p = two_workloads();
    auto entries = container_entries(p, 900, cart_facts());
    REQUIRE(entries.size() == 3);
    CHECK((entries[0].cgroup_id == 900 && entries[0].wl == KW_CTR_GOVERNED));  // its own, always
    CHECK((entries[1].cgroup_id == 900 && entries[1].wl == 0));
    CHECK((entries[2].cgroup_id == 900 && entries[2].wl == 1));

    ContainerFacts other = cart_facts();
    other.name = "sidecar";  // same pod, another container
    entries = container_entries(p, 901, other);
    REQUIRE(entries.size() == 2);
    CHECK(entries[1].wl == 1);

    // Governed, selected by nothing: a runtime that did not say, the pod's pause container.
    auto governed_only = [](const std::vector<kw_ctr_key>& e, uint64_t cgroup) {
        return e.size() == 1 && e[0].cgroup_id == cgroup && e[0].wl == KW_CTR_GOVERNED;
    };
    ContainerFacts unsaid = cart_facts();
    unsaid.pod_namespace.reset();
    CHECK(governed_only(container_entries(p, 902, unsaid), 902));
    ContainerFacts sandbox = cart_facts();
    sandbox.sandbox = true;
    CHECK(governed_only(container_entries(p, 903, sandbox), 903));
}

TEST_CASE("an exec matches a container workload only in a cgroup with its entry", "[core][containers]") {
    Policy p = two_workloads();
    OneFileHost host;
    IdentityTable ids;
    auto compiled = compile_policy(p, host, ids, {}, {});
    REQUIRE(compiled.ok());
    CHECK((compiled->workloads[0].flags & KW_SEL_CONTAINER));
    CHECK_FALSE((compiled->workloads[2].flags & KW_SEL_CONTAINER));

    // No container known: the same binary outside any container gets the host workload.
    CHECK(match_workload(*compiled, cart_process(900)) == 2u);
    compiled->containers = container_entries(p, 900, cart_facts());
    CHECK(match_workload(*compiled, cart_process(900)) == 0u);
    // A sub-cgroup made inside the container is not the container's cgroup.
    auto nested = cart_process(901);
    nested.cgroup_ancestors = {1, 50, 900, 901};
    CHECK(match_workload(*compiled, nested) == 2u);
    // Another container of the pod meets only the pod-wide workload.
    ContainerFacts sidecar = cart_facts();
    sidecar.name = "sidecar";
    compiled->containers = container_entries(p, 905, sidecar);
    CHECK(match_workload(*compiled, cart_process(905)) == 1u);
}

TEST_CASE("a container is located by its process's cgroup, which must be the container's", "[runtime][containers]") {
    kw::test::FakeContainerHost host;
    runtime::Containers containers(host);
    host.cgroups[10] = {kPodCgroup + kCid, 900};
    host.cgroups[11] = {kPodCgroup + kOtherCid, 901};
    host.cgroups[12] = {"/bundles/cart", 902};  // crun or runc started on a bundle: no container path

    auto ok = containers.locate(10, cart_facts());
    REQUIRE(ok.ok());
    CHECK(ok->id == 900);
    auto wrong = containers.locate(11, cart_facts());
    REQUIRE_FALSE(wrong.ok());
    CHECK_THAT(wrong.message(), ContainsSubstring("runs in the cgroup of container aa0d83ec1b5c"));
    CHECK_THAT(wrong.message(), ContainsSubstring("not of container 5e0d83ec1b5c"));
    CHECK(containers.locate(12, cart_facts()).ok());
    auto gone = containers.locate(13, cart_facts());
    REQUIRE_FALSE(gone.ok());
    CHECK_THAT(gone.message(), ContainsSubstring("no process 13"));
}

TEST_CASE("a container's entries are written once, late processes attested with them, dropped with its last process",
          "[runtime][containers]") {
    kw::test::FakeContainerHost host;
    host.late_attested = 1;
    runtime::Containers containers(host);
    Policy p = two_workloads();
    auto compiled = compile_one_file(p);
    runtime::ContainerHost::Cgroup cg{kPodCgroup + kCid, 900};

    auto first = containers.started(cg, cart_facts(), p, *compiled);
    REQUIRE(first.ok());
    CHECK(first->workloads == std::vector<std::string>{"spiffe://example.org/cart", "spiffe://example.org/any-shop"});
    CHECK(first->late.attested == 1);
    CHECK(host.kernel.size() == 3);
    REQUIRE(host.late_calls.size() == 1);
    CHECK(host.late_calls[0].size() == 3);  // the tables it attested against had the new entries

    // A process exec'd into it (runc exec sends its own listener): same cgroup, no new entries.
    REQUIRE(containers.started(cg, cart_facts(), p, *compiled).ok());
    CHECK(host.kernel.size() == 3);
    CHECK(containers.size() == 1);

    // A reload: the entries for the new policy come from the book.
    auto narrower = parse_policy(R"({"version": 1, "trust_domain": "example.org", "workloads": [
        {"id": "spiffe://example.org/cart", "selectors": {"exe": "/srv/cart", "container": {"name": "cart"}}}],
        "destinations": [], "rules": []})");
    REQUIRE(narrower.policy);
    auto next = containers.entries(*narrower.policy);
    REQUIRE(next.size() == 2);
    CHECK((next[1].cgroup_id == 900 && next[1].wl == 0));
    containers.published(*narrower.policy);

    containers.released(900);
    CHECK(host.kernel.size() == 3);  // one process left
    containers.released(900);
    CHECK(host.kernel.size() == 1);  // the entries of the policy in force went; the fake keeps what publish replaced
    CHECK(containers.size() == 0);
    containers.released(900);  // unknown: nothing
}

TEST_CASE("a container no workload selects is governed only, with no late attestation", "[runtime][containers]") {
    kw::test::FakeContainerHost host;
    runtime::Containers containers(host);
    Policy p = two_workloads();
    auto compiled = compile_one_file(p);
    ContainerFacts stranger = cart_facts();
    stranger.pod_namespace = "elsewhere";
    auto started = containers.started({kPodCgroup + kCid, 900}, stranger, p, *compiled);
    REQUIRE(started.ok());
    CHECK(started->workloads.empty());
    REQUIRE(host.kernel.size() == 1);  // raw sockets in it are refused like in a selected one
    CHECK(host.late_calls.empty());
}
