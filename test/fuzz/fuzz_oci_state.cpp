// The container process state an OCI runtime sends the agent's seccomp-agent socket
// (core/oci_state.cpp). The first byte is how many descriptors came with it (0-3), the
// rest the text. Never crash or throw; a state read back holds what the agent relies on.
#include "core/oci_state.h"

#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const size_t fds = data[0] % 4;
    auto s = core::parse_oci_process_state(fuzz::as_text(data + 1, size - 1), fds);
    if (!s) {
        if (s.message().empty()) fuzz::fail("a refusal without a reason");
        return 0;
    }
    if (s->fds.size() != fds || s->seccomp_fd >= fds || s->fds[s->seccomp_fd] != "seccompFd")
        fuzz::fail("the listener's index is not that of a descriptor received");
    // 0: not said (crun exec); the agent finds the process under the listener's filter.
    if (s->pid < 0 || s->init_pid < 0) fuzz::fail("a process id that is not one");
    if (s->id.empty()) fuzz::fail("an unnamed container");
    if (!s->bundle.empty() && s->bundle[0] != '/') fuzz::fail("a relative bundle (not said is empty)");
    auto f = core::container_facts(*s);
    if (f.id != s->id) fuzz::fail("the facts name another container");
    (void)fuzz::dump_reply({{"id", f.id}, {"name", f.name.value_or("")}, {"image", f.image.value_or("")},
                            {"pod_namespace", f.pod_namespace.value_or("")}, {"pod_name", f.pod_name.value_or("")}});
    return 0;
}
