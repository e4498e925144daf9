// The admin socket's requests, decided: who is served (root only), what each request
// does and in which order, and what it answers. The socket and its sessions are I/O
// (io/admin_session.h); what a request touches outside this layer goes through the ports.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/peer_limits.h"
#include "core/result.h"
#include "runtime/policy_service.h"

namespace kw::runtime {

// One client of the admin socket, as the service answers it.
class AdminClient {
public:
    virtual ~AdminClient() = default;
    virtual void send(const std::string& line) = 0;
    // Every event from now on goes to this client; it sends no more requests.
    virtual void set_following() = 0;
    // The reply comes later (reply_later); no request is read meanwhile.
    virtual void set_waiting() = 0;
    virtual void reply_later(const nlohmann::json& response) = 0;
};

// The process a pid names, as the kernel sees it.
struct ProcessIdentity {
    uint32_t ident = 0;  // KW_IDENT_NONE: unattested
    bool from_proc = false;  // attested from /proc at start-up, not at its exec
};

class AdminPorts {
public:
    virtual ~AdminPorts() = default;
    virtual nlohmann::json status() = 0;
    // The guard off: the pinned programs keep enforcing, and may be replaced or removed.
    virtual Result<void> unprotect() = 0;
    // The agent's loop ends shortly (after the reply is written).
    virtual void exit_soon() = 0;
    virtual void emit(const nlohmann::json& event) = 0;
    // Sends CLIENT the recent events; with FOLLOW, every event from now on too.
    virtual void replay_events(const std::shared_ptr<AdminClient>& client, bool follow) = 0;
    // Error: the process does not exist (named).
    virtual Result<ProcessIdentity> process_identity(int pid) = 0;
    virtual nlohmann::json svid_list() = 0;
    virtual Result<std::string> bundle_json(const std::optional<std::string>& trust_domain) = 0;
    // A policy change: PolicyService::apply.
    virtual void apply_policy(std::string text, PolicyService::Done done) = 0;
    // SPIFFE ID of a numeric identity; none if the policy in force does not know it.
    virtual std::optional<std::string> identity_name(uint32_t ident) = 0;
};

class AdminService {
public:
    struct Peer {
        pid_t pid = 0;
        uid_t uid = 0;
        gid_t gid = 0;
    };

    explicit AdminService(AdminPorts& ports) : ports_(ports) {}

    // Anyone may connect; only root is served. Another peer gets the returned line and
    // the connection is closed; its knock is a guard event (at most one per uid per report
    // interval, the others summed up in "refused" events).
    std::optional<nlohmann::json> refuse(const Peer& peer);
    // A client sent no request within its first-request time.
    void idle(uid_t uid);
    // The refusals not reported one by one, summed up (every tick).
    void report_refusals(core::PeerLimits::Clock::time_point now);
    uint64_t refused(const std::string& reason) const { return limits_->refused(reason); }

    // The reply to LINE from CLIENT; null when CLIENT is answered later or follows events.
    nlohmann::json handle(const nlohmann::json& line, const std::shared_ptr<AdminClient>& client);

private:
    AdminPorts& ports_;
    std::shared_ptr<core::PeerLimits> limits_ =
        std::make_shared<core::PeerLimits>(0, core::kRefusalReportInterval);
};

}  // namespace kw::runtime
