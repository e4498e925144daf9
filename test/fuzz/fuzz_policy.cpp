// Policy JSON (core/policy.cpp) through compilation (core/compile.cpp) and the lint: the
// text of `kwarden policy apply` and of the policy file. Parsing never throws and either
// accepts or names an error; an accepted policy compiles or is refused with a message
// (never a crash), and compiles again as an agent restart would, with the pins the first
// compilation left.
#include "core/compile.h"
#include "core/lint.h"
#include "core/policy.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(fuzz::as_text(data, size));
    core::ParseOutcome parsed = core::parse_policy(text);
    if (parsed.errors.empty() != parsed.policy.has_value()) fuzz::fail("parse_policy: a policy and errors both, or neither");
    for (const auto& e : parsed.errors)
        if (e.message.empty()) fuzz::fail("an error without a message", e.path);
    if (!parsed.policy) return 0;
    const core::Policy& policy = *parsed.policy;
    if (policy.revision.size() != 64) fuzz::fail("revision is not a sha256", policy.revision);
    (void)core::lint_policy(policy);
    for (const auto& w : policy.workloads) (void)core::svid_ttl_of(policy, w.id);

    fuzz::FakeHostView host;
    core::IdentityTable ids;
    auto compiled = core::compile_policy(policy, host, ids, {}, core::CompileOptions{.repin = true});
    if (!compiled) {
        if (compiled.message().empty()) fuzz::fail("compile refused without a reason");
        return 0;
    }
    if (compiled->workloads.size() != policy.workloads.size()) fuzz::fail("a workload was lost in compilation");
    // An agent restart: the same policy with the pins saved by the first load.
    core::PreviousPins pins;
    for (const auto& p : compiled->pins) pins[p.path] = p.pinned_sha256;
    auto again = core::compile_policy(policy, host, ids, pins, core::CompileOptions{.repin = false});
    if (!again) fuzz::fail("a policy that compiled does not compile again on restart", again.message());
    // Attestation from /proc of a process running the first pinned file.
    core::ProcessFacts facts;
    if (!compiled->files.empty()) facts.exe = compiled->files.front().first;
    facts.argv = std::string("prog\0arg", 8);
    (void)core::match_workload(*compiled, facts);
    return 0;
}
