#include "io/asio_loop.h"

#include <poll.h>
#include <pthread.h>

#include <spdlog/spdlog.h>

#include <cstring>

namespace kw::io {
namespace asio = boost::asio;

namespace {

// A wait's callback runs only if no cancel() came after the wait began: Asio runs a
// handler whose wait completed before the cancel with success, so each wait carries the
// generation it belongs to.
class Generation {
public:
    std::shared_ptr<const bool> current() const { return live_; }
    void next() {
        *live_ = false;
        live_ = std::make_shared<bool>(true);
    }
    ~Generation() { *live_ = false; }

private:
    std::shared_ptr<bool> live_ = std::make_shared<bool>(true);
};

std::function<void(boost::system::error_code)> guarded(const Generation& g, std::function<void()> fn) {
    return [live = g.current(), fn = std::move(fn)](boost::system::error_code ec) {
        if (!ec && *live) fn();
    };
}

class AsioTimer final : public runtime::Timer {
public:
    explicit AsioTimer(asio::io_context& io) : timer_(io) {}
    void at(std::chrono::steady_clock::time_point when, std::function<void()> fire) override {
        cancel();
        timer_.expires_at(when);
        timer_.async_wait(guarded(generation_, std::move(fire)));
    }
    void cancel() override {
        generation_.next();
        timer_.cancel();
    }

private:
    asio::steady_timer timer_;
    Generation generation_;
};

class AsioReadiness final : public runtime::Readiness {
public:
    AsioReadiness(asio::io_context& io, int fd) : sd_(io) {
        boost::system::error_code ec;
        sd_.assign(fd, ec);
        if (ec) spdlog::error("cannot watch descriptor {}: {}", fd, ec.message());
    }
    // release(), never close(): the descriptor is the caller's. Release takes it out of
    // the reactor's epoll set, which a close would not do while another descriptor of
    // the same open file (the app's) stays open.
    ~AsioReadiness() override {
        boost::system::error_code ec;
        generation_.next();
        if (sd_.is_open()) {
            sd_.cancel(ec);
            (void)sd_.release();
        }
    }
    void wait(For what, std::function<void()> ready) override {
        if (!sd_.is_open()) return;  // not watchable: the caller's timeouts bound it
        // The reactor's word is a hint: a wake-up can come for a descriptor that is not
        // ready (an event of another descriptor, collected in the same batch, landing on
        // reactor state that was freed and reused for this one; or a second watch of the
        // same open file that consumed it first). Acted on, a live process's pidfd "exits"
        // and a connect "completes" early. So the descriptor is asked itself (poll, no
        // wait); not ready, the wait goes on. Nothing runs on the loop in between, so no
        // edge of the edge-triggered reactor is lost.
        sd_.async_wait(what == For::read ? asio::posix::stream_descriptor::wait_read
                                         : asio::posix::stream_descriptor::wait_write,
                       guarded(generation_, [this, what, ready = std::move(ready)]() mutable {
                           pollfd p{sd_.native_handle(), static_cast<short>(what == For::read ? POLLIN : POLLOUT), 0};
                           if (::poll(&p, 1, 0) == 0) return wait(what, std::move(ready));
                           ready();  // ready, an error or a hang-up: the caller finds out which
                       }));
    }
    void cancel() override {
        generation_.next();
        boost::system::error_code ec;
        sd_.cancel(ec);
    }

private:
    asio::posix::stream_descriptor sd_;
    Generation generation_;
};

}  // namespace

std::unique_ptr<runtime::Timer> AsioLoop::timer() { return std::make_unique<AsioTimer>(io_); }

std::unique_ptr<runtime::Readiness> AsioLoop::watch(int fd) { return std::make_unique<AsioReadiness>(io_, fd); }

namespace {
thread_local void* t_offload_thread = nullptr;  // the AsioOffload::Thread running this one
}  // namespace

struct AsioOffload::Thread {
    asio::io_context io;
    AsioLoop loop{io};
    // Jobs given and not handed back (IO's thread only). Shared with what back() posts,
    // which may run after the offload is gone.
    std::shared_ptr<size_t> out = std::make_shared<size_t>(0);
    asio::executor_work_guard<asio::io_context::executor_type> busy = asio::make_work_guard(io);
    // A timer makes the io_context set up its reactor now (an epoll, an eventfd and a
    // timerfd): the thread's descriptors are there from the start, not opened by the
    // first handshake it runs.
    asio::steady_timer reactor{io};
    pthread_t id{};

    static void* main(void* self) {
        t_offload_thread = self;
        static_cast<Thread*>(self)->io.run();
        return nullptr;
    }
};

AsioOffload::AsioOffload(asio::io_context& io, size_t threads, size_t stack_bytes)
    : io_(io), home_(io), wanted_(threads ? threads : 1), stack_bytes_(stack_bytes) {
    start();
}

AsioOffload::~AsioOffload() {
    for (auto& t : threads_) t->io.stop();
    for (auto& t : threads_) pthread_join(t->id, nullptr);
}

void AsioOffload::start() {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return;
    pthread_attr_setstacksize(&attr, stack_bytes_);
    for (size_t i = 0; i < wanted_; ++i) {
        auto t = std::make_unique<Thread>();
        if (int err = pthread_create(&t->id, &attr, &Thread::main, t.get()); err != 0) {
            spdlog::warn("handshake threads: started {} of {}: {}", threads_.size(), wanted_, std::strerror(err));
            break;
        }
        threads_.push_back(std::move(t));
    }
    pthread_attr_destroy(&attr);
}

void AsioOffload::run(std::function<void(runtime::Loop&)> job, std::optional<uint64_t> key) {
    if (threads_.empty()) return job(home_);
    Thread* t = nullptr;
    if (key) {
        for (Recent& r : recent_)
            if (r.thread && r.key == *key) {
                t = r.thread;
                r.thread = nullptr;  // a connection has two ends
                break;
            }
    }
    if (!t) {
        // The fewest jobs out; among equals, in turn.
        const size_t n = threads_.size(), from = next_++ % n;
        t = threads_[from].get();
        for (size_t i = 1; i < n; i++)
            if (Thread* c = threads_[(from + i) % n].get(); *c->out < *t->out) t = c;
        if (key) recent_[recent_next_++ % recent_.size()] = {*key, t};
    }
    ++*t->out;
    asio::post(t->io, [t, job = std::move(job)] { job(t->loop); });
}

void AsioOffload::back(std::function<void()> fn) {
    auto* t = static_cast<Thread*>(t_offload_thread);
    if (!t) return asio::post(io_, std::move(fn));  // from IO's own thread (no thread started)
    asio::post(io_, [out = t->out, fn = std::move(fn)] {
        --*out;
        fn();
    });
}

}  // namespace kw::io
