// Admin request lines (agent/io/agent.cpp, Session::read_next and Agent::handle) through
// the reply the agent writes back. The handler lives in the Asio agent with the kernel
// behind it, so this harness runs its pure part as the agent does: the input is what a
// client writes on the socket, cut into lines at '\n'; each line is parsed (a parse error
// is answered, not thrown), checked by the agent's own reader (core/admin_request.h) and
// dispatched by "op"; policy.apply parses and compiles the policy (against a fake host:
// no kernel, no disk); every reply is serialised (fuzz_common.h: dump_reply). Ops that
// only read kernel or identity state (status, identity, svid.list, bundle.show, stop)
// are checked up to that read.
#include "core/admin_request.h"
#include "core/compile.h"
#include "core/policy.h"
#include "fuzz_common.h"

using namespace kw;
using nlohmann::json;

namespace {

// Agent::finish after the compilation step of Agent::compile_next, without the install.
json apply(const std::string& text) {
    auto parsed = core::parse_policy(text);
    if (!parsed.errors.empty() || !parsed.policy)
        return {{"ok", false}, {"error", core::policy_rejected(parsed.errors)}, {"problems", core::problems_json(parsed.errors)}};
    fuzz::FakeHostView host;
    core::IdentityTable ids;
    auto compiled = core::compile_policy(*parsed.policy, host, ids, {}, core::CompileOptions{.repin = true});
    if (!compiled)
        return {{"ok", false}, {"error", core::policy_not_applied(compiled.message())}, {"problems", json::array()}};
    auto warnings = parsed.warnings;
    warnings.insert(warnings.end(), compiled->warnings.begin(), compiled->warnings.end());
    return {{"ok", true}, {"revision", parsed.policy->revision}, {"warnings", core::problems_json(warnings)}};
}

// Agent::handle, with the same request reader; the ops that read kernel or identity state
// answer as an agent with no such state would.
json handle(const json& line, bool& following) {
    auto request = core::read_admin_request(line);
    if (!request) return {{"ok", false}, {"error", request.message()}};
    switch (request->op) {
    case core::AdminOp::policy_apply:
        return apply(request->policy);
    case core::AdminOp::events:
        if (request->follow) {
            following = true;
            return nullptr;
        }
        return {{"ok", true}, {"end", true}};
    case core::AdminOp::identity:
        return {{"ok", true}, {"pid", request->pid}, {"spiffe_id", "unattested"}, {"attested_from_proc", false}};
    case core::AdminOp::bundle_show:
        // NodeIdentity::bundle_json's refusal names the trust domain asked for.
        return {{"ok", false},
                {"error", "no trust bundle for trust domain '" + request->trust_domain.value_or("example.org") +
                              "' (known: example.org)"}};
    default:
        return {{"ok", true}};
    }
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
