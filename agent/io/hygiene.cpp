// Process-wide key hygiene (see hygiene.h).
#include "io/hygiene.h"

#include <sys/mman.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kw::io {

Result<void> protect_key_memory() {
    // MCL_FUTURE covers what comes later too: glibc arenas that BoringSSL allocates from,
    // thread stacks, Asio buffers. Mappings the kernel cannot lock (BPF ring buffers,
    // [vvar]) hold no keys.
    if (::mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
        int err = errno;
        return make_error(std::string("cannot lock the agent's memory (mlockall): ") + std::strerror(err) +
                          (err == ENOMEM || err == EPERM
                               ? "; the agent needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK "
                                 "(systemd: LimitMEMLOCK=infinity)"
                               : ""));
    }
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return make_error(std::string("cannot make the agent non-dumpable: ") + std::strerror(errno));
    return {};
}

}  // namespace kw::io
