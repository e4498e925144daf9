// A runtime::PolicyView from policy text, for the runtime's unit tests: parsed, compiled
// against a host with no files (workloads select by uid), gate tables built.
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <memory>
#include <string>

#include "core/compile.h"
#include "runtime/policy_view.h"

namespace kw::test {

class NoFiles : public core::HostView {
public:
    Result<core::PinnedContent> pin_file(const std::string& path) override {
        return make_error("no file " + path + " in this test");
    }
    std::optional<core::CgroupRef> resolve_cgroup(const std::string&) override { return std::nullopt; }
};

// IDS is the agent's identity table: append-only across the views made with it.
inline std::shared_ptr<runtime::PolicyView> policy_view(const std::string& text, core::IdentityTable& ids) {
    auto v = std::make_shared<runtime::PolicyView>();
    auto parsed = core::parse_policy(text);
    REQUIRE(parsed.policy);
    v->policy = *parsed.policy;
    NoFiles host;
    auto compiled = core::compile_policy(v->policy, host, ids, {}, {});
    REQUIRE(compiled);
    v->compiled = std::move(*compiled);
    v->ids = ids;
    v->gate = core::GateTables(v->compiled);
    return v;
}

}  // namespace kw::test
