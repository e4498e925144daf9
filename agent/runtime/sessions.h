// The calls an enrolled process holds, served: the decision whether a held connect(),
// accept() or sendto()/sendmsg() is the agent's to serve, and the mutual-TLS sessions
// that serve it, on the ports alone (a CallPort for the process, the kernel port, the
// loop), so that all of it runs in unit tests without root.
//
// A held connect() to a mutual-TLS destination: the process's kernel identity is read
// through its pidfd, the policy checked, the socket taken (a copy of the app's descriptor,
// one open file), marked so that only the agent moves data on it, connected, the TLS 1.3
// handshake run with the process's SVID, the server's session tickets read, kTLS
// installed, the socket marked managed, and connect() returns 0. Any failure shuts the
// socket down, leaves the handshake mark on it for good (it never carries plaintext) and
// fails connect() (EPERM for a policy refusal, ECONNREFUSED and the like otherwise), with
// an event. A held accept() on a workload's mutual-TLS listen port: the agent accepts on
// its copy of the listener, handshakes as server, installs kTLS and hands the connection
// in as the call's result; a connection whose handshake fails never reaches the app.
// SIGKILL is the one signal that ends a held call: a session watches the caller's pidfd
// and gives up as soon as the process exits.
#pragma once

#include <sys/types.h>

#include <memory>

#include "enroll/call.h"
#include "enroll/journal.h"
#include "runtime/calls.h"
#include "runtime/session.h"

namespace kw::runtime {

// Serves CALL, held by the process PID (for logs) through CALLS: answers it at once, or
// starts the session that answers it later.
void serve_call(const Context& ctx, std::shared_ptr<CallPort> calls, pid_t pid, const enroll::Call& call);

// A call a previous agent received and died before answering (journal adoption).
// Nothing was handed to the app yet: the socket's flags are put back and the call is
// served anew, except a connect whose socket the previous agent had already connected (a
// handshake cut in the middle cannot be resumed): that one is shut down and fails with
// ECONNREFUSED.
void resume_call(const Context& ctx, std::shared_ptr<CallPort> calls, pid_t pid, const enroll::JournalEntry& entry);

}  // namespace kw::runtime
