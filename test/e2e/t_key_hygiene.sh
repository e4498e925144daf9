#!/usr/bin/env bash
# The agent's keys stay in its memory: read from outside, through /proc, the
# running agent's memory is locked (VmLck, and VmFlags "lo" on its heap and on every
# mapping the kernel can lock), and it is non-dumpable, so a same-uid process without
# CAP_SYS_PTRACE cannot read it. A control process with the same credentials that is
# dumpable can be read, so the refusal is the agent's dumpable flag, nothing else.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

setup_tools
make_attested
make_cgroup
write_billing_policy "$T/policy.json" 7141
# The agent and the reader both lack CAP_SYS_PTRACE and have otherwise equal
# capabilities: only the dumpable flag decides whether /proc/PID/environ can be read.
KW_AGENT_WRAP=(setpriv --bounding-set -sys_ptrace --)
start_agent "$T/policy.json"
kwarden_cli svid list --json | jq -e '.svids | length == 1' >/dev/null || fail "the agent holds no SVID"
pid=$KW_AGENT_PID

vmlck=$(awk '/^VmLck:/ { print $2 }' "/proc/$pid/status")
note "agent VmLck: ${vmlck} kB"
((vmlck > 0)) || fail "the agent has no locked memory (VmLck: $vmlck kB)"

# Every mapping the kernel can lock must be locked. VM_IO, VM_PFNMAP, VM_DONTEXPAND and
# VM_MIXEDMAP mappings (io, pf, de, mm: BPF ring buffers, [vvar], [vdso]) are never
# locked by mlockall and hold no heap.
"$KW_PY" - "/proc/$pid/smaps" <<'PY' || fail "agent mappings without VmFlags lo (see above)"
import sys
maps, current = [], None
for line in open(sys.argv[1]):
    first = line.split()[0]
    if "-" in first and not first.endswith(":"):
        parts = line.split()
        current = {"range": parts[0], "name": parts[5] if len(parts) > 5 else "[anon]"}
        maps.append(current)
    elif first == "VmFlags:":
        current["flags"] = set(line.split()[1:])
special = {"io", "pf", "de", "mm"}
unlocked = [m for m in maps if "lo" not in m["flags"] and not (m["flags"] & special) and m["name"] != "[vsyscall]"]
heap = [m for m in maps if m["name"] == "[heap]"]
print(f"{len(maps)} mappings, {len(unlocked)} lockable but unlocked, heap: {[sorted(m['flags']) for m in heap]}")
for m in unlocked:
    print("unlocked:", m["range"], m["name"], " ".join(sorted(m["flags"])))
if not heap or any("lo" not in m["flags"] for m in heap):
    print("the [heap] mapping is missing or not locked")
    sys.exit(1)
sys.exit(1 if unlocked else 0)
PY

setpriv --bounding-set -sys_ptrace -- sleep 60 &
control=$!
kw_track pids "$control"
sleep 0.2
expect_ok setpriv --bounding-set -sys_ptrace -- wc -c "/proc/$control/environ"
rc=0
out=$(setpriv --bounding-set -sys_ptrace -- cat "/proc/$pid/environ" 2>&1) || rc=$?
note "reading the agent's environ without CAP_SYS_PTRACE: status $rc: $out"
((rc != 0)) || fail "a same-uid process without CAP_SYS_PTRACE read the agent's /proc/PID/environ: it is dumpable"
assert_match "the refusal" "Permission denied" "$out"
rc=0
out=$(setpriv --bounding-set -sys_ptrace -- dd if="/proc/$pid/mem" bs=1 count=1 2>&1) || rc=$?
((rc != 0)) || fail "a same-uid process without CAP_SYS_PTRACE opened the agent's /proc/PID/mem"
assert_match "the /proc/PID/mem refusal" "Permission denied" "$out"

stop_agent
