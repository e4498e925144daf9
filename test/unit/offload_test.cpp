// Threads off the loop (io/worker.h; io/asio_loop.h's AsioOffload, the handshakes'):
// works run at once on as many threads as asked, each with the stack asked; an offload's
// jobs get their thread's own loop to wait on, and what they hand back runs on the
// agent's loop.
#include <catch2/catch_test_macros.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <unistd.h>

#include <memory>
#include <vector>

#include "core/unique_fd.h"
#include "io/asio_loop.h"
#include "io/worker.h"

using namespace std::chrono_literals;

namespace {

// Waits until N threads have arrived, or WITHIN passes: true when all came.
class Meeting {
public:
    explicit Meeting(int n) : left_(n) {}
    bool arrive(std::chrono::milliseconds within) {
        std::unique_lock lock(mu_);
        if (--left_ == 0) {
            cv_.notify_all();
            return true;
        }
        return cv_.wait_for(lock, within, [&] { return left_ == 0; });
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int left_;
};

size_t own_stack_size() {
    pthread_attr_t attr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstacksize(&attr, &size);
        pthread_attr_destroy(&attr);
    }
    return size;
}

}  // namespace

TEST_CASE("a worker of two threads runs two jobs at once, each on the stack asked for", "[io][offload]") {
    const size_t stack = 192 * 1024;
    std::atomic<int> met{0}, ended{0};
    std::atomic<size_t> stack_seen{0};
    Meeting meeting(2);
    {
        kw::io::Worker workers(2, stack);
        CHECK(workers.threads() == 2);
        for (int i = 0; i < 2; i++)
            workers.post([&] {
                stack_seen = own_stack_size();
                // Each job waits for the other: only two threads get both through.
                if (meeting.arrive(5000ms)) met++;
                ended++;
            });
        // The destructor drops jobs not started: wait for both to end (or time out).
        for (int i = 0; i < 1000 && ended < 2; i++) std::this_thread::sleep_for(10ms);
    }
    CHECK(met == 2);
    CHECK(stack_seen == stack);
}

TEST_CASE("one thread runs jobs in the order they were posted, one at a time", "[io][offload]") {
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> running{0}, most{0};
    {
        kw::io::Worker worker;
        for (int i = 0; i < 20; i++)
            worker.post([&, i] {
                int now = ++running;
                most = std::max(most.load(), now);
                std::this_thread::sleep_for(1ms);
                {
                    std::lock_guard lock(mu);
                    order.push_back(i);
                }
                --running;
            });
        std::this_thread::sleep_for(200ms);  // the destructor drops jobs not started
    }
    REQUIRE(order.size() == 20);
    for (int i = 0; i < 20; i++) CHECK(order[i] == i);
    CHECK(most == 1);
}

TEST_CASE("an offload's jobs run in turn on its threads, wait on their thread's loop, and hand back to the loop", "[io][offload]") {
    boost::asio::io_context io;
    auto busy = boost::asio::make_work_guard(io);
    const size_t stack = 128 * 1024;
    kw::io::AsioOffload offload(io, 2, stack);
    const auto loop_thread = std::this_thread::get_id();
    struct Seen {
        std::thread::id job, woke, back;
        size_t stack = 0;
    };
    std::vector<Seen> seen(4);
    int back = 0;
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    kw::core::UniqueFd rd(fds[0]), wr(fds[1]);
    std::vector<std::unique_ptr<kw::runtime::Readiness>> watches(4);
    for (size_t i = 0; i < 4; i++)
        offload.run([&, i](kw::runtime::Loop& loop) {
            seen[i].job = std::this_thread::get_id();
            seen[i].stack = own_stack_size();
            // A wait on the thread's own loop: it fires there, once the pipe is readable.
            int dup = ::dup(rd.get());
            watches[i] = loop.watch(dup);
            watches[i]->wait(kw::runtime::Readiness::For::read, [&, i, dup] {
                seen[i].woke = std::this_thread::get_id();
                watches[i].reset();
                ::close(dup);
                offload.back([&, i] {
                    seen[i].back = std::this_thread::get_id();
                    if (++back == 4) io.stop();
                });
            });
        }, std::nullopt);
    REQUIRE(::write(wr.get(), "x", 1) == 1);
    io.run_for(5s);
    REQUIRE(back == 4);
    for (const Seen& s : seen) {
        CHECK(s.job != loop_thread);
        CHECK(s.woke == s.job);
        CHECK(s.back == loop_thread);
        CHECK(s.stack == stack);
    }
    CHECK(seen[0].job == seen[2].job);  // in turn: 0 and 2 on one thread, 1 and 3 on the other
    CHECK(seen[1].job == seen[3].job);
    CHECK(seen[0].job != seen[1].job);
}

TEST_CASE("an offload puts a job with the key of an earlier one on its thread, others on the thread with the "
          "fewest jobs out",
          "[io][offload]") {
    boost::asio::io_context io;
    auto busy = boost::asio::make_work_guard(io);
    kw::io::AsioOffload offload(io, 2, 128 * 1024);
    // The loop does not run while the jobs are given: none is handed back meanwhile, so
    // the jobs out are the jobs given.
    struct Given {
        std::optional<uint64_t> key;
        std::thread::id thread;
    };
    std::vector<Given> jobs = {{7, {}},  {7, {}},  // the two ends of a connection: one thread
                               {9, {}},            // another connection: the other thread (none out)
                               {std::nullopt, {}},  // 2 out there, 1 here: here, though in turn is there
                               {9, {}},            // 9's other end: with 9, though that has more out now
                               {7, {}}};           // 7 a third time (a new connection, its port reused): by load
    int back = 0;
    for (Given& g : jobs)
        offload.run(
            [&](kw::runtime::Loop&) {
                g.thread = std::this_thread::get_id();
                offload.back([&] {
                    if (++back == static_cast<int>(jobs.size())) io.stop();
                });
            },
            g.key);
    io.run_for(5s);
    REQUIRE(back == static_cast<int>(jobs.size()));
    CHECK(jobs[0].thread != std::this_thread::get_id());
    CHECK(jobs[1].thread == jobs[0].thread);
    CHECK(jobs[2].thread != jobs[0].thread);
    CHECK(jobs[3].thread == jobs[2].thread);
    CHECK(jobs[4].thread == jobs[2].thread);
    // Out before it: 2 on the first thread (7, 7), 3 on the other (9, the keyless one, 9).
    CHECK(jobs[5].thread == jobs[0].thread);
}
