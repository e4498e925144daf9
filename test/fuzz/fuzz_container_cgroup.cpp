// Container cgroup paths (core/container_cgroup.cpp): a container's processes name their
// own cgroup only through the runtime, but a cgroup below one the agent reads can be made
// by anyone delegated it. Never crash; what is read back is what the path holds.
#include "core/container_cgroup.h"

#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view path = fuzz::as_text(data, size);
    // The same bytes as /proc/PID/cgroup: a path read back is absolute, one of its lines.
    if (auto unified = core::unified_cgroup_path(path)) {
        if (!unified->starts_with('/')) fuzz::fail("a cgroup v2 path that is not absolute", *unified);
        if (path.find("0::" + *unified) == std::string_view::npos) fuzz::fail("a cgroup v2 path the text does not hold", *unified);
    }
    auto c = core::parse_container_cgroup(path);
    if (!c) return 0;
    if (c->id.size() != 64 || c->id.find_first_not_of("0123456789abcdef") != std::string::npos)
        fuzz::fail("a container id that is not 64 lowercase hex digits", c->id);
    if (path.find(c->id) == std::string_view::npos) fuzz::fail("a container id the path does not hold", c->id);
    if (c->pod_uid.has_value() != !c->qos.empty()) fuzz::fail("a QoS class without a pod, or a pod without one");
    if (c->pod_uid) {
        const auto& uid = *c->pod_uid;
        if ((uid.size() != 36 && uid.size() != 32) || uid.find_first_not_of("0123456789abcdef-") != std::string::npos)
            fuzz::fail("a pod UID of another shape", uid);
        if (c->qos != "guaranteed" && c->qos != "burstable" && c->qos != "besteffort") fuzz::fail("a QoS class", c->qos);
    }
    (void)core::runtime_name(c->runtime);
    return 0;
}
