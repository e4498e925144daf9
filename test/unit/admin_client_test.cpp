// The CLI's side of the admin protocol (io/admin_client.cpp) against a stand-in agent on a
// unix socket: an agent that answers and closes before reading the request (what it does
// to a non-root peer) must reach the user as that answer, never as a SIGPIPE.
#include <catch2/catch_test_macros.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "core/unique_fd.h"
#include "io/admin_protocol.h"

using kw::core::UniqueFd;

namespace {

struct StandIn {
    std::string path;
    UniqueFd listener;

    StandIn() {
        char dir[] = "/tmp/kw-admin-test.XXXXXX";
        REQUIRE(mkdtemp(dir) != nullptr);
        path = std::string(dir) + "/admin.sock";
        listener = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(listener.valid());
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
        REQUIRE(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        REQUIRE(listen(listener.get(), 1) == 0);
    }
    ~StandIn() {
        unlink(path.c_str());
        rmdir(path.substr(0, path.rfind('/')).c_str());
    }
};

}  // namespace

TEST_CASE("an agent that answers and closes before reading gets its answer to the user, not SIGPIPE") {
    StandIn agent;
    const std::string answer = R"({"ok":false,"error":"permission denied: the admin socket answers root only"})";
    std::thread server([&] {
        UniqueFd peer(accept4(agent.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!peer.valid()) return;
        std::string line = answer + "\n";
        (void)!write(peer.get(), line.data(), line.size());
        // closed unread: the client's writes beyond the socket buffer then fail with EPIPE
    });
    // Far more than a unix socket buffers, so the client is still writing when the
    // stand-in closes: without MSG_NOSIGNAL this process dies of SIGPIPE here.
    nlohmann::json request = {{"op", "policy.apply"}, {"policy", std::string(8 << 20, 'x')}};
    auto r = kw::io::admin_request(agent.path, request);
    server.join();
    REQUIRE(r);
    CHECK((*r)["ok"] == false);
    CHECK((*r)["error"] == "permission denied: the admin socket answers root only");
}

TEST_CASE("an agent that closes without a word is an error that says so") {
    StandIn agent;
    std::thread server([&] { UniqueFd peer(accept4(agent.listener.get(), nullptr, nullptr, SOCK_CLOEXEC)); });
    nlohmann::json request = {{"op", "policy.apply"}, {"policy", std::string(8 << 20, 'x')}};
    auto r = kw::io::admin_request(agent.path, request);
    server.join();
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("closed the connection") != std::string::npos);
}

TEST_CASE("a policy file that is not UTF-8 is refused by the CLI with an error naming it, not a crash") {
    StandIn agent;
    std::thread server([&] { UniqueFd peer(accept4(agent.listener.get(), nullptr, nullptr, SOCK_CLOEXEC)); });
    nlohmann::json request = {{"op", "policy.apply"}, {"policy", std::string("{\"name\": \"caf\xe9\"}")}};
    kw::Result<nlohmann::json> r = kw::make_error("not called");
    REQUIRE_NOTHROW(r = kw::io::admin_request(agent.path, request));
    server.join();
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("not UTF-8") != std::string::npos);
}
