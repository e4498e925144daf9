// One thread that runs jobs in the order they were posted: work that may take long (a
// large policy's parse and compile) and touches nothing the event loop owns, so that the
// loop goes on serving held calls and the admin socket meanwhile. A job hands its result
// back by posting to the loop itself.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

namespace kw::io {

class Worker {
public:
    Worker() = default;
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Waits for the job running, if any; jobs not started are dropped.
    ~Worker() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        if (started_) pthread_join(thread_, nullptr);
    }

    // Runs JOB on the worker thread after the jobs posted before it. The thread starts
    // with the first job; if it cannot, JOB runs here and now (slower, still correct).
    void post(std::function<void()> job) {
        std::unique_lock lock(mutex_);
        if (!started_ && !start()) {
            lock.unlock();
            job();
            return;
        }
        jobs_.push_back(std::move(job));
        lock.unlock();
        wake_.notify_one();
    }

private:
    // The agent locks all its memory (protect_key_memory): a default 8 MiB stack would
    // be resident for good. Parse and compile keep their data on the heap.
    static constexpr size_t kStackBytes = 1 << 20;

    bool start() {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) return false;
        pthread_attr_setstacksize(&attr, kStackBytes);
        started_ = pthread_create(&thread_, &attr, &Worker::main, this) == 0;
        pthread_attr_destroy(&attr);
        return started_;
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

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    bool started_ = false;
    pthread_t thread_{};
};

}  // namespace kw::io
