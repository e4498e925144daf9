#!/usr/bin/env bash
# Host test: the agent's numeric options refuse bad values with exit 2 and a message
# that names the option and what it takes, before anything touches the kernel; a good
# value gets past parsing (the agent then stops at a later check: exit 1, and the
# message no longer names the option). Unprivileged; registered with ctest.
#   test/cli/agent_args_test.sh KWARDEN
set -Euo pipefail
KWARDEN=$1
T=$(mktemp -d /tmp/kw-agent-args.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

refused() { # OPTION VALUE EXPECTED_TEXT
    local out rc
    out=$("$KWARDEN" agent "$1" "$2" --state-dir "$T/state" --policy "$T/missing.json" 2>&1)
    rc=$?
    [[ $rc == 2 ]] || fail "agent $1 '$2': exit $rc, expected 2: $out"
    [[ $out == *"$1: "*"$3"* ]] || fail "agent $1 '$2': expected a message naming $1 and '$3', got: $out"
    echo "ok: $1 '$2' refused: ${out%%$'\n'*}"
}
accepted() { # OPTION VALUE
    local out rc
    out=$("$KWARDEN" agent "$1" "$2" --state-dir "$T/state" --policy "$T/missing.json" 2>&1)
    rc=$?
    [[ $rc != 2 && $out != *"$1: "* ]] || fail "agent $1 '$2' was refused (exit $rc): $out"
    echo "ok: $1 '$2' parsed (the agent stopped later, exit $rc)"
}

for bad in -1 65 two 2x "" 18446744073709551617; do
    refused --handshake-workers "$bad" "is not 'auto' (one per online CPU) or a number from 0"
done
for good in 0 2 64 auto; do accepted --handshake-workers "$good"; done
refused --handshake-timeout 10 "" # a duration needs its unit
accepted --handshake-timeout 3s
refused --metrics-address 127.0.0.1 ""
refused --metrics-address localhost:9977 ""
accepted --metrics-address none
