// Test builds only (the kwarden-testhooks executable, agent/testhooks/main.cpp): the
// agent writes the secrets it holds to a file, so that test/e2e/t_key_isolation.sh can
// search the memory of enrolled processes for them and prove none ever got there. The
// release `kwarden` binary has none of this: the hooks reach the agent as functions in
// its options (io::AgentOptions::Hooks), set only by the test build's main, and
// test/cli/testhooks_compiled_out.sh checks the binary.
//
// The file (opened 0600, appended to) gets one line per record, fields as name=value,
// byte strings as lowercase hex:
//   svid spiffe_id=ID serial=HEX key=SCALAR
//     when an SVID is issued or rotated; SCALAR is the P-256 private scalar, 32 bytes
//     big-endian (BoringSSL keeps it as little-endian words: a scanner looks for both);
//   tls conn=N role=client|server dir=tx|rx tgid=PID spiffe_id=ID local=A:P peer=A:P
//       cipher=NAME secret=HEX key=HEX iv=HEX salt=HEX rec_seq=HEX crypto_info=HEX
//     for each direction of each kTLS install: the traffic secret, and the fields of the
//     crypto_info the kernel was given (crypto_info: the whole struct, as installed).
#pragma once

#include <sys/types.h>

#include <string>

#include "core/result.h"
#include "identity/svid_store.h"
#include "tls/ktls.h"

namespace kw::testhooks {

// Opens PATH for the records below; until then they write nothing.
Result<void> open_key_dump(const std::string& path);

// Writes every SVID of STORE not written before (by serial): call after each issue or
// rotation.
void dump_svid_keys(const identity::SvidStore& store);

// Writes both directions of KEYS, just installed on FD, the socket of process TGID.
void dump_traffic_keys(const char* role, pid_t tgid, const std::string& spiffe_id, int fd,
                       const tls::TrafficKeys& keys);

}  // namespace kw::testhooks
