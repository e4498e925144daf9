// Which workloads a container is: the container selectors of the policy against what its
// runtime said of it (core/oci_state.h). The entries go to the kernel's kw_ctrs, keyed by
// the cgroup the container's processes run in; an exec there matches a workload with a
// container selector only when its entry is present.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abi.h"
#include "core/oci_state.h"
#include "core/policy.h"

namespace kw::core {

// Whether FACTS meet SEL: every field SEL gives equals the container's (the image as
// image_selected says). A pod's sandbox (pause) container is never selected, nor a
// container whose runtime did not say.
bool container_selected(const ContainerSelector& sel, const ContainerFacts& facts);

// What is wrong with an image selector, or nothing: a name, or a name pinned by digest
// ("NAME@sha256:" and 64 lowercase hex digits; no other algorithm).
std::optional<std::string> image_reference_problem(std::string_view image);

// Whether the image the runtime NAMED is the one WANTED names. A name is matched as the
// runtime says it (containerd normalises: "docker.io/library/nginx:1.25"). A digest
// (NAME[:TAG]@sha256:HEX) is matched only by a name that carries the same digest for the
// same repository, tags aside: the runtime's "repo@sha256:HEX" or "repo:tag@sha256:HEX".
// A runtime that names the image by a tag only says nothing of its digest: no match.
bool image_selected(std::string_view wanted, std::string_view named);

// kw_ctrs entries of the container in cgroup CGROUP_ID: its own (KW_CTR_GOVERNED, first),
// then one per workload (policy order, the compiled workload index) whose container
// selector FACTS meet.
std::vector<kw_ctr_key> container_entries(const Policy& policy, uint64_t cgroup_id, const ContainerFacts& facts);

}  // namespace kw::core
