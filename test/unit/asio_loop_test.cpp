// The runtime's loop on Asio (io/asio_loop.h): a wait runs its callback only when its
// descriptor is ready, whatever the reactor reported.
#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "core/unique_fd.h"
#include "io/asio_loop.h"

using namespace std::chrono_literals;
using kw::runtime::Readiness;

TEST_CASE("a wake-up for a descriptor that is no longer ready does not run the wait; the next real one does",
          "[io][loop]") {
    // Two descriptors of one pipe, each watched: one byte wakes both waits in the same
    // batch of the reactor; the first callback reads it, so when the second comes the
    // pipe is empty. That second wake-up is the reactor's word only, as a wake-up for
    // reactor state reused from another descriptor is: it must not run.
    boost::asio::io_context io;
    kw::io::AsioLoop loop(io);
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    kw::core::UniqueFd rd(fds[0]), wr(fds[1]), rd2(::fcntl(fds[0], F_DUPFD_CLOEXEC, 0));
    auto a = loop.watch(rd.get());
    auto b = loop.watch(rd2.get());
    int ran = 0, empty_when_run = 0;
    auto take = [&](int fd) {
        ++ran;
        char c;
        if (::read(fd, &c, 1) != 1) ++empty_when_run;
    };
    a->wait(Readiness::For::read, [&] { take(rd.get()); });
    b->wait(Readiness::For::read, [&] { take(rd2.get()); });
    REQUIRE(::write(wr.get(), "x", 1) == 1);
    io.run_for(200ms);
    io.restart();
    CHECK(ran == 1);  // one took the byte; the other is still waiting
    CHECK(empty_when_run == 0);
    REQUIRE(::write(wr.get(), "y", 1) == 1);
    io.run_for(200ms);
    CHECK(ran == 2);  // the one still waiting runs on the next byte
    CHECK(empty_when_run == 0);
}
