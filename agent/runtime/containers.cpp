// See containers.h.
#include "runtime/containers.h"

#include <spdlog/spdlog.h>

#include "core/container_cgroup.h"
#include "core/container_match.h"

namespace kw::runtime {

Result<ContainerHost::Cgroup> Containers::locate(pid_t pid, const core::ContainerFacts& facts) {
    auto cgroup = host_.cgroup_of(pid);
    if (!cgroup) return make_error("the cgroup of container process " + std::to_string(pid) + ": " + cgroup.message());
    // The runtime is root and trusted with the facts; the cgroup is the kernel's word. Where
    // its path names a container, it must be this one.
    if (auto named = core::parse_container_cgroup(cgroup->path); named && named->id != facts.id)
        return make_error("container process " + std::to_string(pid) + " runs in the cgroup of container " +
                          named->id.substr(0, 12) + " (" + cgroup->path + "), not of " +
                          (facts.id.empty() ? std::string("the container the runtime named")
                                            : "container " + facts.id.substr(0, 12)));
    return cgroup;
}

Result<Containers::Started> Containers::started(const ContainerHost::Cgroup& cgroup,
                                                const core::ContainerFacts& facts, const core::Policy& policy,
                                                const core::CompiledPolicy& compiled) {
    auto [it, fresh] = known_.try_emplace(cgroup.id);
    Known& k = it->second;
    if (fresh) {
        k.facts = facts;
        k.path = cgroup.path;
        k.in_kernel = core::container_entries(policy, cgroup.id, facts);
        if (auto r = host_.add(k.in_kernel); !r) {
            known_.erase(it);
            return r.error();
        }
    }
    k.processes++;
    Started out{cgroup, {}, {}};
    for (const auto& e : k.in_kernel)
        if (e.wl != KW_CTR_GOVERNED) out.workloads.push_back(policy.workloads[e.wl].id);
    if (!out.workloads.empty()) {
        // What the kernel matches: the compiled tables with every container known.
        core::CompiledPolicy now;
        now.files = compiled.files;
        now.lists = compiled.lists;
        now.workloads = compiled.workloads;
        now.code = compiled.code;  // late processes' mappings are checked against their code set
        now.containers = entries(policy);
        out.late = host_.attest_unattested(cgroup.path, now);
    }
    return out;
}

void Containers::released(uint64_t cgroup_id) {
    auto it = known_.find(cgroup_id);
    if (it == known_.end() || --it->second.processes > 0) return;
    if (auto r = host_.remove(it->second.in_kernel); !r)
        spdlog::warn("container cgroup {}: {}", it->second.path, r.message());
    gone_.emplace_front(cgroup_id, std::move(it->second.facts));
    if (gone_.size() > kRecentlyGone) gone_.pop_back();
    known_.erase(it);
}

const core::ContainerFacts* Containers::facts_of(uint64_t cgroup_id) const {
    if (auto it = known_.find(cgroup_id); it != known_.end()) return &it->second.facts;
    for (const auto& [id, facts] : gone_)
        if (id == cgroup_id) return &facts;
    return nullptr;
}

std::vector<kw_ctr_key> Containers::entries(const core::Policy& policy) const {
    std::vector<kw_ctr_key> out;
    for (const auto& [id, k] : known_) {
        auto mine = core::container_entries(policy, id, k.facts);
        out.insert(out.end(), mine.begin(), mine.end());
    }
    return out;
}

void Containers::published(const core::Policy& policy) {
    for (auto& [id, k] : known_) k.in_kernel = core::container_entries(policy, id, k.facts);
}

}  // namespace kw::runtime
