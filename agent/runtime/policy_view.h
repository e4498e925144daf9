// The policy in force, as the agent's runtime decides with it: the parsed policy, what
// was compiled for the kernel, the identity table and the kernel's decision in userspace.
// Replaced whole on reload; a decision keeps the view it was made under.
#pragma once

#include "core/compile.h"
#include "core/gate.h"
#include "core/policy.h"

namespace kw::runtime {

struct PolicyView {
    core::Policy policy;
    core::CompiledPolicy compiled;
    core::IdentityTable ids;
    core::GateTables gate;  // built from `compiled`: the kernel's decision, for the agent
};

}  // namespace kw::runtime
