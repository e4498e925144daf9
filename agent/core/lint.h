// Advice on a policy that needs no host access (lint.cpp), given with the parse.
#pragma once

#include <vector>

#include "core/policy.h"

namespace kw::core {

// Words of advice for `kwarden policy check` that need no host access: an `exe`
// selector alone on an interpreter hands the identity to any code it runs.
std::vector<PolicyProblem> lint_policy(const Policy& policy);

}  // namespace kw::core
