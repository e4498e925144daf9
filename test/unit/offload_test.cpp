// The handshakes' threads (io/worker.h, io/asio_loop.h's AsioOffload): works run at once
// on as many threads as asked, each with the stack asked, and what follows each runs on
// the loop's thread.
#include <catch2/catch_test_macros.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

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

TEST_CASE("an offload runs the work on a worker thread and what follows on the loop's thread", "[io][offload]") {
    boost::asio::io_context io;
    auto busy = boost::asio::make_work_guard(io);
    kw::io::AsioOffload offload(io, 2, 128 * 1024);
    const auto loop_thread = std::this_thread::get_id();
    std::thread::id work_thread, done_thread;
    bool done = false;
    offload.run([&] { work_thread = std::this_thread::get_id(); },
                [&] {
                    done_thread = std::this_thread::get_id();
                    done = true;
                    io.stop();
                });
    io.run_for(5s);
    REQUIRE(done);
    CHECK(work_thread != loop_thread);
    CHECK(done_thread == loop_thread);
}
