#!/usr/bin/env bash
# kw-timeout: 450
# An upgrade from the previous release's agent (built from the commit before the runtime
# layer: ABI version 3, pins without kw_abi) to this one, done as the README says: the old
# agent's `kwarden stop`, then this agent started on the same pins and state.
#   - enforcement never stops: an unattested connect loop running across the whole
#     upgrade sees only EPERM (positive control: the same connect succeeds before any
#     agent runs);
#   - processes attested by the old agent keep their identities, and the enrolled client
#     keeps its mutual-TLS connection (kTLS keys in the kernel, the socket's marks in the
#     pinned maps): it echoes across the upgrade, and new connections work after it;
#   - this agent says which version it took over, and records its own in kw_abi;
#   - pins of a newer ABI, and a version map of another layout, are refused by name, and
#     the programs keep enforcing.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7401
DB=7402
CLIENT=spiffe://$KW_TD/client
ECHO=spiffe://$KW_TD/echo
PREVIOUS=$KW_BUILD/previous/kwarden
NEW=$KWARDEN
[[ -x $PREVIOUS ]] || fail "the previous release's agent $PREVIOUS is missing (scripts/build-previous builds it)"
setup_tools
make_cgroup
make_node_ca
start_sink db "$DB"

cat >"$T/client.py" <<'PY'
# Commands from the FIFO, one per line; one answer line each on stdout:
#   open         connect to the echo server and keep the connection -> "open ok"
#   echo WORD    send WORD on the kept connection, read it back      -> "echo ok WORD"
#   new WORD     the same on a new connection                        -> "new ok WORD"
# Failures: "NAME err ERRNO".
import errno, socket, sys
fifo, port = sys.argv[1], int(sys.argv[2])
kept = None
def roundtrip(s, word):
    s.sendall(word.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise OSError(errno.ECONNRESET, "closed")
        data += chunk
    return data.decode().strip()
while True:
    with open(fifo) as commands:
        for line in commands:
            op, *args = line.split()
            try:
                if op == "open":
                    kept = socket.create_connection(("127.0.0.1", port))
                    print("open ok", flush=True)
                elif op == "echo":
                    print("echo ok", roundtrip(kept, args[0]), flush=True)
                elif op == "new":
                    with socket.create_connection(("127.0.0.1", port)) as s:
                        print("new ok", roundtrip(s, args[0]), flush=True)
            except OSError as e:
                print(op, "err", errno.errorcode.get(e.errno, str(e.errno)), flush=True)
PY
cat >"$T/echo.py" <<'PY'
# Echoes lines, a thread per connection; accept() is held by the agent (mutual TLS).
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
def serve(c):
    with c:
        for line in c.makefile("rb"):
            c.sendall(line)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
chmod a+r "$T/client.py" "$T/echo.py"
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$CLIENT", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "$T/client.py"],
                                      "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$ECHO", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "$T/echo.py"],
                                    "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PORT, "tls": "mutual" } ] } ],
  "destinations": [
    { "name": "echo", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp", "tls": "mutual", "identity": "$ECHO" },
    { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$DB], "protocol": "tcp" } ],
  "rules": [ { "from": "$CLIENT", "to": "echo" } ] }
JSON

# Positive control: with no agent, an unattested process reaches db.
expect_ok as_workload "$T/bin/kw_client" --send "unprotected-$$" 127.0.0.1 "$DB"
wait_sink_data db "unprotected-$$"
sink_snapshot db

# ---- the previous release ----------------------------------------------------------
KWARDEN=$PREVIOUS
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
# Its events follow the previous release's schema: named so that run.sh does not hold
# them to this release's (every events*.jsonl is checked).
start_agent "$T/policy.json" "$T/previous-release-events.jsonl"
grep -q kw_abi <(ls /sys/fs/bpf/kwarden/maps) && fail "the previous release already pins kw_abi: not the base this test means"

mkfifo -m 0666 "$T/cmd.fifo"
KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/echo.pid" \
    "$PREVIOUS" exec --enroll-socket "$T/enroll.sock" -- python3 "$T/echo.py" "$PORT" >"$T/echo.log" 2>&1
KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/client.pid" \
    "$PREVIOUS" exec --enroll-socket "$T/enroll.sock" -- python3 "$T/client.py" "$T/cmd.fifo" "$PORT" \
    >"$T/client.out" 2>&1
wait_until 30 "the echo server on port $PORT" kw_listening "$PORT"
enrolments() { (($(ev_count '.type == "enroll"') >= 2)); }
wait_until 30 "both to enrol" enrolments
client_pid=$(cat "$T/client.pid")
echo_pid=$(cat "$T/echo.pid")
expect_ok kwarden_cli identity "$client_pid"
assert_eq "the client's identity under the previous agent" "$CLIENT" "$KW_OUT"

ask() { echo "$*" >"$T/cmd.fifo"; }
answered() { (($(wc -l <"$T/client.out") >= $1)); }
answer() { # N: the Nth answer line, once there
    wait_until 60 "the client's answer #$1 ($(tail -n 2 "$T/client.out" | tr '\n' ' '))" answered "$1"
    sed -n "$1p" "$T/client.out"
}
ask open
assert_eq "a mutual-TLS connection under the previous agent" "open ok" "$(answer 1)"
ask echo before
assert_eq "an echo on it" "echo ok before" "$(answer 2)"

# The loop: an unattested kw_client to db every ~20 ms, across the whole upgrade.
start_connect_loop "$DB" 200

# ---- the upgrade -------------------------------------------------------------------
note "upgrade: the previous agent's 'kwarden stop', then this one"
stop_agent_unguarded
loop_more_refusals 10 "with no agent running"
KWARDEN=$NEW
start_agent "$T/policy.json" "$T/events.jsonl"
assert_match "what the agent took over" "the pinned maps were ABI version 3: taken over as version 5" \
    "$(cat "$T/agent.log")"
loop_more_refusals 10 "under this agent"

kw_pid_alive "$client_pid" || fail "the enrolled client died in the upgrade"
kw_pid_alive "$echo_pid" || fail "the enrolled echo server died in the upgrade"
expect_ok kwarden_cli identity "$client_pid"
assert_eq "the client's identity under this agent (the old agent attested it)" "$CLIENT" "$KW_OUT"
expect_ok kwarden_cli identity "$echo_pid"
assert_eq "the echo server's identity under this agent" "$ECHO" "$KW_OUT"
ask echo after
assert_eq "the connection made under the previous agent, after the upgrade" "echo ok after" "$(answer 3)"
ev_mark
ask new fresh
assert_eq "a new connection under this agent" "new ok fresh" "$(answer 4)"
expect_one_event "this agent's handshake for it" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$CLIENT" "peer_id=$ECHO" destination=echo

# ---- pins of a newer release ---------------------------------------------------------
stop_agent_unguarded
# The guard is off now: bpftool may read the pins.
abi=$(bpftool map lookup pinned /sys/fs/bpf/kwarden/maps/kw_abi key 0 0 0 0 -j | jq -r .formatted.value.version)
assert_eq "the ABI version this agent recorded in kw_abi" 5 "$abi"
bpftool map update pinned /sys/fs/bpf/kwarden/maps/kw_abi key 0 0 0 0 value 99 0 0 0 0 0 0 0 ||
    fail "cannot write kw_abi with the guard off"
# This agent refuses the pins, saying why (REGEX), and the old programs keep enforcing.
refused_start() { # WHAT REGEX
    expect_status 1 "$NEW" agent --policy "$T/policy.json" --state-dir "$T/state" --events "$T/events-refused.jsonl" \
        --admin-socket "$KW_ADMIN" --holder-socket "$T/holder.sock" --enroll-socket "$T/enroll.sock"
    assert_match "$1" "$2" "$KW_OUT"
    loop_more_refusals 10 "after the refused start ($1)"
}
refused_start "the refusal names the version" "ABI version 99, from a newer kwarden; this agent is version 5"
# A kw_abi of another layout (16-byte values) is refused by name, not read into 8 bytes.
rm /sys/fs/bpf/kwarden/maps/kw_abi
bpftool map create /sys/fs/bpf/kwarden/maps/kw_abi type array key 4 value 16 entries 1 name kw_abi
refused_start "the refusal names the map" "kw_abi is not the ABI version map this agent knows.*value 16 bytes"
rm /sys/fs/bpf/kwarden/maps/kw_abi
bpftool map create /sys/fs/bpf/kwarden/maps/kw_abi type array key 4 value 8 entries 1 name kw_abi
bpftool map update pinned /sys/fs/bpf/kwarden/maps/kw_abi key 0 0 0 0 value 4 0 0 0 0 0 0 0
start_agent "$T/policy.json" "$T/events-again.jsonl"
ask echo again
assert_eq "the same connection, after all that" "echo ok again" "$(answer 5)"

finish_connect_loop 40 "during the upgrade"
assert_sink_unchanged db
stop_agent
