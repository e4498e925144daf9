#!/usr/bin/env bash
# vmtest/patch-stress.sh [ITERATIONS]: attaches and detaches kwarden's BPF programs in a
# loop (agent start, SIGKILL, teardown) while two processes walk paths through the hooked
# inode_permission. Reproduces the multi-threaded TCG crash vmtest/run avoids:
#
#   vmtest/run --accel tcg -- vmtest/patch-stress.sh 100      # dies within ~20 iterations
#   vmtest/run -- vmtest/patch-stress.sh 100                  # single-threaded: passes
#
# Guest only (it attaches LSM programs); KW_BUILD as for the e2e tests (default build/).
set -uo pipefail
[[ -n ${KWARDEN_VM_KERNEL:-} ]] || { echo "patch-stress.sh: run it in the VM: vmtest/run -- vmtest/patch-stress.sh" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
K=${KW_BUILD:-$top/build}/kwarden
[[ -x $K ]] || { echo "patch-stress.sh: no agent at $K: run 'make build' first" >&2; exit 2; }
n=${1:-100}
s=$(mktemp -d /tmp/kw-patch-stress.XXXXXX)
walkers=()
for _ in 1 2; do
    (while :; do find /usr/lib /usr/share -maxdepth 3 >/dev/null 2>&1; done) &
    walkers+=($!)
done
trap 'kill "${walkers[@]}" 2>/dev/null; "$K" teardown >/dev/null 2>&1' EXIT
for ((i = 1; i <= n; i++)); do
    "$K" agent --state-dir "$s/state" --events "$s/events.jsonl" --admin-socket "$s/admin.sock" \
        --enroll-socket "$s/enroll.sock" --holder-socket "$s/holder.sock" >"$s/agent.log" 2>&1 &
    pid=$!
    for ((j = 0; j < 600; j++)); do
        "$K" status --admin-socket "$s/admin.sock" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "patch-stress.sh: agent exited: $(tail -n 5 "$s/agent.log")" >&2; exit 1; }
        sleep 0.1
    done
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    "$K" teardown >/dev/null || { echo "patch-stress.sh: teardown failed at iteration $i" >&2; exit 1; }
    echo "iteration $i of $n: attached and detached"
done
