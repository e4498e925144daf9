#!/usr/bin/env bash
# test/e2e/run.sh [TEST...]: the guest-side entry point of the VM end-to-end tests.
#
#   vmtest/run --kernel 6.12 -- test/e2e/run.sh            # every test/e2e/t_*.sh
#   vmtest/run --kernel 6.1 -- test/e2e/run.sh t_audit_mode # some (t_ prefix, .sh optional)
#
# Each test runs in its own bash, in a fresh scratch directory on a tmpfs under /tmp
# (the guest's /tmp is an overlay of the host's, whose inodes are not what the kernel
# attests), bounded by KW_TEST_TIMEOUT seconds (default 300, or the test's own
# "# kw-timeout: S"), and is cleaned up after even when it failed or timed out: agent,
# processes, cgroups, netns, pinned BPF state.
# Prints "PASS name" or "FAIL name: reason" per test, then "N passed, M failed"; exits
# non-zero when a test failed or none ran.
#
# Environment: KW_BUILD (default $TOP/build) holds kwarden and e2e-tools/;
# KW_E2E_VERBOSE=1 prints every test's log, not only a failed one's.
# Refuses to run outside the VM: the tests deny traffic and change sysctls.
set -uo pipefail

if [[ -z ${KWARDEN_VM_KERNEL:-} ]]; then
    echo "test/e2e/run.sh: refusing to run outside the VM (KWARDEN_VM_KERNEL is not set); use: vmtest/run -- test/e2e/run.sh" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
KW_LIB_RUNNER=1
# shellcheck source=test/e2e/lib.sh
source "$here/lib.sh"

tests=()
if [[ $# -gt 0 ]]; then
    for name in "$@"; do
        name=${name%.sh}
        name=${name#t_}
        [[ -f $here/t_$name.sh ]] || { echo "test/e2e/run.sh: no test t_$name.sh in $here" >&2; exit 2; }
        tests+=("t_$name")
    done
else
    for f in "$here"/t_*.sh; do
        [[ -f $f ]] && tests+=("$(basename "$f" .sh)")
    done
fi

mkdir -p "$KW_SCRATCH_ROOT"
if ! mountpoint -q "$KW_SCRATCH_ROOT"; then
    mount -t tmpfs -o mode=0755 kwe2e "$KW_SCRATCH_ROOT" || { echo "test/e2e/run.sh: cannot mount a tmpfs on $KW_SCRATCH_ROOT" >&2; exit 2; }
fi

echo "e2e: kernel $(uname -r) (KWARDEN_VM_KERNEL=$KWARDEN_VM_KERNEL), build $KW_BUILD, ${#tests[@]} test(s)"
if [[ -e /sys/fs/bpf/kwarden ]]; then
    echo "e2e: /sys/fs/bpf/kwarden exists before any test: tearing it down"
    "$KWARDEN" teardown || true
fi

# The event schema validator, started once: importing jsonschema costs seconds under
# emulation. A validator that died answers nothing, and the test it was asking for fails.
coproc VALIDATOR { exec /usr/bin/python3 "$here/validate_events.py" --serve "$TOP/policy/events.schema.json"; }
# (The coprocess's descriptors are not inherited by the tests: bash keeps them to itself.)
validate_events() { # FILE... -> 0 when every line matches; the answer on stdout
    local IFS=$'\t' answer=""
    if [[ -n ${VALIDATOR_PID:-} ]]; then
        trap '' PIPE # a validator gone since the check: a failed write, not a killed runner
        { printf '%s\n' "$*" >&"${VALIDATOR[1]}" && read -r -t 120 answer <&"${VALIDATOR[0]}"; } 2>/dev/null
        trap - PIPE
    fi
    echo "${answer:-the event validator did not answer (it exited or hung)}"
    [[ $answer == ok* ]]
}

passed=0
failed=0
for t in "${tests[@]}"; do
    scratch=$(mktemp -d "$KW_SCRATCH_ROOT/$t.XXXXXX")
    chmod 0755 "$scratch"
    start=$SECONDS
    # A test that walks many cases may raise its own bound ("# kw-timeout: S" in its
    # header, at most 600); KW_TEST_TIMEOUT overrides every bound.
    limit=$(sed -n '1,20s/^# kw-timeout: \([0-9]\{1,3\}\)$/\1/p' "$here/$t.sh" | head -n 1)
    ((limit > 0 && limit <= 600)) || limit=300
    limit=${KW_TEST_TIMEOUT:-$limit}
    T=$scratch timeout -k 10 "$limit" bash "$here/$t.sh" >"$scratch/test.log" 2>&1
    rc=$?
    kw_cleanup "$scratch" >>"$scratch/test.log" 2>&1
    # Every event a passing test saw must match the documented schema.
    events=("$scratch"/events*.jsonl)
    if [[ $rc -eq 0 && -e ${events[0]} ]] && ! validate_events "${events[@]}" >>"$scratch/test.log"; then
        echo "FAIL: events do not match policy/events.schema.json: $(tail -n 1 "$scratch/test.log")" >>"$scratch/test.log"
        rc=1
    fi
    took=$((SECONDS - start))
    if [[ $rc -eq 0 ]]; then
        echo "PASS $t (${took}s)"
        [[ ${KW_E2E_VERBOSE:-0} == 1 ]] && sed 's/^/  | /' "$scratch/test.log"
        passed=$((passed + 1))
        continue
    fi
    failed=$((failed + 1))
    reason=$(grep -m1 '^FAIL: ' "$scratch/test.log" | cut -c7-)
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        reason="timed out after ${limit}s${reason:+ (first failure: $reason)}"
    fi
    echo "FAIL $t: ${reason:-exit status $rc}"
    echo "---- $t log ($scratch/test.log)"
    sed 's/^/  | /' "$scratch/test.log" | tail -n 80
    if [[ -f $scratch/agent.log ]]; then
        echo "---- $t agent log (tail)"
        tail -n 40 "$scratch/agent.log" | sed 's/^/  | /'
    fi
    for ev in "$scratch"/events*.jsonl; do
        [[ -f $ev ]] || continue
        echo "---- $t $(basename "$ev") (tail)"
        tail -n 10 "$ev" | sed 's/^/  | /'
    done
    echo "----"
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
