#!/usr/bin/env bash
# Transparent mTLS carries any TCP protocol unchanged, with client
# and server enrolled and attested under one agent:
# - server speaks first: an enrolled `socat` banner server greets each connection before
#   reading anything; an enrolled `socat` client reads that banner without having sent a
#   byte, then sends a line and gets the answer. The agent's handshakes must not wait for
#   the application to speak.
# - client speaks first: the client sends a line, the server answers only after reading it.
# - bulk, both directions at once: kw_xfer sends 64 MiB of random data each way over one
#   connection, the server with sendfile(2), the client with write(2); both outputs have
#   the sha256 of what the other side sent. Both sockets carry the "tls" ULP (kTLS), the
#   kernel's kTLS counters rise, no record fails to decrypt, and the agent reports an ok
#   handshake for each role. A half-close (a FIN without close_notify) ends each direction.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BANNER_PORT=7191
ASK_PORT=7192
XFER_PORT=7193
SERVER=spiffe://$KW_TD/banner
CHAT=spiffe://$KW_TD/chat
XSERVER=spiffe://$KW_TD/xfer-server
XCLIENT=spiffe://$KW_TD/xfer-client
MIB=64
setup_tools
make_cgroup
make_node_ca
install -m 0755 "$KW_TOOLS/kw_xfer" "$T/bin/xfer-server"
install -m 0755 "$KW_TOOLS/kw_xfer" "$T/bin/xfer-client"
# socat serves as the banner server ("socat -T60 ...") and as its client ("socat -t5 ...").
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$SERVER", "selectors": { "exe": "/usr/bin/socat", "argv_prefix": ["socat", "-T60"],
                                      "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $BANNER_PORT, "tls": "mutual" }, { "port": $ASK_PORT, "tls": "mutual" } ] },
    { "id": "$CHAT", "selectors": { "exe": "/usr/bin/socat", "argv_prefix": ["socat", "-t5"],
                                    "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$XSERVER", "selectors": { "exe": "$T/bin/xfer-server", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $XFER_PORT, "tls": "mutual" } ] },
    { "id": "$XCLIENT", "selectors": { "exe": "$T/bin/xfer-client", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [
    { "name": "banner", "cidrs": ["127.0.0.1/32"], "ports": [$BANNER_PORT, $ASK_PORT], "protocol": "tcp",
      "tls": "mutual", "identity": "$SERVER" },
    { "name": "xfer", "cidrs": ["127.0.0.1/32"], "ports": [$XFER_PORT], "protocol": "tcp",
      "tls": "mutual", "identity": "$XSERVER" } ],
  "rules": [ { "from": "$CHAT", "to": "banner" }, { "from": "$XCLIENT", "to": "xfer" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}
listening() { ss -Htln "sport = :$1" | grep -q .; }
assert_line() { # WHAT LINE TEXT: TEXT has LINE as one of its lines
    grep -qxF -- "$2" <<<"$3" || fail "$1: expected the line '$2', saw '$3'"
}
tls_stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }
ktls_installs() { # DIRECTION (Tx, Rx): software and device kTLS installed so far
    echo $(($(tls_stat "Tls${1}Sw") + $(tls_stat "Tls${1}Device")))
}

# The server's side of one connection (stdin/stdout are the connection, through socat).
# "banner": greet first, then answer a line; "ask": say nothing until a line arrives.
cat >"$T/proto-server.sh" <<'SH'
#!/bin/sh
[ "$1" = banner ] && echo "220 kwarden banner $2"
IFS= read -r line || exit 3
echo "250 server read: $line"
SH
# The client's side: with "banner", read the greeting before sending anything.
cat >"$T/proto-client.sh" <<'SH'
#!/bin/sh
if [ "$1" = banner ]; then
    IFS= read -r greeting || exit 3
    echo >&2 "greeting: $greeting"
fi
echo "HELO $2"
IFS= read -r answer || exit 4
echo >&2 "answer: $answer"
SH
chmod 0755 "$T/proto-server.sh" "$T/proto-client.sh"

marker="kw-$$-$RANDOM"
for mode_port in "banner $BANNER_PORT" "ask $ASK_PORT"; do
    read -r mode port <<<"$mode_port"
    KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/server-$mode.pid" \
        "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- \
        socat -T60 "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "EXEC:$T/proto-server.sh $mode $marker" \
        >"$T/socat-$mode.log" 2>&1
    wait_until 30 "socat $mode server on port $port" listening "$port"
    expect_ok kwarden_cli identity "$(cat "$T/server-$mode.pid")"
    assert_eq "identity of the enrolled socat $mode server" "$SERVER" "$KW_OUT"
done

# One exchange: MODE (banner: the server speaks first; ask: the client does) on PORT.
exchange() { # MODE PORT
    local mode=$1 port=$2
    ev_mark
    expect_ok enrolled socat -t5 "TCP:127.0.0.1:$port" "EXEC:$T/proto-client.sh $mode $marker"
    if [[ $mode == banner ]]; then
        assert_line "the banner the client read before sending" "greeting: 220 kwarden banner $marker" "$KW_OUT"
    else
        [[ $KW_OUT != *greeting* ]] || fail "the client-speaks-first exchange shows a greeting: $KW_OUT"
    fi
    assert_line "the server's answer" "answer: 250 server read: HELO $marker" "$KW_OUT"
    expect_one_event "the $mode client handshake" \
        '.type == "tls" and .role == "client" and (.dst_port | tostring) == $p' --arg p "$port"
    assert_event result=ok "spiffe_id=$CHAT" "peer_id=$SERVER" destination=banner cipher=TLS_AES_128_GCM_SHA256
    expect_one_event "the $mode server handshake" \
        '.type == "tls" and .role == "server" and (.dst_port | tostring) == $p' --arg p "$port"
    assert_event result=ok "spiffe_id=$SERVER" "peer_id=$CHAT" "tgid=$(cat "$T/server-$mode.pid")"
}
exchange banner "$BANNER_PORT"
exchange ask "$ASK_PORT"

# 64 MiB each way at once: the server sends with sendfile(2), the client with write(2).
note "making two ${MIB} MiB random files"
dd if=/dev/urandom of="$T/to-client" bs=1M count="$MIB" status=none
dd if=/dev/urandom of="$T/to-server" bs=1M count="$MIB" status=none
chmod 0644 "$T/to-client" "$T/to-server"
install -d -m 0777 "$T/out"
sum_to_client=$(sha256_of "$T/to-client")
sum_to_server=$(sha256_of "$T/to-server")
[[ $sum_to_client != "$sum_to_server" ]] || fail "the two random files are the same"

tx_before=$(ktls_installs Tx)
rx_before=$(ktls_installs Rx)
decrypt_errors_before=$(tls_stat TlsDecryptError)
ev_mark
KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/xfer-server.pid" \
    "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$T/bin/xfer-server" --listen --sendfile \
    --send "$T/to-client" --recv "$T/out/at-server" 127.0.0.1 "$XFER_PORT" >"$T/xfer-server.log" 2>&1
xfer_server=$KW_BG_PID
wait_until 30 "kw_xfer server on port $XFER_PORT" listening "$XFER_PORT"
note "transfer starts"
start=$SECONDS
KW_TIMEOUT=280 expect_ok enrolled "$T/bin/xfer-client" --send "$T/to-server" --recv "$T/out/at-client" \
    127.0.0.1 "$XFER_PORT"
client_out=$KW_OUT
rc=0
wait "$xfer_server" || rc=$?
took=$((SECONDS - start))
note "transfer done in ${took}s; server (status $rc): $(tr '\n' ' ' <"$T/xfer-server.log")"
[[ $rc -eq 0 ]] || fail "the kw_xfer server exited $rc: $(cat "$T/xfer-server.log")"
bytes=$((MIB * 1024 * 1024))
for who in client server; do
    if [[ $who == client ]]; then out=$client_out; how="write"; else out=$(cat "$T/xfer-server.log"); how=sendfile; fi
    assert_line "the $who socket's upper-layer protocol" "ulp: tls" "$out"
    assert_line "what the $who sent" "sent $bytes bytes ($how)" "$out"
    assert_line "what the $who received" "received $bytes bytes" "$out"
done
assert_eq "sha256 of what the client received (the server's file, sent with sendfile)" \
    "$sum_to_client" "$(sha256_of "$T/out/at-client")"
assert_eq "sha256 of what the server received (the client's file, sent with write)" \
    "$sum_to_server" "$(sha256_of "$T/out/at-server")"
(($(ktls_installs Tx) >= tx_before + 2)) || fail "kTLS TX installs rose by less than 2 ($tx_before -> $(ktls_installs Tx))"
(($(ktls_installs Rx) >= rx_before + 2)) || fail "kTLS RX installs rose by less than 2 ($rx_before -> $(ktls_installs Rx))"
assert_eq "TlsDecryptError after the transfer" "$decrypt_errors_before" "$(tls_stat TlsDecryptError)"
note "kTLS installs: TX $tx_before -> $(ktls_installs Tx), RX $rx_before -> $(ktls_installs Rx)"
expect_one_event "the transfer's client handshake" '.type == "tls" and .role == "client"'
assert_event result=ok "spiffe_id=$XCLIENT" "peer_id=$XSERVER" destination=xfer "dst_port=$XFER_PORT"
expect_one_event "the transfer's server handshake" '.type == "tls" and .role == "server"'
assert_event result=ok "spiffe_id=$XSERVER" "peer_id=$XCLIENT" "tgid=$(cat "$T/xfer-server.pid")"
note "$MIB MiB each way through mTLS+kTLS in ${took}s"

stop_agent
