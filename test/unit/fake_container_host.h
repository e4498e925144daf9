// A container host for unit tests: cgroups by pid as the test sets them, kw_ctrs as a
// vector, late attestation recorded (the tables it was given) and answered as set.
#pragma once

#include <algorithm>
#include <map>
#include <vector>

#include "runtime/containers.h"

namespace kw::test {

class FakeContainerHost : public runtime::ContainerHost {
public:
    std::map<pid_t, Cgroup> cgroups;
    std::vector<kw_ctr_key> kernel;
    std::vector<kw_ctr_key> added;  // every entry ever added
    std::vector<std::vector<kw_ctr_key>> late_calls;  // the containers of each late attestation's tables
    size_t late_attested = 0;

    kw::Result<Cgroup> cgroup_of(pid_t pid) override {
        auto it = cgroups.find(pid);
        if (it == cgroups.end()) return kw::make_error("no process " + std::to_string(pid));
        return it->second;
    }
    bool full = false;  // add() fails as the kernel's map does when full
    kw::Result<void> add(const std::vector<kw_ctr_key>& entries) override {
        if (full) return kw::make_error("kw_ctrs: No space left on device");
        kernel.insert(kernel.end(), entries.begin(), entries.end());
        added.insert(added.end(), entries.begin(), entries.end());
        return {};
    }
    kw::Result<void> remove(const std::vector<kw_ctr_key>& entries) override {
        for (const auto& e : entries)
            kernel.erase(std::remove_if(kernel.begin(), kernel.end(),
                                        [&](const kw_ctr_key& k) { return k.cgroup_id == e.cgroup_id && k.wl == e.wl; }),
                         kernel.end());
        return {};
    }
    Late attest_unattested(const std::string&, const kw::core::CompiledPolicy& compiled) override {
        late_calls.push_back(compiled.containers);
        return Late{late_attested, std::chrono::milliseconds(40)};
    }
};


}  // namespace kw::test
