// Enrolled processes: the enrolment socket that `kwarden exec` hands its seccomp
// listener to, the listener holder that keeps those listeners across agent restarts, and
// each listener's notifications, handed to the runtime (runtime/sessions.h), which
// decides and serves every call those processes hold.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/peer_limits.h"
#include "core/result.h"
#include "enroll/holder.h"
#include "identity/node_identity.h"
#include "io/accept_loop.h"
#include "io/asio_loop.h"
#include "runtime/events.h"
#include "runtime/session.h"
#include "tls/post_handshake.h"

namespace kw::io {

using core::now_rfc3339;
using runtime::PolicyView;
using runtime::refused_event;

// The runtime's context (policy, kernel, SVIDs, events, timeouts; the service fills in
// its loop and ticket memory), and where the listener holder listens: empty for none
// (listeners die with the agent).
struct EnrollContext : runtime::Context {
    std::string holder_socket;
};

class EnrolledProcess;

class EnrollmentService {
public:
    // Any user may connect: each uid may have this many connections waiting for their
    // hello at once (kwarden exec sends it at once); more are refused with an answer.
    // With hellos of at most 4 KiB, a uid holds at most 256 KiB of the agent's buffers.
    static constexpr size_t kPendingPerUid = 64;
    // A connection that has not sent its hello by then is closed.
    static constexpr std::chrono::seconds kHelloTimeout{5};
    // How long the launcher's close of its listener copy may take to land: the claim is
    // retried every kClaimRetry meanwhile, on the loop, never blocking it.
    static constexpr std::chrono::seconds kClaimWait{5};
    static constexpr std::chrono::milliseconds kClaimRetry{10};

    EnrollmentService(boost::asio::io_context& io, EnrollContext context);
    ~EnrollmentService();

    // Attaches to the listener holder (starting one if none runs) and adopts the
    // listeners it holds: the processes a previous agent served, with their held calls.
    // Returns how many were adopted.
    Result<size_t> adopt();
    // Listens on PATH, mode 0666: any user may enrol their own processes.
    Result<void> listen(const std::string& path);
    size_t enrolled() const { return processes_.size(); }
    bool holder_attached() const { return holder_.has_value(); }
    const EnrollContext& context() const { return context_; }
    boost::asio::io_context& io() { return io_; }
    void forget(EnrolledProcess* process);
    // Emits the refusals kept back by the report interval ("refused" events).
    void report_refusals(core::PeerLimits::Clock::time_point now);
    // Accept errors and refusals of the enrolment socket, for `kwarden status`.
    nlohmann::json socket_status() const;

private:
    void on_connection(boost::asio::local::stream_protocol::socket socket);
    struct Hello;  // an enrolment request that passed its checks (enrollment.cpp)
    void claim_then_enrol(std::shared_ptr<boost::asio::local::stream_protocol::socket> socket,
                          std::shared_ptr<Hello> hello, std::chrono::steady_clock::time_point deadline);
    void enrol(boost::asio::local::stream_protocol::socket& socket, Hello& hello);
    void on_hello(std::shared_ptr<boost::asio::local::stream_protocol::socket> socket,
                  std::shared_ptr<core::PeerLimits::Slot> slot);
    void refused(uid_t uid, const std::string& reason);
    // Deposits PROCESS's listener and journal with the holder, re-attaching (and
    // re-depositing every listener) if the holder went away.
    Result<void> deposit(EnrolledProcess& process);
    Result<void> reattach();
    void watch_holder();

    boost::asio::io_context& io_;
    AsioLoop loop_;
    tls::TicketMemory tickets_;
    EnrollContext context_;
    std::shared_ptr<core::PeerLimits> limits_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    AcceptLoop accept_;
    std::map<EnrolledProcess*, std::shared_ptr<EnrolledProcess>> processes_;
    std::optional<enroll::HolderClient> holder_;
    std::optional<boost::asio::posix::stream_descriptor> holder_watch_;
};

}  // namespace kw::io
