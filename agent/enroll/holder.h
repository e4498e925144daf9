// The listener holder: a small long-lived process that keeps every enrolled process's
// seccomp listener (and its journal of held calls) open while agents come and go.
//
// Closing the last descriptor of a seccomp listener is final for the process: every
// later trapped call fails with ENOSYS. The agent therefore deposits a copy of each
// listener here as it enrols the process, and a restarted agent adopts them all back.
// Calls made while no agent runs wait in the kernel and are served once one is back; a
// call an agent had taken and not answered when it died is in the journal (journal.h).
//
// The holder speaks JSON over a SOCK_SEQPACKET Unix socket (mode 0600), to processes of
// its own uid only:
//   {"op":"hello","pid":N}    attach as the agent (one at a time): {"ok":true,"held":K},
//                             then K {"op":"held",...} messages each carrying the
//                             listener and journal, then {"op":"end"}
//   {"op":"deposit","pid":N,"uid":U,"command":"...","container":{...}|null}
//                             + listener [+ journal]
//                             (the attached agent only): {"ok":true,"key":K}
//   {"op":"drop","key":K}     the agent refuses to serve it: closed (the attached agent
//                             only): {"ok":true}
//   {"op":"status"}           {"ok":true,"held":K,"agent_pid":P|null,"listeners":[...]}
// A listener no task uses any more (POLLHUP: the process tree exited) is dropped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "core/unique_fd.h"

namespace kw::enroll {

constexpr const char* kDefaultHolderSocket = "/run/kwarden/holder.sock";

struct HolderOptions {
    std::string socket_path = kDefaultHolderSocket;
    // Exit once nothing is held and no agent is attached (after the first agent came,
    // or after IDLE_GRACE without one): how the agent's own spawned holder ends.
    bool exit_when_idle = false;
    std::chrono::milliseconds idle_grace{30000};
    int stop_fd = -1;  // readable: stop (tests)
};

// Serves until stopped (or idle, see above). Returns the process exit code.
int run_holder(const HolderOptions& options);

struct HeldListener {
    uint64_t key = 0;
    pid_t pid = 0;
    uid_t uid = 0;
    std::string command;
    nlohmann::json container;  // what the runtime said of its container, as deposited; null none
    core::UniqueFd listener;
    core::UniqueFd journal;  // invalid when none was deposited
};

// The agent's attachment to the holder. The connection stays open for the agent's life:
// the holder refuses a second agent while it is.
class HolderClient {
public:
    struct Attached;
    // Attaches to the holder at PATH, taking over what it holds.
    static Result<Attached> attach(const std::string& path, pid_t agent_pid);
    // attach(), and when no holder answers at PATH, starts one (this executable, as
    // `holder --socket PATH --exit-when-idle`, in its own session so that it outlives
    // the agent) and attaches to it.
    static Result<Attached> attach_or_spawn(const std::string& path, pid_t agent_pid);
    // {"op":"status"} on a connection of its own.
    static Result<nlohmann::json> status(const std::string& path);

    int fd() const { return sock_.get(); }
    Result<uint64_t> deposit(pid_t pid, uid_t uid, const std::string& command, int listener, int journal,
                             const nlohmann::json& container = nullptr);
    // Closes the listener held under KEY (one adopted and refused).
    Result<void> drop(uint64_t key);

private:
    explicit HolderClient(core::UniqueFd sock) : sock_(std::move(sock)) {}
    Result<nlohmann::json> request(const nlohmann::json& message, const std::vector<int>& fds = {});
    core::UniqueFd sock_;
};

struct HolderClient::Attached {
    HolderClient client;
    std::vector<HeldListener> held;
};

}  // namespace kw::enroll
