// Enrolled processes: the enrolment requests `kwarden exec` sends with its seccomp
// listener (who may enrol, the listener claimed by the agent alone, kept by the listener
// holder before the launcher may exec), the holder that keeps those listeners across
// agent restarts, and each listener's notifications, served by runtime/sessions.h. The
// enrolment socket itself is io/'s (io/enrol_socket.h): it hands each connection here.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/peer_limits.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "enroll/holder.h"
#include "runtime/containers.h"
#include "runtime/loop.h"
#include "runtime/session.h"
#include "tls/post_handshake.h"

namespace kw::runtime {

// The runtime's context (policy, kernel, SVIDs, events, loop, timeouts; the service
// fills in its ticket memory), and where the listener holder listens: empty for none
// (listeners die with the agent).
struct EnrollContext : Context {
    std::string holder_socket;
    // Registers a listener as the agent's alone: true, false while another copy is open
    // (retried), or the error. Unset: enroll::try_claim_listener; unit tests replace it.
    std::function<Result<bool>(int listener)> claim_listener;
    // The containers enrolled through the seccomp-agent socket; unset: their processes
    // are served, but no container selector matches them.
    Containers* containers = nullptr;
    // Whether a seccomp listener's filter was installed with
    // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, read from the kernel. A listener without it,
    // or when this cannot tell (unset included), is refused: a signal would end the wait
    // of a call the agent holds, in the middle of its handshake.
    std::function<Result<bool>(int listener)> listener_killable;
    // The processes under a seccomp listener's filter, read from the kernel (see
    // served_process). Unset: a runtime's word is taken, and a hand-over that names no
    // process is refused.
    std::function<Result<std::vector<kw_filter_task>>(int listener)> listener_tasks;
};

// The process a runtime's hand-over serves, of TASKS (those under its listener's filter):
// SAID when the runtime names one, which must be among them; else (SAID 0: crun exec does
// not say) the eldest whose parent is not among them, the process the runtime started.
// Children it forked meanwhile are under the filter too, and served with it.
Result<pid_t> served_process(const std::vector<kw_filter_task>& tasks, pid_t said);

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

    // CONTEXT.loop must be set.
    explicit EnrollmentService(EnrollContext context);
    ~EnrollmentService();

    // Attaches to the listener holder (starting one if none runs) and adopts the
    // listeners it holds: the processes a previous agent served, with their held calls.
    // Returns how many were adopted.
    Result<size_t> adopt();
    // A connection to the enrolment socket (any user may connect): its hello is awaited,
    // checked and answered.
    void on_connection(core::UniqueFd socket);
    // A connection to the seccomp-agent socket: an OCI runtime (root) sends a container
    // process's state and its listener (core/oci_state.h), and reads no answer. A state
    // refused is logged and an event; the listener is closed, so that the container's
    // trapped calls fail (ENOSYS) rather than run unserved.
    void on_runtime_connection(core::UniqueFd socket);
    // Runtimes give a container process up to this long between connecting and sending
    // its state (crun with no_new_privs sends it at `crun start`).
    static constexpr std::chrono::seconds kRuntimeStateWait{120};
    // Connections from a runtime waiting to send their state, at most.
    static constexpr size_t kPendingRuntime = 256;
    uint64_t refused_runtimes() const { return refused_runtimes_; }
    size_t enrolled() const { return processes_.size(); }
    // Calls the enrolled processes hold that wait for the agent's answer now.
    size_t held_calls() const;
    bool holder_attached() const { return holder_.has_value(); }
    const EnrollContext& context() const { return context_; }
    Loop& loop() { return *context_.loop; }
    void forget(EnrolledProcess* process);
    // Emits the refusals kept back by the report interval ("refused" events).
    void report_refusals(core::PeerLimits::Clock::time_point now);
    // The enrolment socket's refusals, for `kwarden status`.
    nlohmann::json socket_status() const;

private:
    struct Peer;   // a connection waiting for its hello, then for its claim
    struct Hello;  // an enrolment request that passed its checks (enrolment_service.cpp)
    void on_hello(const std::shared_ptr<Peer>& peer);
    std::optional<std::string> unservable_listener(int fd, const std::string& what) const;
    void claim_then_enrol(std::shared_ptr<Peer> peer, std::shared_ptr<Hello> hello,
                          std::chrono::steady_clock::time_point deadline);
    void enrol(Peer& peer, Hello& hello);
    void when_readable(const std::shared_ptr<Peer>& peer, std::function<void()> read);
    void read_runtime_state(const std::shared_ptr<Peer>& peer);
    void refuse_runtime(Peer& peer, const std::string& why);
    // The container PROCESS runs in (CGROUP, when located): its entries and late
    // attestation (Containers::started); the enroll event's "container".
    // An error when the container's cgroup, or its entries, cannot be had: it would be
    // served neither selected nor governed, so it is refused.
    Result<nlohmann::json> register_container(EnrolledProcess& process,
                                              const std::optional<ContainerHost::Cgroup>& cgroup);
    void refused(uid_t uid, const std::string& reason);
    // Deposits PROCESS's listener and journal with the holder, re-attaching (and
    // re-depositing every listener) if the holder went away.
    Result<void> deposit(EnrolledProcess& process);
    Result<void> reattach();
    void watch_holder();

    tls::TicketMemory tickets_;
    tls::ContextCache contexts_;  // one SSL_CTX per SVID, role and suite
    EnrollContext context_;
    std::shared_ptr<core::PeerLimits> limits_;
    std::map<EnrolledProcess*, std::shared_ptr<EnrolledProcess>> processes_;
    std::map<EnrolledProcess*, uint64_t> container_of_;  // the cgroup id of an enrolled container process
    std::optional<enroll::HolderClient> holder_;
    std::unique_ptr<Readiness> holder_watch_;
    // Shared with the connections it counts: one may outlive the service (a wait still
    // pending when the loop is destroyed).
    std::shared_ptr<size_t> pending_runtime_ = std::make_shared<size_t>(0);
    uint64_t refused_runtimes_ = 0;
};

}  // namespace kw::runtime
