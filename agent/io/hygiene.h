// Key hygiene of the agent process: the private keys of the CA and of
// every SVID live in BoringSSL's heap objects, so the whole process is locked in memory
// (nothing reaches swap) and made non-dumpable (no core file, no ptrace or /proc/PID/mem
// by processes without CAP_SYS_PTRACE). Called before the first key exists.
#pragma once

#include "core/result.h"

namespace kw::io {

// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) and PR_SET_DUMPABLE 0. Fails, with the
// reason and the fix, if either cannot be done: the agent does not hold keys in swappable
// memory.
Result<void> protect_key_memory();

}  // namespace kw::io
