// The admin socket's requests as the agent reads them: what a request line must hold
// before anything acts on it, and the texts of a refused policy. One reader for the agent
// (io/agent.cpp) and the fuzzing harness, so that what is fuzzed is what is served.
// The protocol itself: io/admin_protocol.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/policy.h"
#include "core/result.h"

namespace kw::core {

enum class AdminOp { status, stop, policy_apply, events, identity, svid_list, bundle_show };

struct AdminRequest {
    AdminOp op = AdminOp::status;
    std::string policy;                       // policy_apply: the policy text
    bool follow = false;                      // events: stream until the client closes
    int pid = 0;                              // identity: a positive process id
    std::optional<std::string> trust_domain;  // bundle_show: the local one when absent
};

// A parsed request line, checked: the request, or the error the client is answered with.
Result<AdminRequest> read_admin_request(const nlohmann::json& request);

// The problems of a policy as the reply's "problems" array.
nlohmann::json problems_json(const std::vector<PolicyProblem>& problems);

// Why a policy was not applied, saying that the previous one stays in force: the parser
// refused it (its PROBLEMS listed), or a later step failed with REASON.
std::string policy_rejected(const std::vector<PolicyProblem>& problems);
std::string policy_not_applied(const std::string& reason);

}  // namespace kw::core
