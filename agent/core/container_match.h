// Which workloads a container is: the container selectors of the policy against what its
// runtime said of it (core/oci_state.h). The entries go to the kernel's kw_ctrs, keyed by
// the cgroup the container's processes run in; an exec there matches a workload with a
// container selector only when its entry is present.
#pragma once

#include <cstdint>
#include <vector>

#include "abi.h"
#include "core/oci_state.h"
#include "core/policy.h"

namespace kw::core {

// Whether FACTS meet SEL: every field SEL gives equals the container's. A pod's sandbox
// (pause) container is never selected, nor a container whose runtime did not say.
bool container_selected(const ContainerSelector& sel, const ContainerFacts& facts);

// kw_ctrs entries of the container in cgroup CGROUP_ID: its own (KW_CTR_GOVERNED, first),
// then one per workload (policy order, the compiled workload index) whose container
// selector FACTS meet.
std::vector<kw_ctr_key> container_entries(const Policy& policy, uint64_t cgroup_id, const ContainerFacts& facts);

}  // namespace kw::core
