// Which container a cgroup is, read from its path (a /proc/PID/cgroup "0::" line, or a
// directory below the cgroup2 mount) as the container runtimes name them:
//
//   containerd (CRI), cgroupfs  /kubepods/burstable/pod<uid>/<id>      (guaranteed: /kubepods/pod<uid>/<id>)
//   containerd (CRI), systemd   /kubepods.slice/kubepods-burstable.slice/
//                                 kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope
//   crun under systemd          the same, then /container (its default sub-cgroup)
//   CRI-O                       .../crio-<id>.scope or .../crio-<id> (conmon: crio-conmon-<id>, not the container)
//   Docker                      /docker/<id>, /system.slice/docker-<id>.scope
//
// <id> is the 64 lowercase hex digits of the container id; <uid> the pod's UID (kubelet
// writes it with "_" for "-" in systemd unit names). Whatever sits above these (a cgroup
// namespace's root, a nested node) is not looked at. A path of any other shape is no
// container: the caller gets nothing rather than a guess.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kw::core {

struct ContainerCgroup {
    enum class Runtime { containerd, crio, docker, unknown };
    enum class Driver { cgroupfs, systemd };
    Runtime runtime = Runtime::unknown;
    Driver driver = Driver::cgroupfs;
    std::string id;                      // 64 lowercase hex digits
    std::optional<std::string> pod_uid;  // as the API server writes it (with "-")
    std::string qos;                     // guaranteed | burstable | besteffort; "" outside a pod
};

std::optional<ContainerCgroup> parse_container_cgroup(std::string_view path);

// The cgroup v2 path of a /proc/PID/cgroup TEXT (its "0::" line), or nothing: no such
// line, or a path that is not absolute.
std::optional<std::string> unified_cgroup_path(std::string_view text);

const char* runtime_name(ContainerCgroup::Runtime r);

}  // namespace kw::core
