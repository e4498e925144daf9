// Container cgroup paths (see container_cgroup.h).
#include "core/container_cgroup.h"

#include <vector>

namespace kw::core {
namespace {

bool is_container_id(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

// A pod UID: a UUID (8-4-4-4-12 lowercase hex), or the 32 hex digits kubelet gives a static
// pod. SEP is how the dashes are written ('-' in cgroupfs names, '_' in systemd units).
std::optional<std::string> pod_uid(std::string_view s, char sep) {
    std::string uid;
    for (char c : s) {
        if (c == sep) {
            uid += '-';
        } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
            uid += c;
        } else {
            return std::nullopt;
        }
    }
    if (uid.size() == 32 && uid.find('-') == std::string::npos) return uid;
    if (uid.size() != 36) return std::nullopt;
    for (size_t i = 0; i < uid.size(); i++)
        if ((uid[i] == '-') != (i == 8 || i == 13 || i == 18 || i == 23)) return std::nullopt;
    return uid;
}

std::optional<std::string_view> between(std::string_view s, std::string_view prefix, std::string_view suffix) {
    if (s.size() < prefix.size() + suffix.size() || !s.starts_with(prefix) || !s.ends_with(suffix)) return std::nullopt;
    return s.substr(prefix.size(), s.size() - prefix.size() - suffix.size());
}

// The pod of a container whose cgroup's parent is PARENT (and grandparent GRAND).
void read_pod(ContainerCgroup& c, std::string_view parent, std::string_view grand) {
    if (c.driver == ContainerCgroup::Driver::systemd) {
        for (auto [prefix, qos] : {std::pair{"kubepods-burstable-pod", "burstable"},
                                   std::pair{"kubepods-besteffort-pod", "besteffort"},
                                   std::pair{"kubepods-pod", "guaranteed"}}) {
            if (auto uid = between(parent, prefix, ".slice")) {
                if ((c.pod_uid = pod_uid(*uid, '_'))) c.qos = qos;
                return;
            }
        }
        return;
    }
    auto uid = between(parent, "pod", "");
    if (!uid) return;
    if (grand == "burstable" || grand == "besteffort") {
        c.qos = std::string(grand);
    } else if (grand == "kubepods") {
        c.qos = "guaranteed";
    } else {
        return;
    }
    c.pod_uid = pod_uid(*uid, '-');
    if (!c.pod_uid) c.qos.clear();
}

}  // namespace

const char* runtime_name(ContainerCgroup::Runtime r) {
    switch (r) {
    case ContainerCgroup::Runtime::containerd: return "containerd";
    case ContainerCgroup::Runtime::crio: return "cri-o";
    case ContainerCgroup::Runtime::docker: return "docker";
    case ContainerCgroup::Runtime::unknown: break;
    }
    return "unknown";
}

std::optional<ContainerCgroup> parse_container_cgroup(std::string_view path) {
    std::vector<std::string_view> parts;
    while (!path.empty()) {
        size_t slash = path.find('/');
        std::string_view part = path.substr(0, slash);
        if (part == "." || part == "..") return std::nullopt;  // not a path the kernel shows
        if (!part.empty()) parts.push_back(part);
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    // crun's sub-cgroup below a systemd scope.
    if (parts.size() >= 2 && parts.back() == "container" && parts[parts.size() - 2].ends_with(".scope")) parts.pop_back();
    if (parts.empty()) return std::nullopt;
    const std::string_view last = parts.back();
    const std::string_view parent = parts.size() >= 2 ? parts[parts.size() - 2] : std::string_view{};
    const std::string_view grand = parts.size() >= 3 ? parts[parts.size() - 3] : std::string_view{};

    using R = ContainerCgroup::Runtime;
    using D = ContainerCgroup::Driver;
    ContainerCgroup c;
    std::optional<std::string_view> id;
    if ((id = between(last, "cri-containerd-", ".scope"))) {
        c.runtime = R::containerd;
        c.driver = D::systemd;
    } else if ((id = between(last, "crio-", ".scope"))) {
        c.runtime = R::crio;
        c.driver = D::systemd;
    } else if ((id = between(last, "docker-", ".scope"))) {
        c.runtime = R::docker;
        c.driver = D::systemd;
    } else if ((id = between(last, "crio-", ""))) {
        c.runtime = R::crio;
        c.driver = D::cgroupfs;
    } else if (is_container_id(last)) {
        id = last;
        c.driver = D::cgroupfs;
        if (parent == "docker") c.runtime = R::docker;
    } else {
        return std::nullopt;
    }
    if (!is_container_id(*id)) return std::nullopt;  // crio-conmon-<id> ends here too
    c.id = std::string(*id);
    read_pod(c, parent, grand);
    // A bare id in a pod's cgroup is how containerd's CRI plugin names it (CRI-O and Docker
    // prefix theirs).
    if (c.runtime == R::unknown && c.pod_uid) c.runtime = R::containerd;
    return c;
}

std::optional<std::string> unified_cgroup_path(std::string_view text) {
    std::optional<std::string> path;
    while (!text.empty()) {
        auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        if (line.starts_with("0::")) path = std::string(line.substr(3));
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    }
    if (!path || !path->starts_with('/')) return std::nullopt;
    return path;
}

}  // namespace kw::core
