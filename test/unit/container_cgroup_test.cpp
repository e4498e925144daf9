// Container cgroup paths as containerd (CRI, both cgroup drivers), crun, CRI-O and Docker
// name them; paths of any other shape are no container.
#include <catch2/catch_test_macros.hpp>

#include <string>

#include "core/container_cgroup.h"

using kw::core::ContainerCgroup;
using kw::core::parse_container_cgroup;

namespace {

const std::string kId = "5e0d83ec1b5c4f4bd9f1a1e3b8c2d6e7f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
const std::string kUid = "0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b";
const std::string kUidUnderscored = "0b8c7e7a_9f0e_4a6e_8b2a_1c2d3e4f5a6b";

}  // namespace

TEST_CASE("containerd's CRI plugin with the cgroupfs driver: each QoS class", "[core][container]") {
    for (auto [path, qos] : {std::pair{"/kubepods/burstable/pod" + kUid + "/" + kId, "burstable"},
                             std::pair{"/kubepods/besteffort/pod" + kUid + "/" + kId, "besteffort"},
                             std::pair{"/kubepods/pod" + kUid + "/" + kId, "guaranteed"}}) {
        auto c = parse_container_cgroup(path);
        REQUIRE(c);
        CHECK(c->runtime == ContainerCgroup::Runtime::containerd);
        CHECK(c->driver == ContainerCgroup::Driver::cgroupfs);
        CHECK(c->id == kId);
        CHECK(c->pod_uid == kUid);
        CHECK(c->qos == qos);
    }
}

TEST_CASE("containerd's CRI plugin with the systemd driver, runc and crun", "[core][container]") {
    const std::string scope = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscored +
                              ".slice/cri-containerd-" + kId + ".scope";
    for (const std::string& path : {scope, scope + "/container"}) {  // crun adds its sub-cgroup
        auto c = parse_container_cgroup(path);
        REQUIRE(c);
        CHECK(c->runtime == ContainerCgroup::Runtime::containerd);
        CHECK(c->driver == ContainerCgroup::Driver::systemd);
        CHECK(c->id == kId);
        CHECK(c->pod_uid == kUid);  // the underscores kubelet wrote are dashes again
        CHECK(c->qos == "burstable");
    }
    auto guaranteed = parse_container_cgroup("/kubepods.slice/kubepods-pod" + kUidUnderscored +
                                             ".slice/cri-containerd-" + kId + ".scope");
    REQUIRE(guaranteed);
    CHECK(guaranteed->qos == "guaranteed");
    // A static pod's UID is a 32-digit hash, without dashes.
    auto static_pod = parse_container_cgroup("/kubepods.slice/kubepods-besteffort.slice/"
                                             "kubepods-besteffort-pod9c8f3a1e2b4d5c6e7f8091a2b3c4d5e6.slice/"
                                             "cri-containerd-" + kId + ".scope");
    REQUIRE(static_pod);
    CHECK(static_pod->pod_uid == "9c8f3a1e2b4d5c6e7f8091a2b3c4d5e6");
}

TEST_CASE("CRI-O and Docker containers; CRI-O's conmon is not the container", "[core][container]") {
    auto crio = parse_container_cgroup("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
                                       kUidUnderscored + ".slice/crio-" + kId + ".scope");
    REQUIRE(crio);
    CHECK(crio->runtime == ContainerCgroup::Runtime::crio);
    CHECK(crio->pod_uid == kUid);
    CHECK(crio->qos == "besteffort");
    auto crio_fs = parse_container_cgroup("/kubepods/burstable/pod" + kUid + "/crio-" + kId);
    REQUIRE(crio_fs);
    CHECK(crio_fs->runtime == ContainerCgroup::Runtime::crio);
    CHECK(crio_fs->driver == ContainerCgroup::Driver::cgroupfs);
    CHECK_FALSE(parse_container_cgroup("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
                                       kUidUnderscored + ".slice/crio-conmon-" + kId + ".scope"));
    CHECK_FALSE(parse_container_cgroup("/kubepods/burstable/pod" + kUid + "/crio-conmon-" + kId));

    auto docker = parse_container_cgroup("/docker/" + kId);
    REQUIRE(docker);
    CHECK(docker->runtime == ContainerCgroup::Runtime::docker);
    CHECK_FALSE(docker->pod_uid);
    CHECK(docker->qos.empty());
    auto docker_systemd = parse_container_cgroup("/system.slice/docker-" + kId + ".scope");
    REQUIRE(docker_systemd);
    CHECK(docker_systemd->runtime == ContainerCgroup::Runtime::docker);
    CHECK(docker_systemd->driver == ContainerCgroup::Driver::systemd);
}

TEST_CASE("whatever sits above the pod's cgroup is not looked at", "[core][container]") {
    auto nested = parse_container_cgroup("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
                                         "kubepods-burstable-pod" + kUidUnderscored + ".slice/cri-containerd-" + kId +
                                         ".scope");
    REQUIRE(nested);
    CHECK(nested->pod_uid == kUid);
    // Seen from inside the container's own cgroup namespace, its cgroup is "/": no id.
    CHECK_FALSE(parse_container_cgroup("/"));
    // containerd outside Kubernetes (CRI with no parent): an id, no pod.
    auto bare = parse_container_cgroup("/k8s.io/" + kId);
    REQUIRE(bare);
    CHECK(bare->runtime == ContainerCgroup::Runtime::unknown);
    CHECK_FALSE(bare->pod_uid);
}

TEST_CASE("paths that are no container give nothing", "[core][container]") {
    for (const std::string& path :
         {std::string(""), std::string("/system.slice/ssh.service"), std::string("/user.slice/user-1000.slice/session-3.scope"),
          std::string("/kubepods/burstable/pod") + kUid,                          // the pod, not a container
          "/kubepods/burstable/pod" + kUid + "/" + kId.substr(1),                 // 63 digits
          "/kubepods/burstable/pod" + kUid + "/" + kId + "0",                     // 65 digits
          std::string("/docker/5E0D83EC1B5C4F4BD9F1A1E3B8C2D6E7F9A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4"),  // uppercase: not as runtimes write it
          "/system.slice/cri-containerd-" + kId + ".service", "/kubepods/burstable/pod" + kUid + "/../" + kId,
          "/kubepods.slice/cri-containerd-" + kId + ".scope/container/extra"}) {
        INFO(path);
        CHECK_FALSE(parse_container_cgroup(path));
    }
    // A container whose pod's cgroup is malformed keeps its id, but names no pod.
    auto odd = parse_container_cgroup("/kubepods/burstable/podnot-a-uid/" + kId);
    REQUIRE(odd);
    CHECK_FALSE(odd->pod_uid);
    CHECK(odd->qos.empty());
    auto wrong_sep = parse_container_cgroup("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUid +
                                            ".slice/cri-containerd-" + kId + ".scope");
    REQUIRE(wrong_sep);
    CHECK_FALSE(wrong_sep->pod_uid);  // systemd unit names never carry the dashes
}

TEST_CASE("the cgroup v2 path of /proc/PID/cgroup: its 0:: line, absolute", "[core][container]") {
    using kw::core::unified_cgroup_path;
    // A hybrid host lists v1 hierarchies first; a v2-only host one line.
    CHECK(*unified_cgroup_path("12:pids:/user.slice\n1:name=systemd:/init.scope\n0::/kubepods/burstable/podx/abc\n") ==
          "/kubepods/burstable/podx/abc");
    CHECK(*unified_cgroup_path("0::/") == "/");
    CHECK_FALSE(unified_cgroup_path("12:pids:/user.slice\n"));
    CHECK_FALSE(unified_cgroup_path("0::relative\n"));
    CHECK_FALSE(unified_cgroup_path(""));
}
