// Admin request lines (agent/io/agent.cpp, Session::read_next and Agent::handle) through
// the reply the agent writes back. The handler lives in the Asio agent with the kernel
// behind it, so this harness runs its pure part as the agent does: the input is what a
// client writes on the socket, cut into lines at '\n'; each line is parsed (a parse error
// is answered, not thrown), checked and dispatched by "op"; policy.apply parses and
// compiles the policy (against a fake host: no kernel, no disk); every reply is
// serialised (fuzz_common.h: dump_reply). Ops that only read kernel or identity state
// (status, identity, svid.list, bundle.show, stop) are checked up to that read.
#include <limits>

#include "core/compile.h"
#include "core/policy.h"
#include "fuzz_common.h"

using namespace kw;
using nlohmann::json;

namespace {

json problems_json(const std::vector<core::PolicyProblem>& problems) {
    json a = json::array();
    for (const auto& p : problems) a.push_back(p.to_string());
    return a;
}

// Agent::apply and the compilation step of Agent::publish.
json apply(const std::string& text) {
    auto parsed = core::parse_policy(text);
    if (!parsed.errors.empty() || !parsed.policy) {
        std::string msg = "policy rejected (" + std::to_string(parsed.errors.size()) +
                          " error(s)); the previous policy stays in force";
        for (const auto& e : parsed.errors) msg += "\n  " + e.to_string();
        return {{"ok", false}, {"error", msg}, {"problems", problems_json(parsed.errors)}};
    }
    fuzz::FakeHostView host;
    core::IdentityTable ids;
    auto compiled = core::compile_policy(*parsed.policy, host, ids, {}, core::CompileOptions{.repin = true});
    if (!compiled)
        return {{"ok", false},
                {"error", "policy not applied: " + compiled.message() + "; the previous policy stays in force"},
                {"problems", json::array()}};
    auto warnings = parsed.warnings;
    warnings.insert(warnings.end(), compiled->warnings.begin(), compiled->warnings.end());
    return {{"ok", true}, {"revision", parsed.policy->revision}, {"warnings", problems_json(warnings)}};
}

// Agent::handle, up to the kernel and identity reads.
json handle(const json& request, bool& following) {
    if (!request.is_object() || !request.contains("op") || !request["op"].is_string())
        return {{"ok", false}, {"error", "request must be a JSON object with a string field \"op\""}};
    const std::string op = request["op"];
    if (op == "status" || op == "stop" || op == "svid.list") return {{"ok", true}};
    if (op == "policy.apply") {
        if (!request.contains("policy") || !request["policy"].is_string())
            return {{"ok", false}, {"error", "policy.apply needs a string field \"policy\" with the policy text"}};
        return apply(request["policy"].get<std::string>());
    }
    if (op == "events") {
        if (request.value("follow", false)) {
            following = true;
            return nullptr;
        }
        return {{"ok", true}, {"end", true}};
    }
    if (op == "identity") {
        if (!request.contains("pid") || !request["pid"].is_number_integer() || request["pid"].get<int64_t>() <= 0 ||
            request["pid"].get<int64_t>() > std::numeric_limits<int>::max())
            return {{"ok", false}, {"error", "identity needs a positive integer field \"pid\" (a process id)"}};
        int pid = static_cast<int>(request["pid"].get<int64_t>());
        return {{"ok", true}, {"pid", pid}, {"spiffe_id", "unattested"}, {"attested_from_proc", false}};
    }
    if (op == "bundle.show") {
        std::optional<std::string> td;
        if (request.contains("trust_domain")) {
            if (!request["trust_domain"].is_string())
                return {{"ok", false}, {"error", "bundle.show: \"trust_domain\" must be a string"}};
            td = request["trust_domain"].get<std::string>();
        }
        // NodeIdentity::bundle_json's refusal names the trust domain asked for.
        return {{"ok", false},
                {"error", "no trust bundle for trust domain '" + td.value_or("example.org") + "' (known: example.org)"}};
    }
    return {{"ok", false},
            {"error", "unknown op '" + op + "' (known: status, policy.apply, events, identity, svid.list, bundle.show, stop)"}};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in = fuzz::as_text(data, size);
    bool following = false;
    // Session::read_next: one request per line; what follows the last '\n' waits for more.
    while (!following) {
        size_t nl = in.find('\n');
        if (nl == std::string_view::npos) break;
        std::string line(in.substr(0, nl + 1));
        in.remove_prefix(nl + 1);
        json response;
        try {
            response = handle(json::parse(line), following);
        } catch (const json::exception& e) {
            response = {{"ok", false}, {"error", std::string("request is not valid JSON: ") + e.what()}};
        }
        if (response.is_null()) continue;
        std::string reply = fuzz::dump_reply(response);
        auto back = json::parse(reply, nullptr, false);
        if (!back.is_object() || !back.contains("ok") || !back["ok"].is_boolean()) fuzz::fail("a reply without \"ok\"", reply);
    }
    return 0;
}
