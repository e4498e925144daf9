#!/usr/bin/env bash
# kw-timeout: 420
# Another process controlling an attested one. An attacker installs a
# seccomp filter with a user-notification listener, keeps the listener and execs the
# pinned binary, then answers its socket() with a socket of its own (NOTIF_ADDFD). The
# exec gets no identity (guard event "seccomp listener"), its connect to the declared
# destination is refused with EPERM as unattested, the attacker's socket stays
# unconnected and the sink receives nothing. Positive control: the same injection against
# a destination the policy does not declare connects the attacker's socket to that sink,
# and the attacker writes to it.
# The agent's own listener (`kwarden exec`) keeps the identity: the enrolled binary
# reaches the destination; an enrolling process that keeps a copy of its listener is
# refused enrolment. And a socket made by someone else: a socket created
# unattested and inherited across the exec of an attested script is refused on connect
# (EPERM, guard event foreign_socket), while the script's own socket connects.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7181
OPEN=7182
setup_tools
make_attested
make_cgroup
[[ -x $KW_TOOLS/kw_seccomp_inject ]] ||
    fail "tool $KW_TOOLS/kw_seccomp_inject is missing: build it first (cmake target kw_seccomp_inject)"
install -m 0755 "$KW_TOOLS/kw_seccomp_inject" "$T/bin/kw_seccomp_inject"
start_sink db "$PORT"
start_sink open "$OPEN"

# A script workload for the socket-creator check: connects the socket it is given (an
# inherited fd number) or one of its own ("own"); exit 0 or the errno.
KW_SCRIPT_ID=spiffe://$KW_TD/script
cat >"$T/bin/conn.py" <<PY
#!$KW_PY
import socket, sys
which, port, text = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket() if which == "own" else socket.socket(fileno=int(which))
try:
    s.connect(("127.0.0.1", port))
    s.sendall(text.encode())
    s.close()
except OSError as e:
    print("connect: %s (%d)" % (e.strerror, e.errno))
    sys.exit(e.errno)
PY
chmod 0755 "$T/bin/conn.py"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } },
                 { "id": "$KW_SCRIPT_ID",
                   "selectors": { "script": "$T/bin/conn.py", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" }, { "from": "$KW_SCRIPT_ID", "to": "db" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

# The attested binary on its own connects.
expect_ok as_workload "$KW_ATTESTED" --send "clean-$$" 127.0.0.1 "$PORT"
wait_sink_data db "clean-$$"

# Positive control: the injection works. The destination is not declared, so nothing
# stands in the way: the attested binary connects the attacker's socket for it, and the
# attacker writes through that connection, then shuts it (the binary's wait for a reply
# ends: EBADMSG).
expect_errno EBADMSG as_workload "$T/bin/kw_seccomp_inject" --write "attacker-$$" -- \
    "$KW_ATTESTED" --send "open-$$" --expect "never-$$" 127.0.0.1 "$OPEN"
assert_match "the attacker injected its socket" "injected the attacker's socket into pid" "$KW_OUT"
assert_match "the attacker's socket was connected for it" "attacker socket connected to 127.0.0.1:$OPEN" "$KW_OUT"
wait_sink_data open "open-$$"
wait_sink_data open "attacker-$$"

# The attack on the declared destination: no identity under a foreign listener.
ev_mark
sink_snapshot db
expect_errno EPERM as_workload "$T/bin/kw_seccomp_inject" --write "attacker-$$" -- \
    "$KW_ATTESTED" --send "inj-$$" 127.0.0.1 "$PORT"
assert_match "the attacker injected its socket" "injected the attacker's socket into pid [0-9]+" "$KW_OUT"
victim=$(sed -n "s/.*injected the attacker's socket into pid \([0-9]*\).*/\1/p" <<<"$KW_OUT")
assert_match "the attacker's socket stayed unconnected" "attacker socket not connected" "$KW_OUT"
assert_sink_unchanged db
expect_one_event "the guard withholding $KW_BILLING under a foreign seccomp listener" \
    '.type == "guard" and .action == "exec" and (.withheld_because | index("seccomp listener")) != null'
assert_event decision=deny "workload=$KW_BILLING" "tgid=$victim" "exe=$KW_ATTESTED" spiffe_id=unattested
expect_deny_event "$victim" "$PORT" "$KW_ATTESTED" spiffe_id=unattested

# The agent's own listener is the legitimate one: enrolled, the binary keeps its identity.
ev_mark
expect_ok as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- \
    "$KW_ATTESTED" --send "enrolled-$$" 127.0.0.1 "$PORT"
wait_sink_data db "enrolled-$$"
assert_eq "guard events for the enrolled exec" 0 "$(ev_count '.type == "guard" and .action == "exec"')"
# ... but an enrolling process that keeps a copy of its listener is refused: the kernel
# registers a listener only while the agent holds the one reference.
expect_ok as_workload "$T/bin/kw_seccomp_inject" --enroll-keeping "$T/enroll.sock"
assert_match "enrolment refused to a process keeping its listener" '"ok":false' "$KW_OUT"
assert_match "the refusal names the kept copy" 'another copy of the seccomp listener is still open' "$KW_OUT"

# A socket someone else made. The script's own socket connects ...
expect_ok as_workload "$T/bin/conn.py" own "$PORT" "script-own-$$"
wait_sink_data db "script-own-$$"
# ... one made unattested and inherited across the exec into the script's identity does not.
ev_mark
sink_snapshot db
expect_errno EPERM as_workload "$KW_PY" -c '
import os, socket, sys
s = socket.socket()
s.set_inheritable(True)
os.execv(sys.argv[1], [sys.argv[1], str(s.fileno()), sys.argv[2], sys.argv[3]])
' "$T/bin/conn.py" "$PORT" "script-inherited-$$"
assert_sink_unchanged db
expect_one_event "the guard refusing a socket created under another identity" \
    '.type == "guard" and .action == "foreign_socket"'
assert_event decision=deny errno=EPERM "spiffe_id=$KW_SCRIPT_ID" socket_creator=unattested "port=$PORT" \
    path=connect mode=enforce

# A gate decision like the others: audit mode reports the foreign socket and lets it be.
sed 's/"mode": "enforce"/"mode": "audit"/' "$T/policy.json" >"$T/policy-audit.json"
expect_ok kwarden_cli policy apply "$T/policy-audit.json"
ev_mark
expect_ok as_workload "$KW_PY" -c '
import os, socket, sys
s = socket.socket()
s.set_inheritable(True)
os.execv(sys.argv[1], [sys.argv[1], str(s.fileno()), sys.argv[2], sys.argv[3]])
' "$T/bin/conn.py" "$PORT" "script-audited-$$"
wait_sink_data db "script-audited-$$"
expect_one_event "the audited foreign socket" '.type == "guard" and .action == "foreign_socket"'
assert_event decision=deny errno=null mode=audit socket_creator=unattested "port=$PORT"

stop_agent
