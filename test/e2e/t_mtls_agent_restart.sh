#!/usr/bin/env bash
# Agent restarts do not break enrolled processes. The listener holder
# keeps every enrolled process's seccomp listener, and the journal of calls the agent
# had taken, while the agent is SIGKILLed and started again:
#   - an enrolled client and an enrolled server (python3 both) keep running; the
#     server's blocking accept(), held by the agent when it died, is served by the next
#     agent (from the journal), with the app's blocking flags intact;
#   - a connect issued while no agent runs waits in the kernel and completes once an
#     agent is back: the already running client gets the file over mTLS;
#   - a connect whose handshake was cut by the agent's death fails with ECONNREFUSED
#     (a handshake cannot be resumed) and a tls event says why; the next one works;
#   - the holder is the same process throughout, and holds both listeners.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7272
STALL=7273
CLIENT=spiffe://$KW_TD/client
FILES=spiffe://$KW_TD/files
setup_tools
make_cgroup
make_node_ca

cat >"$T/client.py" <<'PY'
# One line per command read from the FIFO: "NAME PORT" -> connect to 127.0.0.1:PORT, GET
# /file.txt, print "NAME ok <last line of the body>" or "NAME err <errno name>".
import errno, socket, sys
fifo = sys.argv[1]
while True:
    with open(fifo) as commands:
        for line in commands:
            name, port = line.split()
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", int(port)))
                s.sendall(b"GET /file.txt HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                print(name, "ok", data.decode(errors="replace").rstrip("\n").splitlines()[-1], flush=True)
            except OSError as e:
                print(name, "err", errno.errorcode.get(e.errno, str(e.errno)), flush=True)
            finally:
                s.close()
PY
cat >"$T/server.py" <<'PY'
# A file server that waits in a blocking accept(): the agent holds that call.
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
body = open(sys.argv[2], "rb").read()
while True:
    c, peer = s.accept()
    request = c.recv(65536)
    print("served", request.split(b"\r\n")[0].decode(errors="replace"), flush=True)
    c.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body)
    c.close()
PY
chmod a+r "$T/client.py" "$T/server.py"
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$CLIENT", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "$T/client.py"],
                                      "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$FILES", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "$T/server.py"],
                                     "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PORT, "tls": "mutual" } ] } ],
  "destinations": [
    { "name": "files", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp", "tls": "mutual", "identity": "$FILES" },
    { "name": "stall", "cidrs": ["127.0.0.1/32"], "ports": [$STALL], "protocol": "tcp", "tls": "mutual", "identity": "$FILES" } ],
  "rules": [ { "from": "$CLIENT", "to": "files" }, { "from": "$CLIENT", "to": "stall" } ] }
JSON
# A long handshake timeout: the agent must die while a handshake is in progress.
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --handshake-timeout 120s)
start_agent "$T/policy.json"

marker="kwarden-restart-marker-$$-$RANDOM"
mkdir -p "$T/www"
printf '%s\n' "$marker" >"$T/www/file.txt"
chmod -R a+rX "$T/www"
mkfifo -m 0666 "$T/cmd.fifo"
KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/server.pid" \
    "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- python3 "$T/server.py" "$PORT" "$T/www/file.txt" \
    >"$T/server.log" 2>&1
KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/client.pid" \
    "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- python3 "$T/client.py" "$T/cmd.fifo" >"$T/client.out" 2>&1
listening() { ss -Htln "sport = :$1" | grep -q .; }
wait_until 30 "the python3 server on port $PORT" listening "$PORT"
enrolments() { (($(ev_count '.type == "enroll"') >= 2)); }
wait_until 30 "both to enrol" enrolments
server_pid=$(cat "$T/server.pid")
client_pid=$(cat "$T/client.pid")
expect_ok kwarden_cli identity "$client_pid"
assert_eq "identity of the enrolled client" "$CLIENT" "$KW_OUT"

ask() { echo "$1 $2" >"$T/cmd.fifo"; }
answered() { grep -q "^$1 " "$T/client.out"; }
answer_of() { wait_until 60 "the client's answer to $1" answered "$1"; grep "^$1 " "$T/client.out"; }

ask a "$PORT"
assert_eq "before any restart" "a ok $marker" "$(answer_of a)"
holder_status() { "$KWARDEN" holder status --socket "$T/holder.sock"; }
expect_ok holder_status
holder_pid=$(jq -r .holder_pid <<<"$KW_OUT")
assert_eq "listeners the holder keeps" 2 "$(jq -r .held <<<"$KW_OUT")"
assert_eq "the agent attached to the holder" "$KW_AGENT_PID" "$(jq -r .agent_pid <<<"$KW_OUT")"

# 1. SIGKILL the agent while the server's accept() is held by it; connect while it is down.
note "SIGKILL the agent"
kill_agent
ask b "$PORT"
sleep 3
answered b && fail "the client's connect completed with no agent running: $(grep '^b ' "$T/client.out")"
kw_pid_alive "$server_pid" || fail "the enrolled server died with the agent"
kw_pid_alive "$client_pid" || fail "the enrolled client died with the agent"
expect_ok holder_status
assert_eq "listeners kept while no agent runs" 2 "$(jq -r .held <<<"$KW_OUT")"
assert_eq "agent attached while none runs" null "$(jq -r .agent_pid <<<"$KW_OUT")"

ev_mark
start_agent "$T/policy.json"
assert_eq "the connect made while the agent was down, once it is back" "b ok $marker" "$(answer_of b)"
expect_one_event "the server, adopted with the accept() it held" \
    '.type == "enroll" and .adopted == true and .pid == $p' --argjson p "$server_pid"
assert_event resumed_calls=1
expect_one_event "the client, adopted" '.type == "enroll" and .adopted == true and .pid == $p' --argjson p "$client_pid"
ask c "$PORT"
assert_eq "a new connection from the running client after the restart" "c ok $marker" "$(answer_of c)"

# 2. SIGKILL the agent in the middle of a handshake (the peer never answers).
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
    print("accepted", flush=True)
' "$STALL" >"$T/stall.log" 2>&1 &
kw_track pids $!
wait_until 20 "the silent server on port $STALL" listening "$STALL"
ask s "$STALL"
wait_until 30 "the agent to connect to the silent server" grep -q accepted "$T/stall.log"
sleep 1  # the ClientHello is out: the handshake is in progress
note "SIGKILL the agent mid-handshake"
kill_agent
ev_mark
start_agent "$T/policy.json"
assert_eq "a connect whose handshake the agent's death cut" "s err ECONNREFUSED" "$(answer_of s)"
expect_one_event "the cut handshake" '.type == "tls" and .result == "failed" and .tgid == $p' --argjson p "$client_pid"
assert_event "error=the agent restarted during the handshake" errno=111 destination=stall "expected_peer_id=$FILES" \
    dst_port=$STALL
ask d "$PORT"
assert_eq "the next connection" "d ok $marker" "$(answer_of d)"

expect_ok holder_status
assert_eq "the same holder throughout" "$holder_pid" "$(jq -r .holder_pid <<<"$KW_OUT")"
assert_eq "listeners still held" 2 "$(jq -r .held <<<"$KW_OUT")"
assert_eq "requests the server app saw (a, b, c, d; never the cut one)" 4 "$(grep -c "^served GET /file.txt" "$T/server.log")"
