// Threads that run jobs off the event loop: work that may take long and touches nothing
// the loop owns (a large policy's parse and compile, a TLS handshake's next flight), so
// that the loop goes on serving held calls and the admin socket meanwhile. A job hands
// its result back by posting to the loop itself. With one thread, jobs run in the order
// they were posted; with more, in any order.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace kw::io {

class Worker {
public:
    // The agent locks all its memory (protect_key_memory): a default 8 MiB stack would
    // be resident for good, so each thread gets STACK_BYTES.
    explicit Worker(size_t threads = 1, size_t stack_bytes = size_t{1} << 20)
        : wanted_(threads ? threads : 1), stack_bytes_(stack_bytes) {}
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Waits for the jobs running, if any; jobs not started are dropped.
    ~Worker() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (pthread_t t : threads_) pthread_join(t, nullptr);
    }

    // Runs JOB on a worker thread. The threads start with the first job; if none can,
    // JOB runs here and now (slower, still correct).
    void post(std::function<void()> job) {
        std::unique_lock lock(mutex_);
        if (!started_) start();
        if (threads_.empty()) {
            lock.unlock();
            job();
            return;
        }
        jobs_.push_back(std::move(job));
        lock.unlock();
        wake_.notify_one();
    }

    size_t threads() const { return wanted_; }
    size_t stack_bytes() const { return stack_bytes_; }

private:
    void start() {
        started_ = true;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) return;
        pthread_attr_setstacksize(&attr, stack_bytes_);
        for (size_t i = 0; i < wanted_; ++i) {
            pthread_t t{};
            if (pthread_create(&t, &attr, &Worker::main, this) != 0) break;
            threads_.push_back(t);
        }
        pthread_attr_destroy(&attr);
    }

    static void* main(void* self) {
        static_cast<Worker*>(self)->run();
        return nullptr;
    }

    void run() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
                if (stopping_) return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }

    const size_t wanted_;
    const size_t stack_bytes_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    bool started_ = false;
    std::vector<pthread_t> threads_;
};

}  // namespace kw::io
