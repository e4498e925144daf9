// Who may enrol: an enrolment request names its own pid and hands over exactly one
// descriptor, a seccomp listener; anything else is refused with an answer that says what
// was expected, and a uid cannot hold more than its share of waiting connections.
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "enroll/fd_message.h"
#include "enroll/filter.h"
#include "io/asio_loop.h"
#include "runtime/enrolment.h"
#include "fake_container_host.h"
#include "runtime/enrolment_service.h"

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

// ---- the enrolment service: what a connection to the enrolment socket gets ----------------

namespace {

// A loop whose first wait on each descriptor fires at once, with nothing to read:
// readiness is a hint, and a spurious wake must not be taken for an end.
class SpuriousLoop : public kw::runtime::Loop {
public:
    explicit SpuriousLoop(kw::runtime::Loop& real) : real_(real) {}
    std::unique_ptr<kw::runtime::Timer> timer() override { return real_.timer(); }
    std::unique_ptr<kw::runtime::Readiness> watch(int fd) override {
        struct Once : kw::runtime::Readiness {
            std::unique_ptr<kw::runtime::Readiness> real;
            std::unique_ptr<kw::runtime::Timer> now;
            bool woken = false;
            void wait(For what, std::function<void()> ready) override {
                if (woken) return real->wait(what, std::move(ready));
                woken = true;
                now->after(std::chrono::milliseconds(0), std::move(ready));
            }
            void cancel() override {
                real->cancel();
                now->cancel();
            }
        };
        auto once = std::make_unique<Once>();
        once->real = real_.watch(fd);
        once->now = real_.timer();
        return once;
    }

private:
    kw::runtime::Loop& real_;
};

struct Enrolment {
    boost::asio::io_context io;
    kw::io::AsioLoop real_loop{io};
    SpuriousLoop spurious_loop{real_loop};
    kw::runtime::Loop& loop;
    std::vector<json> events;
    std::unique_ptr<kw::runtime::EnrollmentService> service;
    bool killable = true;  // what the kernel would say of every listener's filter
    // The processes the kernel would find under every listener's filter: this one.
    std::vector<kw_filter_task> under_filter{{static_cast<uint32_t>(::getpid()), static_cast<uint32_t>(::getppid()), 1}};

    explicit Enrolment(std::function<kw::Result<bool>(int)> claim = {}, kw::runtime::Containers* containers = nullptr,
                       std::shared_ptr<const kw::runtime::PolicyView> view = nullptr, bool spurious_wakes = false)
        : loop(spurious_wakes ? static_cast<kw::runtime::Loop&>(spurious_loop) : real_loop) {
        kw::runtime::EnrollContext ctx;
        ctx.loop = &loop;
        ctx.claim_listener = std::move(claim);
        ctx.containers = containers;
        ctx.listener_killable = [this](int) -> kw::Result<bool> { return killable; };
        ctx.listener_tasks = [this](int) -> kw::Result<std::vector<kw_filter_task>> { return under_filter; };
        if (view) ctx.policy = [view] { return view; };
        ctx.emit = [this](const json& e) { events.push_back(e); };
        service = std::make_unique<kw::runtime::EnrollmentService>(std::move(ctx));
    }
    // A connection from this process: the service gets one end, the test keeps the other.
    kw::core::UniqueFd connect() {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        service->on_connection(kw::core::UniqueFd(sv[0]));
        return kw::core::UniqueFd(sv[1]);
    }
    // The answer on CLIENT, running the loop until it comes (at most 2 s).
    json answer(int client) {
        for (int i = 0; i < 200; ++i) {
            io.restart();
            io.run_for(std::chrono::milliseconds(10));
            char buf[4096];
            ssize_t n = ::recv(client, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) return json::parse(std::string(buf, static_cast<size_t>(n)));
            if (n == 0) return nullptr;  // closed without an answer
        }
        FAIL("no answer within 2 s");
        return nullptr;
    }
};

}  // namespace

TEST_CASE("an enrolment whose descriptor is not a seccomp listener is refused before any ioctl reaches it",
          "[runtime][enrolment]") {
    bool spurious = GENERATE(false, true);  // and when the loop wakes the service with nothing to read
    Enrolment e({}, nullptr, nullptr, spurious);
    auto client = e.connect();
    e.io.run_for(std::chrono::milliseconds(20));  // the wake comes before the hello
    e.io.restart();
    kw::core::UniqueFd not_a_listener(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(kw::enroll::send_message(client.get(), json{{"op", "enroll"}, {"pid", ::getpid()}}.dump(),
                                     {not_a_listener.get()}));
    auto r = e.answer(client.get());
    CHECK(r["ok"] == false);
    CHECK(r["error"] == "the descriptor is not a seccomp listener");
    CHECK(e.service->enrolled() == 0);
    // The service is done with the connection: it is closed after the answer.
    CHECK(e.answer(client.get()).is_null());
}

TEST_CASE("an enrolment naming another process is refused with the reason", "[runtime][enrolment]") {
    Enrolment e;
    auto client = e.connect();
    kw::core::UniqueFd fd(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(kw::enroll::send_message(client.get(), json{{"op", "enroll"}, {"pid", 1}}.dump(), {fd.get()}));
    auto r = e.answer(client.get());
    CHECK(r["ok"] == false);
    CHECK_THAT(r["error"].get<std::string>(), ContainsSubstring("pid"));
}

TEST_CASE("a uid with too many connections waiting for their hello is refused at once, and counted",
          "[runtime][enrolment]") {
    Enrolment e;
    std::vector<kw::core::UniqueFd> waiting;
    for (size_t i = 0; i < kw::runtime::EnrollmentService::kPendingPerUid; ++i) waiting.push_back(e.connect());
    auto refused = e.connect();
    auto r = e.answer(refused.get());
    CHECK(r["ok"] == false);
    CHECK_THAT(r["error"].get<std::string>(), ContainsSubstring("too many connections from uid"));
    CHECK(e.service->socket_status()["refused_peer_limit"] == 1);
    REQUIRE(e.events.size() == 1);
    CHECK(e.events[0]["type"] == "refused");
    CHECK(e.events[0]["reason"] == "peer_limit");
    // One of those waiting is answered and goes: its slot is free again.
    kw::core::UniqueFd fd(::eventfd(0, EFD_CLOEXEC));
    REQUIRE(kw::enroll::send_message(waiting[0].get(), json{{"op", "enroll"}, {"pid", ::getpid()}}.dump(),
                                     {fd.get()}));
    CHECK(e.answer(waiting[0].get())["error"] == "the descriptor is not a seccomp listener");
    auto next = e.connect();
    REQUIRE(kw::enroll::send_message(next.get(), json{{"op", "enroll"}, {"pid", ::getpid()}}.dump(), {fd.get()}));
    CHECK(e.answer(next.get())["error"] == "the descriptor is not a seccomp listener");
}

namespace {

// A real seccomp listener, made the way `kwarden exec` makes it (enroll::install_filter),
// in a child that hands it over and exits: the filter stays for no task at all.
kw::core::UniqueFd seccomp_listener() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    kw::core::UniqueFd ours(sv[0]), theirs(sv[1]);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto listener = kw::enroll::install_filter();
        if (!listener || !kw::enroll::send_message(theirs.get(), "listener", {listener->get()})) ::_exit(1);
        ::_exit(0);
    }
    theirs.reset();
    auto msg = kw::enroll::receive_message(ours.get());
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(msg);
    REQUIRE(msg->fds.size() == 1);
    return std::move(msg->fds[0]);
}

}  // namespace

TEST_CASE("a listener another copy of which is still open is claimed on a later try, and the enrolment answered",
          "[runtime][enrolment]") {
    int claims = 0;
    // The launcher's copy closes after the hello is read: the first two claims find it open.
    Enrolment e([&](int) -> kw::Result<bool> { return ++claims >= 3; });
    auto listener = seccomp_listener();
    auto client = e.connect();
    REQUIRE(kw::enroll::send_message(client.get(),
                                     json{{"op", "enroll"}, {"pid", ::getpid()}, {"command", "app"}}.dump(),
                                     {listener.get()}));
    listener.reset();
    auto r = e.answer(client.get());
    CHECK(r == json{{"ok", true}});
    CHECK(claims == 3);
    REQUIRE_FALSE(e.events.empty());
    CHECK(e.events.back()["type"] == "enroll");
    CHECK(e.events.back()["command"] == "app");
}

TEST_CASE("a listener never claimed: the enrolment is refused by name, not left hanging", "[runtime][enrolment]") {
    Enrolment e([](int) -> kw::Result<bool> { return kw::make_error("the kernel refused it"); });
    auto listener = seccomp_listener();
    auto client = e.connect();
    REQUIRE(kw::enroll::send_message(client.get(), json{{"op", "enroll"}, {"pid", ::getpid()}}.dump(),
                                     {listener.get()}));
    auto r = e.answer(client.get());
    CHECK(r["ok"] == false);
    CHECK(r["error"] == "the kernel refused it");
    CHECK(e.service->enrolled() == 0);
}

// ---- the seccomp-agent socket: a container runtime hands a container process over ------

namespace {

json runtime_state(const std::string& container) {
    return {{"ociVersion", "1.0.2-dev"},
            {"fds", {"seccompFd"}},
            {"pid", ::getpid()},
            {"state",
             {{"ociVersion", "1.0.2-dev"},
              {"id", container},
              {"status", "creating"},
              {"bundle", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + container},
              {"annotations",
               {{"io.kubernetes.cri.container-type", "container"},
                {"io.kubernetes.cri.container-name", "billing"},
                {"io.kubernetes.cri.image-name", "example.org/billing:1.4"},
                {"io.kubernetes.cri.sandbox-namespace", "payments"},
                {"io.kubernetes.cri.sandbox-name", "billing-7d9f"},
                {"io.kubernetes.cri.sandbox-uid", "0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b"}}}}}};
}

// A connection to the seccomp-agent socket from this process (root, as runtimes are).
kw::core::UniqueFd runtime_connection(Enrolment& e) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    e.service->on_runtime_connection(kw::core::UniqueFd(sv[0]));
    return kw::core::UniqueFd(sv[1]);
}

// Hands STATE over with a listener of its own, as a runtime does, and runs the loop until
// the service's first event: the only one, which is returned.
json hand_over(Enrolment& e, const json& state) {
    auto listener = seccomp_listener();
    auto runtime = runtime_connection(e);
    REQUIRE(kw::enroll::send_message(runtime.get(), state.dump(), {listener.get()}));
    listener.reset();
    for (int i = 0; i < 100 && e.events.empty(); ++i) {
        e.io.restart();
        e.io.run_for(std::chrono::milliseconds(10));
    }
    REQUIRE(e.events.size() == 1);
    return e.events[0];
}

}  // namespace

TEST_CASE("a container runtime's state and listener enrol the container process, named by its pod",
          "[runtime][enrolment][oci]") {
    if (::getuid() != 0) SKIP("the seccomp-agent socket serves root peers: run as root");
    Enrolment e;
    auto listener = seccomp_listener();
    auto runtime = runtime_connection(e);
    SECTION("runc: one compact message") {
        REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c1").dump(), {listener.get()}));
    }
    SECTION("crun: pretty-printed, and read in two parts here") {
        std::string text = runtime_state("c1").dump(4) + "\n";
        REQUIRE(kw::enroll::send_message(runtime.get(), text.substr(0, 100), {listener.get()}));
        e.io.restart();
        e.io.run_for(std::chrono::milliseconds(20));
        REQUIRE(kw::enroll::send_message(runtime.get(), text.substr(100)));
    }
    listener.reset();
    // The runtime reads no answer: the connection just ends.
    CHECK(e.answer(runtime.get()).is_null());
    REQUIRE_FALSE(e.events.empty());
    const json& enrolled = e.events.back();
    CHECK(enrolled["type"] == "enroll");
    CHECK_FALSE(enrolled.contains("error"));
    CHECK(enrolled["pid"] == ::getpid());
    CHECK(enrolled["container"]["id"] == "c1");
    CHECK(enrolled["container"]["name"] == "billing");
    CHECK(enrolled["container"]["pod_namespace"] == "payments");
    CHECK(enrolled["command"] == "container billing");
}

TEST_CASE("the process a hand-over serves is the one under the listener's filter: named, or found (crun exec)",
          "[runtime][enrolment][oci]") {
    using kw::runtime::served_process;
    // 10 forked 11 meanwhile; 12 is another process under the same filter, started later.
    const std::vector<kw_filter_task> tasks{{11, 10, 600}, {10, 1, 500}, {12, 1, 700}};
    CHECK(*served_process(tasks, 0) == 10);
    CHECK(*served_process(tasks, 11) == 11);
    CHECK_THAT(served_process(tasks, 13).message(), ContainsSubstring("named process 13, which does not run under"));
    CHECK_THAT(served_process({}, 0).message(), ContainsSubstring("no process runs under the listener's filter"));

    if (::getuid() != 0) SKIP("the seccomp-agent socket serves root peers: run as root");
    Enrolment e;
    json state = runtime_state("c1");
    std::string want;
    SECTION("crun exec says pid 0: the process is found, and named an exec") {
        state["pid"] = 0;
        state["state"]["pid"] = 1;  // the container's init, another process
    }
    SECTION("a process named that is not under the filter is refused") {
        state["pid"] = ::getppid();
        want = "which does not run under the listener's filter";
    }
    SECTION("no process under the filter") {
        e.under_filter.clear();
        want = "no process runs under the listener's filter";
    }
    json event = hand_over(e, state);
    if (want.empty()) {
        CHECK_FALSE(event.contains("error"));
        CHECK(event["pid"] == ::getpid());
        CHECK(event["command"] == "container billing (exec)");
    } else {
        CHECK_THAT(event["error"].get<std::string>(), ContainsSubstring(want));
        CHECK(e.service->enrolled() == 0);
    }
}

TEST_CASE("what a container runtime sends that is not a container process's state is refused, named",
          "[runtime][enrolment][oci]") {
    if (::getuid() != 0) SKIP("the seccomp-agent socket serves root peers: run as root");
    Enrolment e;
    auto runtime = runtime_connection(e);
    std::string why;
    SECTION("a descriptor that is not a seccomp listener") {
        kw::core::UniqueFd fd(::eventfd(0, EFD_CLOEXEC));
        REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c2").dump(), {fd.get()}));
        why = "not a seccomp listener";
    }
    SECTION("no descriptor") {
        REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c2").dump()));
        why = "but 0 came with it";
    }
    SECTION("the runtime closes before the state is whole") {
        auto listener = seccomp_listener();
        REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c2").dump().substr(0, 40), {listener.get()}));
        runtime.reset();
        why = "closed before its state was whole";
    }
    SECTION("a state of another shape") {
        auto listener = seccomp_listener();
        json j = runtime_state("c2");
        j["state"]["bundle"] = 7;
        REQUIRE(kw::enroll::send_message(runtime.get(), j.dump(), {listener.get()}));
        why = "\"state.bundle\"";
    }
    for (int i = 0; i < 100 && e.events.empty(); ++i) {
        e.io.restart();
        e.io.run_for(std::chrono::milliseconds(10));
    }
    REQUIRE(e.events.size() == 1);
    CHECK(e.events[0]["type"] == "enroll");
    CHECK_THAT(e.events[0]["error"].get<std::string>(), ContainsSubstring(why));
    CHECK(e.service->refused_runtimes() == 1);
    CHECK(e.service->enrolled() == 0);
}

TEST_CASE("a listener whose filter waits interruptibly, or whose filter cannot be read, is refused by name",
          "[runtime][enrolment][oci]") {
    if (::getuid() != 0) SKIP("the seccomp-agent socket serves root peers: run as root");
    Enrolment e;
    std::string want;
    SECTION("installed without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (runc 1.1)") {
        e.killable = false;
        want = "installed without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";
    }
    SECTION("the kernel cannot say") {
        e.service.reset();
        kw::runtime::EnrollContext ctx;
        ctx.loop = &e.loop;
        ctx.emit = [&e](const json& ev) { e.events.push_back(ev); };
        ctx.listener_killable = [](int) -> kw::Result<bool> { return kw::make_error("no probe"); };
        e.service = std::make_unique<kw::runtime::EnrollmentService>(std::move(ctx));
        want = "cannot read how the seccomp filter was installed: no probe";
    }
    auto listener = seccomp_listener();
    auto runtime = runtime_connection(e);
    REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c1").dump(), {listener.get()}));
    listener.reset();
    CHECK(e.answer(runtime.get()).is_null());
    REQUIRE(e.events.size() == 1);
    CHECK_THAT(e.events[0]["error"].get<std::string>(), ContainsSubstring(want));
    CHECK(e.service->enrolled() == 0);
    // The same for a process enrolling itself.
    e.events.clear();
    auto own = seccomp_listener();
    auto client = e.connect();
    REQUIRE(kw::enroll::send_message(client.get(), json{{"op", "enroll"}, {"pid", ::getpid()}}.dump(), {own.get()}));
    auto r = e.answer(client.get());
    CHECK(r["ok"] == false);
    CHECK_THAT(r["error"].get<std::string>(), ContainsSubstring(want));
    CHECK(e.service->enrolled() == 0);
}

TEST_CASE("a container handed over is located by its process's cgroup and meets the container selectors",
          "[runtime][enrolment][oci]") {
    if (::getuid() != 0) SKIP("the seccomp-agent socket serves root peers: run as root");
    kw::test::FakeContainerHost host;
    kw::runtime::Containers containers(host);
    auto view = std::make_shared<kw::runtime::PolicyView>();
    auto parsed = kw::core::parse_policy(R"({"version": 1, "trust_domain": "example.org", "workloads": [
        {"id": "spiffe://example.org/billing", "selectors": {"exe": "/app/billing",
            "container": {"name": "billing", "pod_namespace": "payments"}}}], "destinations": [], "rules": []})");
    REQUIRE(parsed.policy);
    view->policy = *parsed.policy;
    Enrolment e({}, &containers, view);
    std::string other = std::string(64, 'b');
    SECTION("its cgroup is no container's by name: taken as the runtime says") {
        host.cgroups[::getpid()] = {"/bundles/c1", 900};
        auto listener = seccomp_listener();
        auto runtime = runtime_connection(e);
        REQUIRE(kw::enroll::send_message(runtime.get(), runtime_state("c1").dump(), {listener.get()}));
        listener.reset();
        CHECK(e.answer(runtime.get()).is_null());
        REQUIRE_FALSE(e.events.empty());
        const json& c = e.events.back()["container"];
        CHECK(c["cgroup"] == "/bundles/c1");
        CHECK(c["workloads"] == json::array({"spiffe://example.org/billing"}));
        CHECK_FALSE(c.contains("error"));
        // Written at enrolment (and dropped again once the process behind the test's
        // listener is gone: the container's last process).
        REQUIRE(host.added.size() == 2);
        CHECK((host.added[0].cgroup_id == 900 && host.added[0].wl == KW_CTR_GOVERNED));
        CHECK((host.added[1].cgroup_id == 900 && host.added[1].wl == 0));
    }
    SECTION("its cgroup is another container's: refused, named, nothing written") {
        host.cgroups[::getpid()] = {"/kubepods/burstable/pod0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b/" + other, 901};
        CHECK_THAT(hand_over(e, runtime_state("c1"))["error"].get<std::string>(),
                   ContainsSubstring("runs in the cgroup of container bbbbbbbbbbbb"));
        CHECK(host.added.empty());
        CHECK(e.service->enrolled() == 0);
    }
    SECTION("its entries cannot be written (kw_ctrs full): refused, not served ungoverned") {
        host.cgroups[::getpid()] = {"/bundles/c1", 902};
        host.full = true;
        CHECK_THAT(hand_over(e, runtime_state("c1"))["error"].get<std::string>(),
                   ContainsSubstring("container c1: kw_ctrs: No space left"));
        CHECK(e.service->enrolled() == 0);
        CHECK(containers.size() == 0);
    }
}
