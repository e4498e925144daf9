#!/usr/bin/env bash
# Process binding of mTLS sockets: a socket the agent runs mutual TLS on is
# received only by a process of its owner's identity. The workload, enrolled and
# attested (a copy of kw_guard_probe, "hold"), holds its mTLS connection (kTLS) to
# `openssl s_server -rev` and passes it over a unix socket with SCM_RIGHTS:
#   - to an unattested process of the same uid and cgroup, and to root in that cgroup:
#     recvmsg() succeeds with its byte, but no descriptor is installed (no SCM_RIGHTS
#     data, MSG_CTRUNC, the receiver's descriptor table unchanged), and exactly one guard
#     event says so (action fd_receive, deny, socket_owner the workload's identity);
#   - to another process of the workload's identity (same attested binary, uid and
#     cgroup): the descriptor arrives, is the connection to s_server, and a line written
#     through it comes back reversed (kTLS both ways), with no guard event.
# A child forked by the workload keeps the inherited socket and uses it the same way, and
# the workload's own connection answers after each of these.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7221
LEDGER=spiffe://$KW_TD/ledger
[[ -x $KW_TOOLS/kw_guard_probe ]] || fail "tool $KW_TOOLS/kw_guard_probe is missing: build it first (cmake target kw_guard_probe)"
mkdir -p "$T/bin"
WORKLOAD=$T/bin/billing-probe  # attested
STRANGER=$T/bin/kw_guard_probe # unattested
for f in "$WORKLOAD" "$STRANGER"; do
    install -m 0755 "$KW_TOOLS/kw_guard_probe" "$f"
done
make_cgroup
make_mtls_peer "$LEDGER"
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING", "selectors": { "exe": "$WORKLOAD", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$LEDGER" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "ledger" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"
start_s_server "$PORT"

start_mtls_holder client "$WORKLOAD" "$KW_BILLING" "$LEDGER" "$PORT"
client_pid=$KW_HOLD_PID
client_fd=$KW_HOLD_FD
mkdir -m 0777 "$T/sock"

# Starts "kw_guard_probe recv" as NAME (running EXE as uid UID in the test cgroup), has
# the workload pass its socket to it, and waits for it to finish: its output in $KW_OUT,
# its pid in $KW_RECV_PID.
pass_to() { # NAME EXE UID [TEXT]
    local name=$1 exe=$2 uid=$3 sock=$T/sock/$1.sock pid
    shift 3
    kw_bg as_workload --uid "$uid" --pidfile "$T/$name.pid" "$exe" recv "$sock" "$@" >"$T/$name.log" 2>&1
    pid=$KW_BG_PID
    wait_until 10 "$name to listen on $sock" grep -q '^listening on ' "$T/$name.log"
    KW_RECV_PID=$(cat "$T/$name.pid")
    holder_cmd client "pass $sock"
    wait_until 10 "the workload to pass its socket to $name (log: $(tail -n 2 "$T/client.log"))" \
        grep -qxF "passed fd $client_fd to $sock" "$T/client.log"
    wait_until 20 "$name to finish" kw_exited "$pid"
    KW_OUT=$(cat "$T/$name.log")
    note "$name: $KW_OUT"
}
kw_exited() { ! kw_pid_alive "$1"; }

# ---- strangers: same uid and cgroup, and root --------------------------------------------------
for uid in "$KW_UID" 0; do
    ev_mark
    pass_to "stranger-$uid" "$STRANGER" "$uid" "stranger-$$"
    [[ $KW_OUT =~ recvmsg:\ 1\ byte\(s\),\ 0\ fd\(s\),\ flags\ MSG_CTRUNC\;\ open\ fds\ before\ ([0-9]+),\ after\ ([0-9]+) ]] ||
        fail "uid $uid without the identity: expected 1 byte, no descriptor and MSG_CTRUNC, saw: $KW_OUT"
    assert_eq "descriptors of the uid $uid receiver before and after recvmsg" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    [[ $KW_OUT != *"recv: got"* && $KW_OUT != *received:* ]] || fail "uid $uid used a socket it was not given: $KW_OUT"
    expect_one_event "the refused socket (uid $uid)" '.type == "guard"'
    assert_event action=fd_receive decision=deny errno=EPERM "socket_owner=$KW_BILLING" "tgid=$KW_RECV_PID" \
        "uid=$uid" spiffe_id=unattested "exe=$STRANGER" "cgroup:$KW_CG:$KW_CG_ID" \
        "decided_by~=passes only to a process of its owner's identity"
    holder_round_trip client
done

# ---- a process of the workload's identity gets it, and it works ---------------------------------
ev_mark
line="sibling-$$-$RANDOM"
pass_to sibling "$WORKLOAD" "$KW_UID" "$line"
[[ $KW_OUT =~ recvmsg:\ 1\ byte\(s\),\ 1\ fd\(s\),\ flags\ 0x0\;\ open\ fds\ before\ ([0-9]+),\ after\ ([0-9]+) ]] ||
    fail "the same identity: expected 1 byte and one descriptor, saw: $KW_OUT"
assert_eq "descriptors of the same-identity receiver after recvmsg" "$((BASH_REMATCH[1] + 1))" "${BASH_REMATCH[2]}"
assert_match "what the same-identity receiver got" "recv: got fd [0-9]+: socket SOCK_STREAM peer 127.0.0.1:$PORT" "$KW_OUT"
assert_match "the line it sent through the socket, answered" "received: $(rev <<<"$line")" "$KW_OUT"
expect_no_event "passing to the owner's identity" '.type == "guard"'
holder_round_trip client

# ---- fork: the child keeps the socket ---------------------------------------------------------------
ev_mark
line="child-$$-$RANDOM"
holder_cmd client "fork $line"
wait_until 20 "the forked child to finish (log: $(tail -n 2 "$T/client.log"))" grep -q '^child exited ' "$T/client.log"
assert_eq "what the forked child read, and its status" "child received: $(rev <<<"$line") child exited 0" \
    "$(grep '^child ' "$T/client.log" | paste -sd' ')"
expect_no_event "a forked child using the inherited socket" '.type == "guard"'
holder_round_trip client
expect_ok kwarden_cli identity "$client_pid"
assert_eq "identity of the workload at the end" "$KW_BILLING" "$KW_OUT"

stop_agent
