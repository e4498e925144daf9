#!/usr/bin/env bash
# Process binding (issue 5): nobody but the agent reads the memory of, or takes a socket
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

# Not traced, and not stopped (State t or T): running or sleeping.
assert_untraced() { # WHAT PID
    local st
    st=$(awk '/^TracerPid:/ { t = $2 } /^State:/ { s = $2 } END { print t, s }' "/proc/$2/status")
    assert_match "TracerPid and state of $1" '^0 [RSD]$' "$st"
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

# The guard event of one access by PID (uid UID, identity ID, executable EXE) to TARGET.
assert_ptrace_event() { # DECISION OP PID UID ID EXE TARGET_PID TARGET_ID
    local decision=$1 op=$2 pid=$3 uid=$4 id=$5 exe=$6 tpid=$7 tid=$8 err=null
    [[ $decision == deny ]] && err=EPERM
    assert_event action=ptrace "decision=$decision" "errno=$err" "ptrace_mode=${MODE_OF[$op]}" "tgid=$pid" \
        "uid=$uid" "spiffe_id=$id" "exe=$exe" "cgroup:$KW_CG:$KW_CG_ID" has:decided_by has:time
    assert_eq "target of the event (tgid spiffe_id comm)" "$tpid $tid $(cat "/proc/$tpid/comm")" \
        "$(jq -r '"\(.target.tgid) \(.target.spiffe_id) \(.target.comm)"' <<<"$KW_EVENT")"
}

# One refused attempt by a fresh unattested process of UID in the test cgroup: the exact
# errno from the exact call, exactly one guard event (and no other), a deny.
refused() { # UID TARGET_PID TARGET_ID OP ARGS...: runs "kw_guard_probe OP ARGS..."
    local uid=$1 tpid=$2 tid=$3 op=$4 pid
    shift 3
    ev_mark
    expect_errno "${ERRNO_OF[$op]}" as_workload --uid "$uid" --pidfile "$T/attacker.pid" "$ATTACKER" "$@"
    assert_match "the refused call" "^${CALL_OF[$op]//[()]/.}: ${ERRNO_OF[$op]} " "$KW_OUT"
    pid=$(cat "$T/attacker.pid")
    expect_one_event "the refusal of '$*' by uid $uid" '.type == "guard"'
    assert_ptrace_event deny "$op" "$pid" "$uid" unattested "$ATTACKER" "$tpid" "$tid"
    assert_event "decided_by~=are the agent's only"
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

# ---- the agent, by root in the cgroup ------------------------------------------------------
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
    for who in "$KW_UID $client_pid $KW_BILLING" "0 $KW_AGENT_PID unattested"; do
        read -r uid target tid <<<"$who"
        ev_mark
        expect_status 1 gdb_attach "$uid" "$target"
        assert_match "gdb -p $target as uid $uid" "ptrace: Operation not permitted" "$KW_OUT"
        expect_one_event "gdb's attach to $target" '.type == "guard"'
        assert_ptrace_event deny attach "$(cat "$T/gdb.pid")" "$uid" unattested "$(readlink -f "$(command -v gdb)")" \
            "$target" "$tid"
    done
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
allowed() { # DEBUGGER_EXE ID INDEX ENTRY OP: one access to the workload, let in
    local exe=$1 id=$2 index=$3 entry=$4 op=$5 pid
    ev_mark
    expect_ok as_workload --pidfile "$T/debugger.pid" "$exe" "$op" "$client_pid"
    pid=$(cat "$T/debugger.pid")
    expect_one_event "the debugger's $op" '.type == "guard"'
    assert_ptrace_event allow "$op" "$pid" "$KW_UID" "$id" "$exe" "$client_pid" "$KW_BILLING"
    assert_event "decided_by=allow_debuggers[$index] ($entry)"
    client_intact
}
allowed "$EXE_DEBUGGER" unattested 0 "$EXE_DEBUGGER" attach
assert_match "the listed debugger's attach" "^attach: stopped $client_pid, peeked 0x[0-9a-f]+ at 0x[0-9a-f]+, detached" "$KW_OUT"
allowed "$EXE_DEBUGGER" unattested 0 "$EXE_DEBUGGER" mem
assert_match "the listed debugger's read of /proc/PID/mem" "^mem: read 16 bytes at 0x[0-9a-f]+: 7f 45 4c 46 " "$KW_OUT"
allowed "$ID_DEBUGGER" "$DEBUGGER" 1 "$DEBUGGER" attach
assert_match "the debugger listed by identity" "^attach: stopped $client_pid, peeked " "$KW_OUT"

# A listed debugger is let into the memory, but the mTLS socket passes only to its owner's
# identity: the ptrace check allows (an allow event), file_receive refuses.
ev_mark
expect_errno EPERM as_workload --pidfile "$T/debugger.pid" "$EXE_DEBUGGER" getfd "$client_pid" "$client_fd" "stolen-$$"
assert_match "the debugger's pidfd_getfd of the mTLS socket" "^pidfd_getfd: EPERM " "$KW_OUT"
pid=$(cat "$T/debugger.pid")
expect_one_event "the debugger's pidfd access" '.type == "guard" and .action == "ptrace"'
assert_ptrace_event allow getfd "$pid" "$KW_UID" unattested "$EXE_DEBUGGER" "$client_pid" "$KW_BILLING"
expect_one_event "the refused socket" '.type == "guard" and .action == "fd_receive"'
assert_event decision=deny errno=EPERM "socket_owner=$KW_BILLING" "tgid=$pid" spiffe_id=unattested
assert_eq "guard events of the debugger's pidfd_getfd" 2 "$(ev_count '.type == "guard"')"
client_intact

stop_agent
