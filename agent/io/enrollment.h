// Enrolled processes: the enrolment socket that `kwarden exec` hands its
// seccomp listener to, and the service of every call those processes hold.
//
// A held connect() to a mutual-TLS destination: the agent maps the thread to its
// process's kernel-assigned identity (pidfd, then SECCOMP_IOCTL_NOTIF_ID_VALID), checks
// the policy, takes the socket (pidfd_getfd), connects it, runs the TLS 1.3 handshake
// with the process's SVID, installs kTLS TX and RX, and lets connect() return 0. From
// the moment it takes the socket until kTLS is in, the kernel refuses data movement on it
// to anyone but the agent (the app's other threads included). Any failure shuts the
// socket down, leaves it refusing data for good, and fails connect() (EPERM for a policy
// refusal, ECONNREFUSED otherwise), with an event. A held accept() on a workload's mutual-TLS
// listen port: the agent accepts on its copy of the listener, handshakes as server,
// installs kTLS and hands the connection in with ADDFD|SEND; failed handshakes never
// reach the app. Calls that need no mTLS continue untouched.
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
#include "runtime/events.h"
#include "runtime/kernel_port.h"
#include "tls/ktls.h"
#include "tls/post_handshake.h"

namespace kw::io {

using core::now_rfc3339;
using runtime::PolicyView;
using runtime::refused_event;

struct EnrollContext {
    std::function<std::shared_ptr<const PolicyView>()> policy;
    // The kernel: the identity it assigned to a process, and the marks on sockets and
    // enrolled processes (runtime/kernel_port.h). Null: a kernel that grants nothing
    // (no identity, every mark refused), so every mutual-TLS call fails closed.
    runtime::KernelPort* kernel = nullptr;
    const identity::NodeIdentity* identity = nullptr;
    std::function<void(const nlohmann::json&)> emit;
    std::chrono::milliseconds handshake_timeout{10000};
    tls::Cipher cipher = tls::Cipher::aes_128_gcm;
    // The listener holder (enroll/holder.h): every listener is deposited there, and a
    // restarted agent adopts them back. Empty: none (listeners die with the agent).
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
    // The kernel's identity of the process behind PIDFD (KW_IDENT_NONE: none).
    uint32_t identity_of(int pidfd) const { return context_.kernel->identity_of(pidfd); }
    // The session tickets each mutual-TLS server sends after its handshake (learned).
    tls::TicketMemory& tickets() { return tickets_; }
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
    EnrollContext context_;
    tls::TicketMemory tickets_;
    std::shared_ptr<core::PeerLimits> limits_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    AcceptLoop accept_;
    std::map<EnrolledProcess*, std::shared_ptr<EnrolledProcess>> processes_;
    std::optional<enroll::HolderClient> holder_;
    std::optional<boost::asio::posix::stream_descriptor> holder_watch_;
};

}  // namespace kw::io
