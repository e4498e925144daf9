#!/usr/bin/env bash
# Processes already running when the agent first loads are attested once from /proc:
# a python3 process matching exe + argv + uid + cgroup, started before the agent,
# reaches db afterwards; one running another script, same uid and cgroup, is refused, and
# so is one running the same script that dlopen'd a library its code set does not pin
# before the agent started (nobody checked that mapping; the kernel would have refused it
# under the identity): every executable mapping is read (python3 is not PIE here: its
# mappings sit below 0x10000000, where /proc/PID/maps pads addresses and map_files not).
# /proc labels only the thread-group leader, yet the memory belongs to every thread:
# root in the cgroup cannot read the attested process's memory through its second
# thread either (process_vm_readv(TID), /proc/TID/mem), while it can read the other's.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7191
setup_tools
install -m 0755 "$KW_TOOLS/kw_guard_probe" "$T/bin/kw_guard_probe"
make_cgroup
start_sink db "$PORT"
cat >"$T/late.py" <<'PY'
import os, socket, sys, threading, time
go, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4:
    import ctypes
    ctypes.CDLL(sys.argv[4])
threading.Thread(target=time.sleep, args=(280,), daemon=True).start()
deadline = time.time() + 240  # the agent starts meanwhile: slow under emulation
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit(200)
    time.sleep(0.1)
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(tag.encode())
    s.close()
except OSError as e:
    print("connect: %s" % e)
    sys.exit(e.errno or 255)
PY
cp "$T/late.py" "$T/other.py"
chmod 0644 "$T/late.py" "$T/other.py"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_PY", "uid": $KW_UID, "cgroup": "$KW_CG",
                                  "argv_prefix": ["$KW_PY", "$T/late.py"] } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON

KW_TIMEOUT=280 as_workload --pidfile "$T/late.pid" "$KW_PY" "$T/late.py" "$T/go" "$PORT" "late-$$" &
late=$!
KW_TIMEOUT=280 as_workload --pidfile "$T/other.pid" "$KW_PY" "$T/other.py" "$T/go" "$PORT" "other-$$" &
other=$!
install -m 0755 "$KW_TOOLS/kw_preload.so" "$T/bin/evil.so"
KW_TIMEOUT=280 as_workload --pidfile "$T/loaded.pid" "$KW_PY" "$T/late.py" "$T/go" "$PORT" "loaded-$$" "$T/bin/evil.so" &
loaded=$!
wait_until 10 "the python3 processes to start" test -s "$T/late.pid" -a -s "$T/other.pid" -a -s "$T/loaded.pid"
loaded_mapped() { grep -qF "$T/bin/evil.so" "/proc/$(cat "$T/loaded.pid")/maps"; }
wait_until 30 "the third python3 to map evil.so" loaded_mapped

start_agent "$T/policy.json"
grep -Eq "attested 1 of [0-9]+ running processes from /proc" "$T/agent.log" ||
    fail "agent did not attest exactly one running process: $(grep -E 'running processes' "$T/agent.log")"
assert_eq "identity of the running late.py" "$KW_BILLING" "$(kwarden_cli identity "$(cat "$T/late.pid")")"
assert_eq "identity of the running other.py" unattested "$(kwarden_cli identity "$(cat "$T/other.pid")")"
assert_eq "identity of the running late.py that dlopen'd evil.so" unattested \
    "$(kwarden_cli identity "$(cat "$T/loaded.pid")")"
assert_match "the agent's refusal names a mapping" \
    "process $(cat "$T/loaded.pid") not attested from /proc as workload 0: it maps .* executable" "$(cat "$T/agent.log")"

# The second thread of each: the task of /proc/PID/task that is not PID.
second_thread() { # PID
    local tid
    for tid in $(ls "/proc/$1/task"); do
        [[ $tid == "$1" ]] || { echo "$tid"; return 0; }
    done
    fail "process $1 has no second thread: $(ls "/proc/$1/task")"
}
late_pid=$(cat "$T/late.pid")
late_tid=$(second_thread "$late_pid")
other_tid=$(second_thread "$(cat "$T/other.pid")")
ev_mark
for op in vmread mem; do
    expect_ok as_workload --uid 0 "$T/bin/kw_guard_probe" "$op" "$other_tid"
    assert_match "$op through the unattested process's second thread" "^$op: read 16 bytes at " "$KW_OUT"
done
expect_no_event "reads of an unattested process" '.type == "guard"'
expect_errno EPERM as_workload --uid 0 "$T/bin/kw_guard_probe" vmread "$late_tid"
assert_match "process_vm_readv through the attested process's second thread" "^process_vm_readv: EPERM " "$KW_OUT"
expect_errno EACCES as_workload --uid 0 "$T/bin/kw_guard_probe" mem "$late_tid"
assert_match "/proc/TID/mem of the attested process's second thread" "^open /proc/PID/mem: EACCES " "$KW_OUT"
guard_events_at_least() { (($(ev_count '.type == "guard"') >= $1)); }
wait_until 10 "two guard events" guard_events_at_least 2
sleep 0.5 # a third would arrive right behind
assert_eq "guard events" 2 "$(ev_count '.type == "guard"')"
have=$(ev_select '.type == "guard"' | jq -r '"\(.action) \(.decision) \(.errno) \(.target.tgid) \(.target.spiffe_id)"' | sort)
assert_eq "guard events for the reads through the second thread" \
    "ptrace deny EACCES $late_pid $KW_BILLING"$'\n'"ptrace deny EPERM $late_pid $KW_BILLING" "$have"

touch "$T/go"
rc=0; wait "$late" || rc=$?
assert_eq "exit status of late.py (attested from /proc)" 0 "$rc"
wait_sink_data db "late-$$"
rc=0; wait "$other" || rc=$?
assert_eq "exit status of other.py (EPERM)" "$(errno_number EPERM)" "$rc"
rc=0; wait "$loaded" || rc=$?
assert_eq "exit status of the late.py that dlopen'd evil.so (EPERM)" "$(errno_number EPERM)" "$rc"
stop_agent
