// The admin requests (see admin.h).
#include "runtime/admin.h"

#include <spdlog/spdlog.h>

#include "abi.h"
#include "core/admin_request.h"
#include "core/wall_clock.h"
#include "runtime/events.h"

namespace kw::runtime {
using json = nlohmann::json;

std::optional<json> AdminService::refuse(const Peer& peer) {
    if (peer.uid == 0) return std::nullopt;
    if (limits_->refuse(peer.uid, "not_root", core::PeerLimits::Clock::now()).count != 0) {
        spdlog::warn("admin socket: refused peer pid {} uid {}: root only", peer.pid, peer.uid);
        ports_.emit({{"type", "guard"},
                     {"time", core::now_rfc3339()},
                     {"action", "admin_socket"},
                     {"decision", "deny"},
                     {"errno", "EPERM"},
                     {"pid", peer.pid},
                     {"uid", peer.uid},
                     {"gid", peer.gid},
                     {"decided_by", "the admin socket answers root only"}});
    }
    return json{{"ok", false},
                {"error", "permission denied: the admin socket answers root only (peer uid " +
                              std::to_string(peer.uid) + ")"}};
}

void AdminService::idle(uid_t uid) {
    auto r = limits_->refuse(uid, "idle", core::PeerLimits::Clock::now());
    if (r.count) ports_.emit(refused_event("admin", r));
}

void AdminService::report_refusals(core::PeerLimits::Clock::time_point now) {
    for (const auto& r : limits_->flush(now)) ports_.emit(refused_event("admin", r));
}

json AdminService::handle(const json& line, const std::shared_ptr<AdminClient>& client) {
    auto request = core::read_admin_request(line);
    if (!request) return {{"ok", false}, {"error", request.message()}};
    switch (request->op) {
    case core::AdminOp::status:
        return {{"ok", true}, {"status", ports_.status()}};
    case core::AdminOp::stop: {
        // The documented way out (upgrade, removal): guard off, then exit; the pinned
        // programs keep enforcing the policy in force, unguarded, until teardown. A guard
        // that stays on keeps the agent running: nothing is left half-stopped.
        if (auto r = ports_.unprotect(); !r) return {{"ok", false}, {"error", r.message()}};
        ports_.emit(protection_event(false, "kwarden stop (admin socket)"));
        spdlog::warn("admin: stop: guard off, exiting; the pinned programs keep enforcing");
        ports_.exit_soon();
        return {{"ok", true}};
    }
    case core::AdminOp::policy_apply: {
        client->set_waiting();
        ports_.apply_policy(std::move(request->policy),
                            [client](Result<PolicyService::Applied> r, const std::vector<core::PolicyProblem>& problems) {
                                if (!r)
                                    return client->reply_later({{"ok", false},
                                                                {"error", r.message()},
                                                                {"problems", core::problems_json(problems)}});
                                spdlog::info("admin: applied revision {}", r->revision.substr(0, 16));
                                client->reply_later({{"ok", true},
                                                     {"revision", r->revision},
                                                     {"warnings", core::problems_json(r->warnings)}});
                            });
        return nullptr;  // answered when the change is done
    }
    case core::AdminOp::events:
        ports_.replay_events(client, request->follow);
        if (request->follow) return nullptr;
        return {{"ok", true}, {"end", true}};
    case core::AdminOp::identity: {
        auto process = ports_.process_identity(request->pid);
        if (!process) return {{"ok", false}, {"error", process.message()}};
        // An identity the kernel holds that the policy in force no longer names (a process
        // attested under an earlier policy) is "unknown", never another workload's name.
        std::string name = "unattested";
        if (process->ident != KW_IDENT_NONE) name = ports_.identity_name(process->ident).value_or("unknown");
        return {{"ok", true},
                {"pid", request->pid},
                {"spiffe_id", name},
                {"attested_from_proc", process->from_proc}};
    }
    case core::AdminOp::svid_list:
        return ports_.svid_list();
    case core::AdminOp::bundle_show: {
        auto bundle = ports_.bundle_json(request->trust_domain);
        if (!bundle) return {{"ok", false}, {"error", bundle.message()}};
        return {{"ok", true}, {"bundle", *bundle}};
    }
    }
    return {{"ok", false}, {"error", "request not handled"}};
}

}  // namespace kw::runtime
