// See container_match.h.
#include "core/container_match.h"

namespace kw::core {

bool container_selected(const ContainerSelector& sel, const ContainerFacts& facts) {
    if (facts.sandbox) return false;
    auto meets = [](const std::optional<std::string>& wanted, const std::optional<std::string>& has) {
        return !wanted || (has && *has == *wanted);
    };
    return meets(sel.image, facts.image) && meets(sel.name, facts.name) &&
           meets(sel.pod_namespace, facts.pod_namespace) && meets(sel.pod_name, facts.pod_name);
}

std::vector<kw_ctr_key> container_entries(const Policy& policy, uint64_t cgroup_id, const ContainerFacts& facts) {
    std::vector<kw_ctr_key> out{kw_ctr_key{cgroup_id, KW_CTR_GOVERNED, 0}};
    for (size_t i = 0; i < policy.workloads.size(); ++i) {
        const auto& sel = policy.workloads[i].selectors.container;
        if (sel && container_selected(*sel, facts)) out.push_back(kw_ctr_key{cgroup_id, static_cast<uint32_t>(i), 0});
    }
    return out;
}

}  // namespace kw::core
