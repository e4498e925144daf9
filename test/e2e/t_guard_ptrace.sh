#!/usr/bin/env bash
# Process binding: nobody but the agent reads the memory of, or takes a socket
# from, an attested or enrolled process or the agent. The workload is an enrolled,
# attested process (a copy of kw_guard_probe, "hold") whose mTLS connection to
# `openssl s_server` runs on kTLS. An unattested process with the same uid and cgroup,
# and then root in that cgroup, try PTRACE_ATTACH, PTRACE_SEIZE (uid 1000), open+read of
# /proc/PID/mem, process_vm_readv and pidfd_getfd of the kTLS socket; root tries the same
# on the agent; gdb -p too. Each attempt fails with the errno the kernel surfaces
# (EPERM; EACCES for /proc/PID/mem), gives exactly one guard event (action ptrace, deny,
# the PTRACE_MODE bits, the target and the acting process), and leaves the target as it
# was: running, untraced, its connection still answering its peer (the agent: answering
# `kwarden status`). PTRACE_MODE_READ (/proc/PID/fd, /proc/PID/status) stays open. The
# test can fail: the same operations on an unattested, unenrolled process of the same
# uid succeed (the stolen socket writes to its peer) with no guard event. Debuggers the
# policy lists (allow_debuggers) get in: one by its executable's path, one by its SPIFFE
# ID, each access an allow event naming its allow_debuggers entry; the listed debugger
# still cannot take the mTLS socket (pidfd_getfd: EPERM, an fd_receive event).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7211
PLAIN=7212
LEDGER=spiffe://$KW_TD/ledger
DEBUGGER=spiffe://$KW_TD/debugger
[[ -x $KW_TOOLS/kw_guard_probe ]] || fail "tool $KW_TOOLS/kw_guard_probe is missing: build it first (cmake target kw_guard_probe)"
setup_tools
WORKLOAD=$T/bin/billing-probe  # attested: the workload
ATTACKER=$T/bin/kw_guard_probe # unattested, not listed
EXE_DEBUGGER=$T/bin/exe-debugger
ID_DEBUGGER=$T/bin/id-debugger # attested as $DEBUGGER
for f in "$WORKLOAD" "$ATTACKER" "$EXE_DEBUGGER" "$ID_DEBUGGER"; do
    install -m 0755 "$KW_TOOLS/kw_guard_probe" "$f"
done
make_cgroup
make_mtls_peer "$LEDGER"
# Yama (ptrace_scope 1) would refuse same-uid attaches before the guard is asked: off,
# so that what refuses here is kwarden, and the controls show that nothing else does.
[[ -e /proc/sys/kernel/yama/ptrace_scope ]] && kw_sysctl kernel.yama.ptrace_scope 0
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$KW_BILLING", "selectors": { "exe": "$WORKLOAD", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$DEBUGGER", "selectors": { "exe": "$ID_DEBUGGER", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$LEDGER" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "ledger" } ],
  "allow_debuggers": ["$EXE_DEBUGGER", "$DEBUGGER"] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"
expect_one_event "the guard turned on at start" '.type == "protection"'
assert_event guard=on "by=agent start"
start_s_server "$PORT"
start_sink plain "$PLAIN"

# The workload: enrolled, attested, holding its mTLS connection (kTLS) to s_server.
start_mtls_holder client "$WORKLOAD" "$KW_BILLING" "$LEDGER" "$PORT"
client_pid=$KW_HOLD_PID
client_fd=$KW_HOLD_FD
expect_ok kwarden_cli identity "$client_pid"
assert_eq "identity of the workload" "$KW_BILLING" "$KW_OUT"
ss -Htnp state established "( dport = :$PORT )" | grep -qF "pid=$client_pid,fd=$client_fd)" ||
    fail "fd $client_fd of the workload is not its connection to port $PORT: $(ss -Htnp state established "( dport = :$PORT )")"

# The control: an unattested, unenrolled process of the same uid and cgroup, holding a
# plain connection to a sink.
start_holder control "$ATTACKER" 127.0.0.1 "$PLAIN"
control_pid=$KW_HOLD_PID
control_fd=$KW_HOLD_FD

# Not traced, and not stopped (State t or T) or dead: running or sleeping. A sleep can be
# interruptible (S), uninterruptible (D) or idle (I: an uninterruptible sleep that does not
# count as load; some kernel waits use it, and CI saw the agent in it on 6.12).
assert_untraced() { # WHAT PID
    local st
    st=$(awk '/^TracerPid:/ { t = $2 } /^State:/ { s = $2 } END { print t, s }' "/proc/$2/status")
    assert_match "TracerPid and state of $1" '^0 [RSDI]$' "$st"
}
# After an attempt on the workload: running, untraced, its connection works.
client_intact() {
    kw_pid_alive "$client_pid" || fail "the workload ($client_pid) is gone: $(cat "$T/client.log")"
    assert_untraced "the workload" "$client_pid"
    holder_round_trip client
}
agent_intact() {
    kw_pid_alive "$KW_AGENT_PID" || fail "the agent is gone"
    assert_untraced "the agent" "$KW_AGENT_PID"
    kw_agent_ready || fail "the agent stopped answering 'kwarden status'"
}

# What each operation surfaces when the guard refuses it (errno, the failing call) and
# the PTRACE_MODE bits the kernel asks with: ATTACH|REALCREDS (0x12), or ATTACH|FSCREDS
# (0x0a) for /proc/PID/mem, whose mm_access() turns the refusal into EACCES.
declare -A ERRNO_OF=([attach]=EPERM [seize]=EPERM [mem]=EACCES [vmread]=EPERM [getfd]=EPERM)
declare -A CALL_OF=([attach]="ptrace(PTRACE_ATTACH)" [seize]="ptrace(PTRACE_SEIZE)" [mem]="open /proc/PID/mem"
    [vmread]="process_vm_readv" [getfd]="pidfd_getfd")
declare -A MODE_OF=([attach]=18 [seize]=18 [mem]=10 [vmread]=18 [getfd]=18)

# The guard events a group of attempts must give, one line per attempt (each attempt is
# a process of its own): "TGID ACTION DECISION ERRNO MODE UID SPIFFE_ID EXE CGROUP |
# TARGET_TGID TARGET_ID TARGET_COMM | WHY". WHY is the allow_debuggers entry for an
# allow, "agent only" for a deny that says so.
WANT=()
want_event() { # DECISION OP PID UID ID EXE TARGET_PID TARGET_ID [ENTRY]
    local err=null why="agent only"
    [[ $1 == deny ]] && err=${ERRNO_OF[$2]} # the event says what the caller got
    [[ $1 == allow ]] && why=$9
    WANT+=("$3 ptrace $1 $err ${MODE_OF[$2]} $4 $5 $6 $KW_CG | $7 $8 $(cat "/proc/$7/comm") | $why")
}
# The ptrace guard events since the mark are exactly WANT, one per attempt, and there are
# no other guard events but EXTRA (default 0) of other actions.
expect_guard_events() { # WHAT [EXTRA]
    local want have total=$((${#WANT[@]} + ${2:-0}))
    want=$(printf '%s\n' "${WANT[@]}" | sort)
    wait_until 10 "$total guard events for $1 (have $(ev_count '.type == "guard"'))" kw_guard_events_at_least "$total"
    sleep 0.5 # one too many would arrive right behind
    have=$(ev_select '.type == "guard" and .action == "ptrace"' | jq -r '"\(.tgid) \(.action) \(.decision) \(.errno) \(.ptrace_mode) \(.uid) \(.spiffe_id) \(.exe) \(.cgroup) | \(.target.tgid) \(.target.spiffe_id) \(.target.comm) | \(.decided_by | if test("^allow_debuggers") or (test("are the agent.s only") | not) then . else "agent only" end)"' | sort)
    assert_eq "ptrace guard events for $1 (one per attempt)" "$want" "$have"
    assert_eq "guard events for $1" "$total" "$(ev_count '.type == "guard"')"
    note "$total guard events for $1, as expected"
    WANT=()
}
kw_guard_events_at_least() { (($(ev_count '.type == "guard"') >= $1)); }

# One refused attempt by a fresh unattested process of UID in the test cgroup: the exact
# errno from the exact call; its guard event (a deny) is added to WANT.
refused() { # UID TARGET_PID TARGET_ID OP ARGS...: runs "kw_guard_probe OP ARGS..."
    local uid=$1 tpid=$2 tid=$3 op=$4
    shift 3
    expect_errno "${ERRNO_OF[$op]}" as_workload --uid "$uid" --pidfile "$T/attacker.pid" "$ATTACKER" "$@"
    assert_match "the refused call" "^${CALL_OF[$op]//[()]/.}: ${ERRNO_OF[$op]} " "$KW_OUT"
    want_event deny "$op" "$(cat "$T/attacker.pid")" "$uid" unattested "$ATTACKER" "$tpid" "$tid"
}

# ---- controls: the same operations on an unguarded process of the same uid succeed -------
ev_mark
for op in attach seize; do
    expect_ok as_workload "$ATTACKER" "$op" "$control_pid"
    assert_match "$op of the control" "^$op: stopped $control_pid, peeked 0x[0-9a-f]+ at 0x[0-9a-f]+, detached" "$KW_OUT"
done
for op in mem vmread; do
    expect_ok as_workload "$ATTACKER" "$op" "$control_pid"
    # The first readable mapping is the executable's ELF header.
    assert_match "$op of the control" "^$op: read 16 bytes at 0x[0-9a-f]+: 7f 45 4c 46 " "$KW_OUT"
done
stolen="stolen-$$-$RANDOM"
expect_ok as_workload "$ATTACKER" getfd "$control_pid" "$control_fd" "$stolen"
assert_match "pidfd_getfd of the control's socket" "^getfd: got fd [0-9]+: socket SOCK_STREAM peer 127.0.0.1:$PLAIN" "$KW_OUT"
wait_sink_data plain "$stolen"
assert_untraced "the control" "$control_pid"
expect_no_event "accesses to an unguarded process" '.type == "guard"'

# ---- the attested, enrolled workload ----------------------------------------------------------
ev_mark
for uid in "$KW_UID" 0; do
    ops=(attach mem vmread)
    [[ $uid != 0 ]] && ops+=(seize)
    for op in "${ops[@]}"; do
        refused "$uid" "$client_pid" "$KW_BILLING" "$op" "$client_pid"
        client_intact
    done
    refused "$uid" "$client_pid" "$KW_BILLING" getfd "$client_pid" "$client_fd" "stolen-$$"
    client_intact
done
expect_guard_events "the attempts on the workload"

# ---- the agent, by root in the cgroup ------------------------------------------------------
ev_mark
agent_fd=$(find "/proc/$KW_AGENT_PID/fd" -mindepth 1 -printf '%f\n' | sort -n | awk '$1 > 2' | head -n 1)
for op in attach mem vmread; do
    refused 0 "$KW_AGENT_PID" unattested "$op" "$KW_AGENT_PID"
    agent_intact
done
refused 0 "$KW_AGENT_PID" unattested getfd "$KW_AGENT_PID" "$agent_fd"
agent_intact
# The agent's memory through its other threads, if it has any (each thread is a task of
# its own to the kernel: /proc/TID/mem, process_vm_readv(TID) reach the same memory).
threads=("/proc/$KW_AGENT_PID/task/"*)
note "the agent has ${#threads[@]} thread(s)"
for task in "${threads[@]}"; do
    [[ ${task##*/} == "$KW_AGENT_PID" ]] || refused 0 "$KW_AGENT_PID" unattested vmread "${task##*/}"
done
agent_intact
expect_guard_events "the attempts on the agent"

# ---- gdb, as a person would try ------------------------------------------------------------
if command -v gdb >/dev/null; then
    gdb_attach() { # UID PID
        KW_TIMEOUT=120 as_workload --uid "$1" --pidfile "$T/gdb.pid" gdb -nx -batch -iex 'set debuginfod enabled off' -p "$2" -ex 'info proc'
    }
    ev_mark
    expect_ok gdb_attach "$KW_UID" "$control_pid"
    assert_match "gdb -p on the control" "process $control_pid" "$KW_OUT"
    expect_no_event "gdb on an unguarded process" '.type == "guard"'
    assert_untraced "the control, after gdb" "$control_pid"
    ev_mark
    for who in "$KW_UID $client_pid $KW_BILLING" "0 $KW_AGENT_PID unattested"; do
        read -r uid target tid <<<"$who"
        expect_status 1 gdb_attach "$uid" "$target"
        assert_match "gdb -p $target as uid $uid" "ptrace: Operation not permitted" "$KW_OUT"
        want_event deny attach "$(cat "$T/gdb.pid")" "$uid" unattested "$(readlink -f "$(command -v gdb)")" "$target" "$tid"
    done
    expect_guard_events "gdb's attaches"
    client_intact
    agent_intact
else
    note "gdb is not installed in the VM: raw PTRACE_ATTACH only"
fi

# ---- PTRACE_MODE_READ stays open ----------------------------------------------------------------
ev_mark
expect_ok as_workload ls "/proc/$client_pid/fd"
grep -qx "$client_fd" <<<"$KW_OUT" || fail "uid $KW_UID does not see fd $client_fd in /proc/$client_pid/fd: $KW_OUT"
expect_ok as_workload cat "/proc/$client_pid/status"
assert_match "the workload's status, read by uid $KW_UID" "Pid:"$'\t'"$client_pid" "$KW_OUT"
expect_no_event "PTRACE_MODE_READ accesses" '.type == "guard"'

# ---- the debuggers the policy lists ---------------------------------------------------------------
allowed() { # DEBUGGER_EXE ID ENTRY OP: one access to the workload, let in by allow_debuggers[ENTRY]
    local exe=$1 id=$2 entry=$3 op=$4
    expect_ok as_workload --pidfile "$T/debugger.pid" "$exe" "$op" "$client_pid"
    want_event allow "$op" "$(cat "$T/debugger.pid")" "$KW_UID" "$id" "$exe" "$client_pid" "$KW_BILLING" "$entry"
}
ev_mark
allowed "$EXE_DEBUGGER" unattested "allow_debuggers[0] ($EXE_DEBUGGER)" attach
assert_match "the listed debugger's attach" "^attach: stopped $client_pid, peeked 0x[0-9a-f]+ at 0x[0-9a-f]+, detached" "$KW_OUT"
client_intact
allowed "$EXE_DEBUGGER" unattested "allow_debuggers[0] ($EXE_DEBUGGER)" mem
assert_match "the listed debugger's read of /proc/PID/mem" "^mem: read 16 bytes at 0x[0-9a-f]+: 7f 45 4c 46 " "$KW_OUT"
client_intact
allowed "$ID_DEBUGGER" "$DEBUGGER" "allow_debuggers[1] ($DEBUGGER)" attach
assert_match "the debugger listed by identity" "^attach: stopped $client_pid, peeked " "$KW_OUT"
client_intact
expect_guard_events "the listed debuggers"

# A listed debugger is let into the memory, but the mTLS socket passes only to its owner's
# identity: the ptrace check allows (an allow event), file_receive refuses (another).
ev_mark
expect_errno EPERM as_workload --pidfile "$T/debugger.pid" "$EXE_DEBUGGER" getfd "$client_pid" "$client_fd" "stolen-$$"
assert_match "the debugger's pidfd_getfd of the mTLS socket" "^pidfd_getfd: EPERM " "$KW_OUT"
pid=$(cat "$T/debugger.pid")
want_event allow getfd "$pid" "$KW_UID" unattested "$EXE_DEBUGGER" "$client_pid" "$KW_BILLING" \
    "allow_debuggers[0] ($EXE_DEBUGGER)"
expect_guard_events "the debugger's pidfd_getfd" 1
expect_one_event "the refused socket" '.type == "guard" and .action == "fd_receive"'
assert_event decision=deny errno=EPERM "socket_owner=$KW_BILLING" "tgid=$pid" spiffe_id=unattested "exe=$EXE_DEBUGGER"
client_intact

stop_agent
