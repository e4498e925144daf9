// The listener holder and the journal of held calls (enroll/holder.h, enroll/journal.h):
// what an agent deposits comes back to the next agent, with the calls it left
// unanswered; one agent at a time; a listener nobody uses any more is dropped. Pipes
// stand in for seccomp listeners: POLLHUP on a pipe's read end, once no writer is left,
// is what the holder sees when an enrolled process tree exits.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "enroll/fd_message.h"
#include "enroll/holder.h"
#include "enroll/journal.h"

using kw::core::UniqueFd;
using namespace kw::enroll;
using Catch::Matchers::ContainsSubstring;

namespace {

Call make_call(uint64_t id, int nr) {
    Call c;
    c.id = id;
    c.tid = 4242;
    c.nr = nr;
    for (int i = 0; i < 6; ++i) c.args[i] = id * 10 + static_cast<uint64_t>(i);
    return c;
}

struct RunningHolder {
    std::string dir;
    std::string path;
    int stop[2] = {-1, -1};
    std::thread thread;
    int rc = -1;

    RunningHolder() {
        char tmpl[] = "/tmp/kw-holder-test.XXXXXX";
        dir = ::mkdtemp(tmpl);
        path = dir + "/holder.sock";
        REQUIRE(::pipe2(stop, O_CLOEXEC) == 0);
        HolderOptions o;
        o.socket_path = path;
        o.stop_fd = stop[0];
        thread = std::thread([this, o] { rc = run_holder(o); });
        for (int i = 0; i < 200 && !std::filesystem::exists(path); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        REQUIRE(std::filesystem::exists(path));
    }
    ~RunningHolder() {
        (void)!::write(stop[1], "x", 1);
        thread.join();
        ::close(stop[0]);
        ::close(stop[1]);
        std::filesystem::remove_all(dir);
    }
};

size_t held_count(const std::string& path) {
    auto s = HolderClient::status(path);
    REQUIRE(s);
    return (*s)["held"].get<size_t>();
}

}  // namespace

TEST_CASE("journal: what is recorded and not answered is what the next reader finds") {
    auto j = Journal::create();
    REQUIRE(j);
    REQUIRE(j->record(make_call(11, 42)));
    REQUIRE(j->record(make_call(12, 43)));
    REQUIRE(j->record(make_call(13, 288)));
    j->set_saved_flags(12, O_RDWR);
    j->clear(11);
    j->clear(99);  // unknown: nothing happens

    auto again = Journal::adopt(UniqueFd(::dup(j->fd())));
    REQUIRE(again);
    auto held = again->held();
    REQUIRE(held.size() == 2);
    CHECK(held[0].call.id == 12);
    CHECK(held[0].call.nr == 43);
    CHECK(held[0].call.tid == 4242);
    CHECK(held[0].call.args[5] == 125);
    CHECK(held[0].saved_flags == O_RDWR);
    CHECK(held[1].call.id == 13);
    CHECK(held[1].saved_flags == -1);

    // Both map the same memory: an answer through one is seen through the other.
    again->clear(13);
    CHECK(j->size() == 1);
    // A freed slot is used again.
    REQUIRE(j->record(make_call(14, 42)));
    CHECK(again->size() == 2);
}

TEST_CASE("journal: full, it says so; a memfd that is not a journal is refused") {
    auto j = Journal::create();
    REQUIRE(j);
    for (uint32_t i = 0; i < Journal::kSlots; ++i) REQUIRE(j->record(make_call(i + 1, 42)));
    CHECK_FALSE(j->record(make_call(100000, 42)));
    j->clear(7);
    CHECK(j->record(make_call(100000, 42)));

    UniqueFd other(::memfd_create("not-a-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    REQUIRE(other.valid());
    REQUIRE(::ftruncate(other.get(), 4096) == 0);
    auto bad = Journal::adopt(std::move(other));
    REQUIRE_FALSE(bad);
    CHECK(bad.message().find("not a journal") != std::string::npos);
}

TEST_CASE("holder: listeners outlive the agent that deposited them, one agent at a time") {
    RunningHolder holder;
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    auto journal = Journal::create();
    REQUIRE(journal);
    REQUIRE(journal->record(make_call(77, 42)));

    {
        auto first = HolderClient::attach(holder.path, 1001);
        REQUIRE(first);
        CHECK(first->held.empty());
        // A container's facts ride with its listener (what its runtime said of it).
        auto key = first->client.deposit(3003, 1000, "/usr/bin/curl", read_end.get(), journal->fd(),
                                         {{"id", "c1"}, {"name", "cart"}, {"pod_namespace", "shop"}});
        REQUIRE(key);
        CHECK(*key == 1);

        // A second agent while the first is attached is refused, by name.
        auto second = HolderClient::attach(holder.path, 1002);
        REQUIRE_FALSE(second);
        CHECK(second.message().find("another agent (pid") != std::string::npos);

        auto st = HolderClient::status(holder.path);
        REQUIRE(st);
        CHECK((*st)["held"] == 1);
        CHECK((*st)["listeners"][0]["command"] == "/usr/bin/curl");
        CHECK((*st)["agent_pid"] == ::getpid());
    }  // the first agent dies: its connection closes

    // The caller's copies are gone too: only the holder keeps the listener alive now.
    read_end.reset();
    for (int i = 0; i < 200 && HolderClient::status(holder.path)->at("agent_pid") != nullptr; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));

    auto next = HolderClient::attach(holder.path, 1003);
    REQUIRE(next);
    REQUIRE(next->held.size() == 1);
    HeldListener& h = next->held[0];
    CHECK(h.pid == 3003);
    CHECK(h.uid == 1000);
    CHECK(h.command == "/usr/bin/curl");
    CHECK(h.container["name"] == "cart");
    CHECK(h.container["pod_namespace"] == "shop");
    // The very same pipe: what is written to it comes out of the adopted descriptor.
    REQUIRE(::write(write_end.get(), "ping", 4) == 4);
    char buf[8] = {};
    REQUIRE(::read(h.listener.get(), buf, sizeof buf) == 4);
    CHECK(std::string(buf, 4) == "ping");
    // And the journal came along with the call the first agent left unanswered.
    REQUIRE(h.journal.valid());
    auto adopted = Journal::adopt(std::move(h.journal));
    REQUIRE(adopted);
    REQUIRE(adopted->held().size() == 1);
    CHECK(adopted->held()[0].call.id == 77);

    // The process tree exits (the last writer closes): the holder drops the listener.
    h.listener.reset();
    write_end.reset();
    size_t held = 1;
    for (int i = 0; i < 400 && held != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        held = held_count(holder.path);
    }
    CHECK(held == 0);
}

TEST_CASE("holder: a listener the agent refuses is dropped on its word, and only on the attached agent's") {
    RunningHolder holder;
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    auto attached = HolderClient::attach(holder.path, 1001);
    REQUIRE(attached);
    auto key = attached->client.deposit(3003, 1000, "container cart", read_end.get(), -1);
    REQUIRE(key);
    read_end.reset();  // the holder's copy is the last
    CHECK_THAT(attached->client.drop(*key + 7).message(), ContainsSubstring("no listener held under key"));
    CHECK(held_count(holder.path) == 1);
    REQUIRE(attached->client.drop(*key));
    CHECK(held_count(holder.path) == 0);
    // Closed for good: the write end sees the last reader gone.
    pollfd p{write_end.get(), POLLOUT, 0};
    REQUIRE(::poll(&p, 1, 1000) == 1);
    CHECK((p.revents & POLLERR) != 0);
}

TEST_CASE("holder: bad requests get an error that names the problem") {
    RunningHolder holder;
    auto attached = HolderClient::attach(holder.path, 1001);
    REQUIRE(attached);
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd a(pipe_fds[0]), b(pipe_fds[1]);
    auto ok = attached->client.deposit(1, 0, "x", a.get(), -1);
    REQUIRE(ok);  // a journal is optional
    CHECK(held_count(holder.path) == 1);

    // Someone who did not attach as the agent cannot deposit; an unknown op is named.
    UniqueFd raw(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", holder.path.c_str());
    REQUIRE(::connect(raw.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    auto ask = [&](const std::string& text, std::vector<int> fds) {
        REQUIRE(send_message(raw.get(), text, fds));
        auto answer = receive_message(raw.get());
        REQUIRE(answer);
        return answer->text;
    };
    CHECK(ask(R"({"op":"deposit","pid":5})", {b.get()}).find("say hello first") != std::string::npos);
    CHECK(ask(R"({"op":"steal"})", {}).find("unknown op 'steal'") != std::string::npos);
    CHECK(ask("not json", {}).find("unknown op ''") != std::string::npos);
    CHECK(ask(R"({"op":7})", {}).find("unknown op ''") != std::string::npos);
    // Fields of the wrong type from the attached agent fall back; the holder stays up.
    REQUIRE(send_message(attached->client.fd(), R"({"op":"deposit","pid":9,"uid":"root","command":5})", {b.get()}));
    auto answer = receive_message(attached->client.fd());
    REQUIRE(answer);
    CHECK(answer->text.find("\"ok\":true") != std::string::npos);
    CHECK(held_count(holder.path) == 2);
    auto st = HolderClient::status(holder.path);
    REQUIRE(st);
    CHECK((*st)["listeners"][1]["command"] == "?");
    CHECK((*st)["listeners"][1]["uid"] == 0);

    // A path that is not a holder.
    auto none = HolderClient::attach(holder.dir + "/nothing.sock", 1);
    REQUIRE_FALSE(none);
    CHECK(none.message().rfind("no listener holder at", 0) == 0);

    // A second holder on the same socket refuses to take it over.
    HolderOptions o;
    o.socket_path = holder.path;
    CHECK(run_holder(o) == 1);
    CHECK(held_count(holder.path) == 2);
}
