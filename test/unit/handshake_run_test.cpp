// The connection key (runtime/handshake_run.h) that sends both ends of a connection inside
// the node to one handshake thread: the same from either end, whatever address family
// each end's socket has; different for another connection.
#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <utility>

#include "core/unique_fd.h"
#include "runtime/handshake_run.h"

using kw::core::UniqueFd;
using kw::runtime::connection_key;

namespace {

// A loopback listener: IPv4 (127.0.0.1), or IPv6 on [::] taking IPv4 clients too, whose
// accepted ends then have IPv4-mapped addresses.
class Listener {
public:
    explicit Listener(int family) : family_(family), fd_(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        REQUIRE(fd_.valid());
        sockaddr_storage ss{};
        socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        if (family == AF_INET) {
            reinterpret_cast<sockaddr_in&>(ss) = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}, .sin_zero = {}};
        } else {
            int off = 0;
            REQUIRE(::setsockopt(fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0);
            reinterpret_cast<sockaddr_in6&>(ss).sin6_family = AF_INET6;
        }
        REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
        REQUIRE(::listen(fd_.get(), 16) == 0);
        REQUIRE(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
        port_ = family == AF_INET ? reinterpret_cast<sockaddr_in&>(ss).sin_port : reinterpret_cast<sockaddr_in6&>(ss).sin6_port;
    }

    // An IPv4 client connected to the listener, and the listener's end of it.
    std::pair<UniqueFd, UniqueFd> connection() {
        UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in to{.sin_family = AF_INET, .sin_port = port_, .sin_addr = {htonl(INADDR_LOOPBACK)}, .sin_zero = {}};
        REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
        UniqueFd server(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(server.valid());
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        REQUIRE(::getsockname(server.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
        REQUIRE(ss.ss_family == family_);
        return {std::move(client), std::move(server)};
    }

private:
    int family_;
    UniqueFd fd_;
    in_port_t port_ = 0;
};

}  // namespace

TEST_CASE("both ends of a loopback connection have one key, another connection another", "[runtime][handshake_run]") {
    for (int family : {AF_INET, AF_INET6}) {
        INFO((family == AF_INET ? "IPv4 listener" : "dual-stack IPv6 listener: the accepted end is IPv4-mapped"));
        Listener listener(family);
        auto [client, server] = listener.connection();
        auto [other_client, other_server] = listener.connection();
        auto key = connection_key(client.get());
        REQUIRE(key);
        CHECK(connection_key(server.get()) == key);
        auto other = connection_key(other_client.get());
        REQUIRE(other);
        CHECK(connection_key(other_server.get()) == other);
        CHECK(*other != *key);
    }
}

TEST_CASE("a socket without a peer, or not IP, has no connection key", "[runtime][handshake_run]") {
    UniqueFd unconnected(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(unconnected.valid());
    CHECK_FALSE(connection_key(unconnected.get()));
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd a(pair[0]), b(pair[1]);
    CHECK_FALSE(connection_key(a.get()));
    CHECK_FALSE(connection_key(-1));
}
