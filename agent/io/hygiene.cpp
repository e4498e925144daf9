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
    // [vvar]) hold no keys. MCL_ONFAULT: a page is locked when it is first touched, not
    // all at once now; a key is written into a page, so its page is locked before the
    // key is in it. Faulting in every page of every library up front (most never run)
    // cost seconds at each start under emulation and resident memory for good.
    if (::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) {
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
