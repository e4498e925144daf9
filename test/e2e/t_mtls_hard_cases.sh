#!/usr/bin/env bash
# Transparent mTLS, the hard cases of a held connect(). A proxy
# (kw_stall_proxy) in front of `openssl s_server` (holding an SVID of the trust domain)
# holds the server's answers for 4 s, so each case really lands while the agent holds the
# enrolled client's connect() in the middle of its handshake. The client is kw_mtls_probe,
# attested and enrolled:
#   1. a non-blocking connect, then epoll level-triggered, works end to end;
#   2. the same edge-triggered (EPOLLET), registered after connect() and before it;
#   3. 2,000 SIGURG (Go's preemption signal) sent to the client mid-handshake: connect()
#      still succeeds, the exchange works, the SA_RESTART handler ran;
#   4. SIGKILL of the client mid-handshake: a failed tls event at once, s_server never
#      completes that handshake, and the next connection works;
#   5. a peer that never answers: connect() fails with ETIMEDOUT after --handshake-timeout,
#      or after the app's SO_SNDTIMEO when that is shorter; a send after the failure is
#      refused (EPERM or EPIPE);
#   6. an enrolled server (python3) killed while the agent holds its accept() on a
#      mutual-TLS listen port: the agent's copy of the listener goes with it, so the port
#      is free again and a new server can bind it.
# None may leak plaintext, hang or leak agent fds: after every case the agent's fd count
# is back to its baseline; no marker a client sent ever crossed the proxy in cleartext;
# s_server completed exactly the handshakes of the successful cases (so it only ever saw
# data from completed handshakes) and answered each line it decrypted, reversed.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7191   # the stalling proxy: a mutual-TLS destination
HANG=7192   # the proxy that never answers: a mutual-TLS destination too
UP=7193     # s_server, behind both
SRV=7194    # the enrolled server's mutual-TLS listen port (case 6)
DELAY_MS=4000
TIMEOUT_MS=9000
LEDGER=spiffe://$KW_TD/ledger
FILES=spiffe://$KW_TD/files
setup_tools
for tool in kw_stall_proxy kw_mtls_probe; do
    [[ -x $KW_TOOLS/$tool ]] || fail "tool $KW_TOOLS/$tool is missing: build it first (cmake target $tool)"
    install -m 0755 "$KW_TOOLS/$tool" "$T/bin/$tool"
done
KW_ATTESTED=$T/bin/billing-probe
install -m 0755 "$KW_TOOLS/kw_mtls_probe" "$KW_ATTESTED"
make_cgroup
make_mtls_peer "$LEDGER"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } },
                 { "id": "$FILES", "selectors": { "exe": "/usr/bin/python3", "uid": $KW_UID, "cgroup": "$KW_CG" },
                   "listen": [ { "port": $SRV, "tls": "mutual" } ] } ],
  "destinations": [ { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$PORT, $HANG], "protocol": "tcp",
                      "tls": "mutual", "identity": "$LEDGER" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "ledger" } ] }
JSON
# The client handshakes on two handshake threads (--handshake-workers): every case must
# hold with them too, the fd baseline included (a handshake there holds a descriptor of
# its socket until it is back on the loop).
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --handshake-timeout "$((TIMEOUT_MS / 1000))s" --handshake-workers 2)
start_agent "$T/policy.json"

start_s_server "$UP"
WIRE=$T/wire.bin # every byte the clients' side sent through either proxy
kw_bg "$T/bin/kw_stall_proxy" --delay-ms "$DELAY_MS" "$WIRE" "$PORT" "$UP" >"$T/proxy.log" 2>&1
kw_bg "$T/bin/kw_stall_proxy" --hang "$WIRE" "$HANG" "$UP" >"$T/hang.log" 2>&1
wait_until 10 "the stalling proxy to listen" grep -qx ready "$T/proxy.log"
wait_until 10 "the hanging proxy to listen" grep -qx ready "$T/hang.log"

# ---- what every case must leave as it found it ----------------------------------------

agent_fds() { find "/proc/$KW_AGENT_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
fd_table() { find "/proc/$KW_AGENT_PID/fd" -mindepth 1 -maxdepth 1 -printf '%f -> %l\n' | sort -n; }
# The baseline: the fewest fds seen over a few samples (the agent opens a file now and
# then, briefly), with no enrolled process alive.
FD_BASE=$(for _ in 1 2 3 4 5; do agent_fds; sleep 0.2; done | sort -n | head -n1)
fd_table >"$T/fds.base"
note "agent fd baseline: $FD_BASE"

expect_agent_clean() { # CASE: agent alive, fds back to baseline (bounded wait)
    local deadline=$((SECONDS + 10))
    until (($(agent_fds) == FD_BASE)); do
        kw_pid_alive "$KW_AGENT_PID" || fail "$1: the agent died; log tail: $(tail -n 5 "$T/agent.log")"
        ((SECONDS < deadline)) ||
            fail "$1: the agent holds $(agent_fds) fds 10 s later, $FD_BASE before; changes: $(fd_table | diff "$T/fds.base" - | grep '^[<>]' | paste -sd ';')"
        sleep 0.2
    done
    kw_agent_ready || fail "$1: the agent stopped answering"
    note "$1: agent fds back to $FD_BASE"
}

MARKERS=()
new_marker() { # NAME -> a fresh plaintext marker, remembered for the wire check
    MARKER="kwarden-hard-$1-$$-$RANDOM"
    MARKERS+=("$MARKER")
}
expect_no_plaintext() { # CASE
    local m
    for m in "${MARKERS[@]}"; do
        grep -aqF -- "$m" "$WIRE" && fail "$1: marker $m crossed the proxy in cleartext (capture $WIRE)"
    done
    return 0
}

connect_ms() { # -> N of "connect: ... after N ms" in $KW_OUT
    sed -n 's/^connect: .* after \([0-9]*\) ms$/\1/p' <<<"$KW_OUT"
}
expect_held_through_stall() { # CASE: connect() returned only after the proxy let the handshake go on
    local took
    took=$(connect_ms)
    [[ -n $took ]] || fail "$1: the probe printed no connect time: $KW_OUT"
    ((took >= DELAY_MS)) || fail "$1: connect() returned after $took ms, before the proxy released the handshake ($DELAY_MS ms)"
}

enrolled() { # [--pidfile FILE] CMD...: as the workload, enrolled
    local pidfile=/dev/null
    if [[ $1 == --pidfile ]]; then
        pidfile=$2
        shift 2
    fi
    as_workload --pidfile "$pidfile" "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}
proxy_conns() { grep -c ' accepted$' "$T/proxy.log" || true; }
proxy_has_conn() { (($(proxy_conns) >= $1)); }

# The probe, enrolled, in the background; returns once the agent's connection reached the
# proxy, i.e. the agent has taken the call and the handshake is in progress.
# Sets PROBE_JOB (as_workload's job), PROBE_PID (the probe), PROBE_CONN (the proxy's number).
start_probe() { # NAME PROBE_ARGS...
    local name=$1
    shift
    PROBE_CONN=$(($(proxy_conns) + 1))
    KW_TIMEOUT=60 kw_bg enrolled --pidfile "$T/$name.pid" "$KW_ATTESTED" "$@" >"$T/$name.out" 2>&1
    PROBE_JOB=$KW_BG_PID
    wait_until 30 "the agent to reach the proxy for $name ($(cat "$T/$name.out"))" proxy_has_conn "$PROBE_CONN"
    PROBE_PID=$(cat "$T/$name.pid")
    note "$name: pid $PROBE_PID, handshake in progress (proxy connection $PROBE_CONN)"
}
wait_probe() { # NAME -> its status in PROBE_RC, its output in KW_OUT
    PROBE_RC=0
    wait "$PROBE_JOB" || PROBE_RC=$?
    KW_OUT=$(cat "$T/$1.out")
    note "$1 -> status $PROBE_RC: $KW_OUT"
}

# Case 1 and 2: non-blocking connect() and epoll, as event loops do it. An mTLS connect
# returns 0 once kTLS is installed; the app then waits for EPOLLOUT, sends, waits EPOLLIN.
ok_cases=0
for mode in "lt" "et" "et --epoll-first"; do
    name=${mode// /}
    new_marker "$name"
    ev_mark
    # shellcheck disable=SC2086 # the mode is two words for the last one
    expect_ok enrolled "$KW_ATTESTED" --mode $mode --send "$MARKER"$'\n' --expect "$(rev <<<"$MARKER")" 127.0.0.1 "$PORT"
    assert_match "$name: the connect result" "connect: ok after" "$KW_OUT"
    assert_match "$name: epoll" "epoll: writable \(events 0x[0-9a-f]+\), SO_ERROR 0" "$KW_OUT"
    assert_match "$name: the reply s_server decrypted and reversed" "received: $(rev <<<"$MARKER")" "$KW_OUT"
    expect_held_through_stall "$name"
    expect_one_event "the $name handshake" '.type == "tls" and .result == "ok"'
    assert_event role=client "spiffe_id=$KW_BILLING" "peer_id=$LEDGER" "dst_port=$PORT"
    ok_cases=$((ok_cases + 1))
    expect_agent_clean "$name"
    expect_no_plaintext "$name"
done

# Case 3: a SIGURG storm while the handshake is held. WAIT_KILLABLE_RECV keeps the signals
# pending (the call is not restarted mid-handshake); the handler runs once connect()
# returns.
new_marker sigurg
ev_mark
start_probe sigurg --sigurg --send "$MARKER"$'\n' --expect "$(rev <<<"$MARKER")" 127.0.0.1 "$PORT"
sent=0
t0=$EPOCHREALTIME
for ((i = 0; i < 2000; i++)); do
    kill -URG "$PROBE_PID" 2>/dev/null || break
    sent=$((sent + 1))
done
note "sigurg: $sent SIGURG sent in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s"
grep -q '^connect:' "$T/sigurg.out" &&
    fail "sigurg: connect() had returned before the last signal was sent: the storm did not land mid-handshake ($(cat "$T/sigurg.out"))"
assert_eq "SIGURG sent to the held client" 2000 "$sent"
wait_probe sigurg
assert_eq "sigurg: exit status of the probe" 0 "$PROBE_RC"
expect_held_through_stall sigurg
assert_match "sigurg: the reply" "received: $(rev <<<"$MARKER")" "$KW_OUT"
handled=$(sed -n 's/^sigurg: \([0-9]*\) handled, \([0-9]*\) while.*/\1 \2/p' <<<"$KW_OUT")
read -r landed during <<<"$handled"
((${landed:-0} > 0 && ${during:-0} > 0)) ||
    fail "sigurg: the SIGURG handler did not run during the held connect() (landed '$landed', during connect '$during')"
note "sigurg: $landed of $sent signals landed in the handler ($during at the return of the held connect(); the rest coalesced while pending)"
expect_one_event "the handshake under SIGURG" '.type == "tls" and .result == "ok"'
assert_event role=client "tgid=$PROBE_PID" "peer_id=$LEDGER"
ok_cases=$((ok_cases + 1))
expect_agent_clean sigurg
expect_no_plaintext sigurg

# Case 4: SIGKILL mid-handshake, the one signal that ends a held call. The agent gives
# the handshake up at once; s_server never completes it.
new_marker killed
established=$(grep -c "CONNECTION ESTABLISHED" "$T/s_server.log" || true)
ev_mark
start_probe killed --send "$MARKER"$'\n' --expect "$(rev <<<"$MARKER")" 127.0.0.1 "$PORT"
kill -KILL "$PROBE_PID"
wait_probe killed
assert_eq "killed: exit status (timeout reports the probe's SIGKILL)" 137 "$PROBE_RC"
expect_one_event "the abandoned handshake" '.type == "tls" and .result == "failed" and (.tgid | tostring) == $pid' \
    --arg pid "$PROBE_PID"
assert_event role=client "spiffe_id=$KW_BILLING" "error~=exited" peer_id=null
proxy_closed() { grep -q "^conn $PROBE_CONN closed" "$T/proxy.log"; }
wait_until 10 "the abandoned connection to be closed at the proxy" proxy_closed
closed=$(grep "^conn $PROBE_CONN closed" "$T/proxy.log")
note "killed: $closed"
# Closed while the proxy still held the server's answers: the agent gave up at once.
assert_match "killed: the abandoned connection at the proxy" "closed after [0-9]+ ms: .* s2c 0 forwarded" "$closed"
lived=$(sed -n 's/.* closed after \([0-9]*\) ms.*/\1/p' <<<"$closed")
((lived < DELAY_MS)) || fail "killed: the agent kept the dead client's connection $lived ms, past the stall ($DELAY_MS ms)"
expect_agent_clean killed
sleep 1 # s_server would log a completed handshake right away
assert_eq "handshakes s_server completed for the killed client" "$established" \
    "$(grep -c "CONNECTION ESTABLISHED" "$T/s_server.log" || true)"
new_marker after-kill
ev_mark
expect_ok enrolled "$KW_ATTESTED" --send "$MARKER"$'\n' --expect "$(rev <<<"$MARKER")" 127.0.0.1 "$PORT"
expect_held_through_stall after-kill
expect_one_event "the handshake after the kill" '.type == "tls" and .result == "ok"'
ok_cases=$((ok_cases + 1))
expect_agent_clean after-kill
expect_no_plaintext after-kill

# Case 5: a peer that never answers. The agent's timeout bounds the handshake, and the
# app's SO_SNDTIMEO when it is shorter; connect() gets ETIMEDOUT, and even an app that
# ignores the error and sends gets an error, and nothing leaves.
expect_timeout() { # CASE LIMIT_MS PROBE_ARGS...
    local name=$1 limit=$2 took
    shift 2
    new_marker "$name"
    ev_mark
    expect_errno ETIMEDOUT enrolled "$KW_ATTESTED" "$@" --send "$MARKER"$'\n' --expect never --write-after-fail \
        127.0.0.1 "$HANG"
    took=$(connect_ms)
    [[ -n $took ]] || fail "$name: the probe printed no connect time: $KW_OUT"
    ((took >= limit && took <= limit + 4000)) ||
        fail "$name: connect() failed after $took ms; expected $limit to $((limit + 4000)) ms (the bound)"
    # Refused by the kernel's handshake backstop (EPERM: the socket keeps its in-handshake
    # mark), or by TCP after the agent's shutdown (EPIPE); never accepted.
    assert_match "$name: a send after the failed connect()" "send after failed connect: (EPERM|EPIPE) " "$KW_OUT"
    expect_one_event "the $name handshake" '.type == "tls" and .result == "failed"'
    assert_event role=client errno=110 "dst_port=$HANG" "error~=within $limit ms"
    expect_agent_clean "$name"
    expect_no_plaintext "$name"
}
expect_timeout hang "$TIMEOUT_MS"
expect_timeout sndtimeo 2000 --sndtimeo 2000

# Case 6: SIGKILL of an enrolled server whose accept() the agent holds (it waits, with
# its own copy of the listener, for a client). The copy must not outlive the server.
server='import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
s.accept()'
agent_listens() { ss -Htlnp "sport = :$SRV" | grep -q '"kwarden"'; }
KW_TIMEOUT=60 kw_bg enrolled --pidfile "$T/server.pid" /usr/bin/python3 -c "$server" "$SRV" >"$T/server.out" 2>&1
server_job=$KW_BG_PID
wait_until 30 "the agent to hold the enrolled server's accept() on port $SRV ($(cat "$T/server.out"))" agent_listens
expect_ok kwarden_cli identity "$(cat "$T/server.pid")"
assert_eq "identity of the enrolled server" "$FILES" "$KW_OUT"
kill -KILL "$(cat "$T/server.pid")"
wait "$server_job" || true
port_free() { ! ss -Htln "sport = :$SRV" | grep -q .; }
wait_until 10 "port $SRV to be free after the server was killed ($(ss -Htlnp "sport = :$SRV"))" port_free
expect_agent_clean server-killed
expect_ok as_workload /usr/bin/python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$SRV"

# Over the whole run: s_server completed exactly the successful handshakes, and each of
# them carried data (it answered every marker).
assert_eq "handshakes s_server completed" "$ok_cases" "$(grep -c "CONNECTION ESTABLISHED" "$T/s_server.log" || true)"
[[ -s $WIRE ]] || fail "the proxies relayed nothing from the clients' side"
note "wire: $(stat -c %s "$WIRE") bytes from clients through the proxies, none of ${#MARKERS[@]} markers in cleartext"
stop_agent
