// See admin_request.h.
#include "core/admin_request.h"

#include <cstdint>
#include <limits>

namespace kw::core {

using nlohmann::json;

Result<AdminRequest> read_admin_request(const json& request) {
    if (!request.is_object() || !request.contains("op") || !request["op"].is_string())
        return make_error("request must be a JSON object with a string field \"op\"");
    const std::string op = request["op"];
    AdminRequest r;
    if (op == "status") {
        r.op = AdminOp::status;
    } else if (op == "stop") {
        r.op = AdminOp::stop;
    } else if (op == "svid.list") {
        r.op = AdminOp::svid_list;
    } else if (op == "policy.apply") {
        if (!request.contains("policy") || !request["policy"].is_string())
            return make_error("policy.apply needs a string field \"policy\" with the policy text");
        r.op = AdminOp::policy_apply;
        r.policy = request["policy"].get<std::string>();
    } else if (op == "events") {
        auto follow = request.find("follow");
        if (follow != request.end() && !follow->is_boolean())
            return make_error("events: \"follow\" must be true or false");
        r.op = AdminOp::events;
        r.follow = follow != request.end() && follow->get<bool>();
    } else if (op == "identity") {
        auto pid = request.find("pid");
        if (pid == request.end() || !pid->is_number_integer() || pid->get<int64_t>() <= 0 ||
            pid->get<int64_t>() > std::numeric_limits<int>::max())
            return make_error("identity needs a positive integer field \"pid\" (a process id)");
        r.op = AdminOp::identity;
        r.pid = static_cast<int>(pid->get<int64_t>());
    } else if (op == "bundle.show") {
        if (request.contains("trust_domain")) {
            if (!request["trust_domain"].is_string()) return make_error("bundle.show: \"trust_domain\" must be a string");
            r.trust_domain = request["trust_domain"].get<std::string>();
        }
        r.op = AdminOp::bundle_show;
    } else {
        return make_error("unknown op '" + op +
                          "' (known: status, policy.apply, events, identity, svid.list, bundle.show, stop)");
    }
    return r;
}

json problems_json(const std::vector<PolicyProblem>& problems) {
    json a = json::array();
    for (const auto& p : problems) a.push_back(p.to_string());
    return a;
}

std::string policy_rejected(const std::vector<PolicyProblem>& problems) {
    std::string msg =
        "policy rejected (" + std::to_string(problems.size()) + " error(s)); the previous policy stays in force";
    for (const auto& e : problems) msg += "\n  " + e.to_string();
    return msg;
}

std::string policy_not_applied(const std::string& reason) {
    return "policy not applied: " + reason + "; the previous policy stays in force";
}

}  // namespace kw::core
