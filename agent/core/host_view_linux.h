// LinuxHostView: the HostView of a running system: files hashed through one open fd,
// cgroups resolved below the cgroup2 mount.
#pragma once

#include <string>

#include "core/compile.h"

namespace kw::core {

class LinuxHostView : public HostView {
public:
    explicit LinuxHostView(std::string cgroup2_mount = "/sys/fs/cgroup");

    Result<PinnedContent> pin_file(const std::string& path) override;
    std::optional<CgroupRef> resolve_cgroup(const std::string& path) override;

private:
    std::string cgroup2_mount_;
};

}  // namespace kw::core
