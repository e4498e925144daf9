#!/usr/bin/env bash
# The shipped container profile (deploy/seccomp/kwarden.json) is what scripts/seccomp-profile
# makes of Debian's default container profile, and passes its check: never weaker than the
# default, the agent's traps in place, no two rules of a syscall that could disagree. Each
# deliberate weakening, made in a copy, fails the check with what it found.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
default=$top/.cache/containers-common/seccomp.json
shipped=$top/deploy/seccomp/kwarden.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[[ -f $default ]] || fail "$default is missing: run scripts/install-deps.sh"
"$top/scripts/seccomp-profile" check "$default" "$shipped" || fail "the shipped profile fails its check"

# FILTER EXPECTED: the shipped profile changed by the jq FILTER fails, saying EXPECTED.
try() {
    jq "$1" "$shipped" >"$work/p.json" || fail "jq: $1"
    local out rc=0
    out=$("$top/scripts/seccomp-profile" check "$default" "$work/p.json" 2>&1) || rc=$?
    ((rc != 0)) || fail "'$1' passed the check"
    grep -qF -- "$2" <<<"$out" || fail "the check of '$1' did not say '$2': $out"
    echo "refused: $1: $(grep -F -- "$2" <<<"$out" | head -n 1)"
}
# A raw socket no longer waits for the agent.
try '(.syscalls[] | select(.names == ["socket"] and .args[0].value == 17)).action = "SCMP_ACT_ALLOW"' \
    "socket(17, 3, 0, 0, 0, 0): SCMP_ACT_ALLOW, expected SCMP_ACT_NOTIFY"
# connect runs untrapped.
try '(.syscalls[] | select(.names == ["accept", "accept4", "connect"])).action = "SCMP_ACT_ALLOW"' \
    "connect(3, 0, 16, 0, 0, 0): SCMP_ACT_ALLOW, expected SCMP_ACT_NOTIFY"
# A syscall the default does not allow (add_key: the kernel keyring is not namespaced).
try '.syscalls += [{"names": ["add_key"], "action": "SCMP_ACT_ALLOW"}]' "add_key(0, 0, 0, 0, 0, 0): SCMP_ACT_ALLOW where the default refuses"
# An unconditional socket() rule would hide the conditional ones.
try '.syscalls += [{"names": ["socket"], "action": "SCMP_ACT_ALLOW"}]' "socket: an unconditional rule beside others: it hides them"
# Overlapping rules of one syscall with different actions.
try '.syscalls += [{"names": ["sendto"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 3, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]' \
    "rules with different actions match"
# io_uring would submit connects the listener never sees.
try '(.syscalls[] | select(.names == ["io_uring_setup"])) |= {names, action: "SCMP_ACT_ALLOW"}' \
    "io_uring_setup must fail with ENOSYS"
# A listener without the killable wait is refused by the agent; another ABI is untrapped.
try '.flags = []' "flags lack SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
try '.architectures += ["SCMP_ARCH_X86"]' "architectures must be x86-64 alone"
