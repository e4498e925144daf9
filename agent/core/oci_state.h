// The container process state an OCI runtime sends to its seccomp agent: the runtime
// connects to `linux.seccomp.listenerPath` and sends, in one message, this JSON and the
// seccomp listener's descriptor (SCM_RIGHTS; `fds` names each descriptor by its index).
// runc sends it compact and without a newline, crun pretty-printed with one; annotations
// can take it past 4 KiB. What a container runtime wrote is checked field by field here
// before anything acts on it, and the facts of the container are read from its
// annotations (containerd's CRI plugin writes the pod's: io.kubernetes.cri.*).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kw::core {

// A state message larger than this is refused (annotations included).
inline constexpr size_t kOciStateMax = 256 * 1024;

struct OciProcessState {
    std::string oci_version;
    std::vector<std::string> fds;  // names of the descriptors received, by index
    size_t seccomp_fd = 0;         // the index of "seccompFd"
    // The process under the listener's filter (the runtime's pid namespace); 0 when the
    // runtime did not say (crun 1.8's exec sends 0): the agent finds it in the kernel.
    pid_t pid = 0;
    std::string metadata;          // the spec's listenerMetadata, as given
    // The container's state.
    std::string id;
    std::string status;  // creating | created | running | stopped
    pid_t init_pid = 0;  // the container's init; 0 when not given
    std::string bundle;  // absolute path of the bundle (its config.json); empty: not said
    std::map<std::string, std::string> annotations;
};

// TEXT as received with FDS descriptors: the state, or what is wrong with it.
Result<OciProcessState> parse_oci_process_state(std::string_view text, size_t fds);

// What the runtime's annotations say about the container; unset when they do not say.
struct ContainerFacts {
    std::string id;
    bool sandbox = false;  // the pod's sandbox (pause) container, not a workload's
    std::optional<std::string> name;
    std::optional<std::string> image;  // the image as the pod spec names it
    std::optional<std::string> pod_namespace;
    std::optional<std::string> pod_name;
    std::optional<std::string> pod_uid;
    std::optional<std::string> sandbox_id;
};
ContainerFacts container_facts(const OciProcessState& state);

}  // namespace kw::core
