#!/usr/bin/env bash
# The agent's layers are enforced (scripts/check-layers, run by every build): the tree as
# it is passes, and each deliberate wrong include, made in a copy, fails the check with
# the file and the rule it breaks.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$top/scripts/check-layers" || fail "the tree as it is breaks its layers"

# LAYER_FILE INCLUDE EXPECTED: a copy of agent/ with INCLUDE added to LAYER_FILE fails.
try() {
    rm -rf "$work/tree" && mkdir -p "$work/tree" && cp -r "$top/agent" "$work/tree/agent"
    printf '#include %s\n' "$2" >>"$work/tree/agent/$1"
    local out rc=0
    out=$("$top/scripts/check-layers" --root "$work/tree" 2>&1) || rc=$?
    ((rc != 0)) || fail "including $2 from agent/$1 passed the check"
    grep -qF "agent/$1:" <<<"$out" || fail "the check did not name agent/$1: $out"
    grep -qF "$3" <<<"$out" || fail "the check did not say '$3': $out"
    echo "refused: $2 in agent/$1: $(head -n 1 <<<"$out")"
}
try core/policy.h '<bpf/libbpf.h>' "(libbpf)"
try core/gate.cpp '<boost/asio.hpp>' "(Boost.Asio)"
try core/compile.h '<openssl/ssl.h>' "(BoringSSL)"
try identity/x509.h '<bpf/bpf.h>' "(libbpf)"
try tls/handshake.h '<boost/asio/ip/tcp.hpp>' "(Boost.Asio)"
try identity/x509.h '"io/agent.h"' "io/ is not below it"
try core/policy.h '"tls/handshake.h"' "tls/ is not below it"
try core/compile.cpp '"host/linux_host_view.h"' "host/ is not below it"
try enroll/filter.h '"bpf/enforcer.h"' "bpf/ is not below it"
try runtime/held_call.h '"io/enrol_socket.h"' "io/ is not below it"
try io/agent.cpp '"testhooks/key_dump.h"' "testhooks/ is not below it"
try cli/cli.cpp '"testhooks/key_dump.h"' "testhooks/ is not below it"
try runtime/events.cpp '<boost/asio.hpp>' "(Boost.Asio)"
try core/policy.cpp '"core/compile.h"' "the parser does not include the compiler"
