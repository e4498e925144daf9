#!/usr/bin/env bash
# Transparent mTLS, connections ended early: what an app wrote
# successfully arrives at the other app, or an app sees an error; never a silent loss.
# Both ends are enrolled and attested under one agent (kw_early_close, two copies), so
# the agent handshakes on both sockets. The peer's FIN or RST can arrive before the agent
# has installed kTLS; the kernel attaches the "tls" ULP only to an ESTABLISHED socket,
# so a late attach fails on a socket that is CLOSE_WAIT or CLOSE by then.
#   client -> server: the client connects and, at once or right after writing one line,
#     half-closes (shutdown SHUT_WR), closes, or resets (SO_LINGER 0). The server reads
#     to the end and gets the line, then EOF. A half-closed client still reads the
#     server's answer. The same with a real tool: `printf LINE | socat -t5 - TCP:...`,
#     what `printf LINE | nc -N` does.
#   server -> client: the server, at once or right after writing one line, half-closes,
#     closes or resets; the client reads the line, then EOF. Under one agent the client's
#     kTLS is in before the server's handshake ends; a server that is not enrolled
#     (kw_half_rtt_server.py) sends its flight, one line of half-RTT data and its FIN at
#     once, so the FIN is there before the client's handshake is done: the client still
#     reads the line.
#   A reset discards what the writer's TCP had not sent yet (SO_LINGER 0 means that, with
#     or without TLS): the reader gets the line, or ECONNRESET; never a bare EOF.
# Every connection has an ok handshake event on each enrolled side, and none failed.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

READER=7201 # the server that reads to the end, then answers "ack:DATA" and closes
SHAPE0=7210 # servers that end each connection early: SHAPE0 + index in SERVER_SHAPES
HALF=7220   # kw_half_rtt_server: HALF for --end shut, HALF + 1 for --end close
CLIENT=spiffe://$KW_TD/early-client
SOCAT=spiffe://$KW_TD/early-socat
SERVER=spiffe://$KW_TD/early-server
HALF_ID=spiffe://$KW_TD/half-rtt
ENDS=(shut close rst)
SERVER_SHAPES=("shut" "close" "rst" "shut data" "close data" "rst data")
setup_tools
[[ -x $KW_TOOLS/kw_early_close ]] || fail "tool $KW_TOOLS/kw_early_close is missing: build it first (cmake target kw_early_close)"
install -m 0755 "$KW_TOOLS/kw_early_close" "$T/bin/early-client"
install -m 0755 "$KW_TOOLS/kw_early_close" "$T/bin/early-server"
make_cgroup
make_node_ca
expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "$HALF_ID" --out "$T/half" --ttl 1h

ports=$READER
for i in "${!SERVER_SHAPES[@]}"; do ports+=", $((SHAPE0 + i))"; done
listen=$(sed -E 's/([0-9]+)/{ "port": \1, "tls": "mutual" }/g' <<<"$ports")
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$CLIENT", "selectors": { "exe": "$T/bin/early-client", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$SOCAT", "selectors": { "exe": "/usr/bin/socat", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$SERVER", "selectors": { "exe": "$T/bin/early-server", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ $listen ] } ],
  "destinations": [ { "name": "early", "cidrs": ["127.0.0.1/32"], "ports": [$ports], "protocol": "tcp",
                      "tls": "mutual", "identity": "$SERVER" },
                    { "name": "half", "cidrs": ["127.0.0.1/32"], "ports": [$HALF, $((HALF + 1))], "protocol": "tcp",
                      "tls": "mutual", "identity": "$HALF_ID" } ],
  "rules": [ { "from": "$CLIENT", "to": "early" }, { "from": "$SOCAT", "to": "early" },
             { "from": "$CLIENT", "to": "half" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}
# The servers run as the workload's uid: their logs go to a directory it owns.
install -d -o "$KW_UID" -g "$KW_GID" "$T/srv"
start_server() { # NAME PORT ARGS...: an enrolled kw_early_close serve
    local name=$1 port=$2
    shift 2
    KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/$name.pid" "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- \
        "$T/bin/early-server" serve "$@" "$port" "$T/srv/$name.log" >"$T/$name.out" 2>&1
}
wait_server() { # NAME
    wait_until 60 "server $1 to listen ($(cat "$T/$1.out" 2>/dev/null))" test -e "$T/srv/$1.log.ready"
}
log_lines() { # FILE
    if [[ -e $1 ]]; then wc -l <"$1"; else echo 0; fi
}
# Waits for line N of FILE and prints it.
nth_line() { # FILE N WHAT
    wait_until 20 "$3 (the server log has $(log_lines "$1") line(s), $2 expected; failed handshakes: $(ev_select '.type == "tls" and .result != "ok"' | tail -n 2))" \
        test "$(log_lines "$1")" -ge "$2"
    sed -n "$2p" "$1"
}
# What a reader of LINE (may be empty) sees, as a regex of kw_early_close's report: the
# line, then EOF; after a reset, the line then EOF or ECONNRESET, or ECONNRESET alone.
reads() { # END LINE
    local got=${2:+$2\\\\n}
    if [[ $1 == rst ]]; then
        echo "got '($got' then (EOF|ECONNRESET)|' then ECONNRESET)"
    else
        echo "got '$got' then EOF"
    fi
}

# Every server at once (each start is slow under emulation); the shapes' lines are fixed.
start_server reader "$READER" --end read
for i in "${!SERVER_SHAPES[@]}"; do
    read -r end with <<<"${SERVER_SHAPES[$i]}"
    start_server "shape$i" "$((SHAPE0 + i))" ${with:+--send "early-server-$end-$$"} --end "$end"
done
wait_server reader
for i in "${!SERVER_SHAPES[@]}"; do wait_server "shape$i"; done
ev_mark

# ---- client -> server --------------------------------------------------------------------

n=0
for end in "${ENDS[@]}"; do
    for with in "" data; do
        case="client $end${with:+ after a write}"
        line=""
        [[ -n $with ]] && line="early-$end-$$-$RANDOM"
        expect_ok enrolled "$T/bin/early-client" connect ${line:+--send "$line"} --end "$end" 127.0.0.1 "$READER"
        n=$((n + 1))
        got=$(nth_line "$T/srv/reader.log" "$n" "$case: the server to see the connection")
        assert_match "$case: what the server read" "^$(reads "$end" "$line")\$" "$got"
        if [[ $end == shut ]]; then
            assert_match "$case: the server's answer, read after the half-close" \
                $'\n'"got 'ack:${line:+$line\\\\n}\\\\n' then EOF"$'\n' "$KW_OUT"$'\n'
        fi
        note "$case: ok ($got)"
    done
done

# The real tool: socat half-closes when its input ends, then waits for the answer.
line="socat-$$-$RANDOM"
expect_ok enrolled sh -c 'printf "%s\n" "$1" | exec socat -t5 - "TCP:127.0.0.1:$2"' sh "$line" "$READER"
n=$((n + 1))
got=$(nth_line "$T/srv/reader.log" "$n" "socat: the server to see the connection")
assert_eq "socat: what the server read" "got '$line\\n' then EOF" "$got"
assert_eq "socat: the server's answer" "ack:$line" "$(head -n 1 <<<"$KW_OUT")"

# ---- server -> client --------------------------------------------------------------------

for i in "${!SERVER_SHAPES[@]}"; do
    read -r end with <<<"${SERVER_SHAPES[$i]}"
    port=$((SHAPE0 + i))
    case="server $end${with:+ after a write}"
    line=""
    [[ -n $with ]] && line="early-server-$end-$$"
    expect_ok enrolled "$T/bin/early-client" connect --end read 127.0.0.1 "$port"
    assert_match "$case: what the client read" $'\n'"$(reads "$end" "$line")"$'\n' "$KW_OUT"$'\n'
    if [[ $end == shut ]]; then
        got=$(nth_line "$T/srv/shape$i.log" 1 "$case: the server to finish")
        assert_eq "$case: what the server read after its half-close" "got '' then EOF" "$got"
    fi
    note "$case: ok"
done

# A server that is not enrolled speaks first and ends before the client's Finished.
for end in shut close; do
    case="half-RTT server $end"
    port=$HALF
    [[ $end == close ]] && port=$((HALF + 1))
    line="half-rtt-$end-$$-$RANDOM"
    log=$T/half-$end.log
    kw_bg "$KW_PY" "$KW_E2E_DIR/tools/kw_half_rtt_server.py" --end "$end" --cert "$T/half/svid.pem" \
        --key "$T/half/svid_key.pem" --ca "$T/root/root.pem" "$port" "$line" >"$log" 2>&1
    server=$KW_BG_PID
    wait_until 60 "$case to listen ($(cat "$log"))" grep -qx ready "$log"
    expect_ok enrolled "$T/bin/early-client" connect --end read 127.0.0.1 "$port"
    # After close, the client's Finished meets a closed socket: the RST that answers it
    # ends the read after the line (EPIPE: the kernel's errno for an RST in CLOSE_WAIT).
    assert_match "$case: what the client read" $'\n'"got '$line\\\\n' then (EOF|ECONNRESET|EPIPE)"$'\n' "$KW_OUT"$'\n'
    wait_until 20 "$case to finish ($(cat "$log"))" grep -q '^sent ' "$log"
    wait "$server" || fail "$case: the server failed: $(cat "$log")"
    note "$case: ok"
done

# The handshakes: one ok per connection on each enrolled side, with the right peers.
failed=$(ev_select '.type == "tls" and .result != "ok"')
[[ -z $failed ]] || fail "handshakes that failed: $failed"
summary=$(ev_select '.type == "tls"' | jq -s -r 'group_by(.role, .spiffe_id, .peer_id)[]
    | "\(.[0].role) \(.[0].spiffe_id) <- \(.[0].peer_id): \(length)"' | sort)
both_ways=$((${#ENDS[@]} * 2 + ${#SERVER_SHAPES[@]}))
want=$(sort <<WANT
client $CLIENT <- $SERVER: $both_ways
client $SOCAT <- $SERVER: 1
client $CLIENT <- $HALF_ID: 2
server $SERVER <- $CLIENT: $both_ways
server $SERVER <- $SOCAT: 1
WANT
)
assert_eq "ok handshakes by role, identity and peer" "$want" "$summary"

stop_agent
