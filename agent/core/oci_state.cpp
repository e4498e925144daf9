// The OCI container process state (see oci_state.h).
#include "core/oci_state.h"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

namespace kw::core {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxAnnotations = 1024;
constexpr size_t kMaxId = 1024;

// A JSON string of at most MAX bytes without NUL, or nothing.
std::optional<std::string> text_field(const json& j, const char* key, size_t max) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > max || s.find('\0') != std::string::npos) return std::nullopt;
    return s;
}

std::optional<pid_t> pid_field(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    const int64_t v = it->get<int64_t>();
    if (v <= 0 || v > std::numeric_limits<pid_t>::max()) return std::nullopt;
    return static_cast<pid_t>(v);
}

}  // namespace

Result<OciProcessState> parse_oci_process_state(std::string_view text, size_t fds) {
    if (text.size() > kOciStateMax)
        return make_error("container process state larger than " + std::to_string(kOciStateMax >> 10) + " KiB");
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return make_error("container process state is not valid JSON");
    if (!j.is_object()) return make_error("container process state is not a JSON object");
    OciProcessState s;

    auto version = text_field(j, "ociVersion", 64);
    if (!version || version->empty()) return make_error("container process state: \"ociVersion\" must be a string");
    s.oci_version = *version;

    auto names = j.find("fds");
    if (names == j.end() || !names->is_array())
        return make_error("container process state: \"fds\" must name the descriptors sent");
    if (names->size() != fds)
        return make_error("container process state names " + std::to_string(names->size()) + " descriptor(s) in \"fds\" but " +
                          std::to_string(fds) + " came with it");
    for (const auto& n : *names) {
        if (!n.is_string() || n.get_ref<const std::string&>().size() > 64)
            return make_error("container process state: \"fds\" must hold short strings");
        s.fds.push_back(n.get<std::string>());
    }
    auto seccomp = std::find(s.fds.begin(), s.fds.end(), "seccompFd");
    if (seccomp == s.fds.end()) return make_error("container process state: no \"seccompFd\" in \"fds\"");
    if (std::count(s.fds.begin(), s.fds.end(), "seccompFd") != 1)
        return make_error("container process state: \"seccompFd\" named more than once in \"fds\"");
    s.seccomp_fd = static_cast<size_t>(seccomp - s.fds.begin());

    auto given = j.find("pid");
    if (given != j.end() && given->is_number_integer() && given->get<int64_t>() == 0) {
        s.pid = 0;  // not said
    } else {
        auto pid = pid_field(j, "pid");
        if (!pid) return make_error("container process state: \"pid\" must be a process id (0: not said)");
        s.pid = *pid;
    }

    if (j.contains("metadata")) {
        auto metadata = text_field(j, "metadata", 4096);
        if (!metadata) return make_error("container process state: \"metadata\" must be a string of at most 4096 bytes");
        s.metadata = *metadata;
    }

    auto state = j.find("state");
    if (state == j.end() || !state->is_object()) return make_error("container process state: \"state\" must be an object");
    auto id = text_field(*state, "id", kMaxId);
    if (!id || id->empty()) return make_error("container process state: \"state.id\" must name the container");
    s.id = *id;
    auto status = text_field(*state, "status", 16);
    if (!status || (*status != "creating" && *status != "created" && *status != "running" && *status != "stopped"))
        return make_error("container process state: \"state.status\" must be creating, created, running or stopped");
    s.status = *status;
    // crun 1.8's exec sends 0 here too: not given.
    if (auto p = state->find("pid"); p != state->end() && !(p->is_number_integer() && p->get<int64_t>() == 0)) {
        auto init = pid_field(*state, "pid");
        if (!init) return make_error("container process state: \"state.pid\" must be a positive process id");
        s.init_pid = *init;
    }
    // Not read by the agent. crun 1.8's exec sends its own working directory (".") and
    // other runtimes none: a path that is not absolute is taken as not said.
    if (state->contains("bundle")) {
        auto bundle = text_field(*state, "bundle", 4096);
        if (!bundle) return make_error("container process state: \"state.bundle\" must be a path of at most 4096 bytes");
        if (bundle->starts_with('/')) s.bundle = *bundle;
    }
    if (auto a = state->find("annotations"); a != state->end()) {
        if (!a->is_object()) return make_error("container process state: \"state.annotations\" must be an object");
        if (a->size() > kMaxAnnotations)
            return make_error("container process state: more than " + std::to_string(kMaxAnnotations) + " annotations");
        for (const auto& [key, value] : a->items()) {
            if (!value.is_string()) return make_error("container process state: annotation " + key + " is not a string");
            s.annotations.emplace(key, value.get<std::string>());
        }
    }
    return s;
}

ContainerFacts container_facts(const OciProcessState& state) {
    ContainerFacts f;
    f.id = state.id;
    // containerd's CRI plugin writes these on every container and sandbox it creates.
    // Other runtimes' annotations (CRI-O's io.kubernetes.cri-o.*) are not read: their
    // names carry other things (ContainerName is kubelet's k8s_..._ name).
    auto get = [&](const char* key) -> std::optional<std::string> {
        auto it = state.annotations.find(key);
        if (it == state.annotations.end() || it->second.empty()) return std::nullopt;
        return it->second;
    };
    f.sandbox = get("io.kubernetes.cri.container-type") == "sandbox";
    f.name = get("io.kubernetes.cri.container-name");
    f.image = get("io.kubernetes.cri.image-name");
    f.pod_namespace = get("io.kubernetes.cri.sandbox-namespace");
    f.pod_name = get("io.kubernetes.cri.sandbox-name");
    f.pod_uid = get("io.kubernetes.cri.sandbox-uid");
    f.sandbox_id = get("io.kubernetes.cri.sandbox-id");
    return f;
}

}  // namespace kw::core
