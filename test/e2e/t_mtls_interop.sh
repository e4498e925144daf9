#!/usr/bin/env bash
# kw-timeout: 600
# The interop matrix: enrolled processes and TLS 1.3 implementations other than
# BoringSSL, each on its stock defaults, in both roles, 16 MiB each way checked by sha256:
#   - OpenSSL, through Python's ssl (create_default_context: its own suite order, two
#     session tickets): kw_py_peer.py; its server reads to the end, then writes, so it
#     takes a FIN without close_notify as the end (OP_IGNORE_UNEXPECTED_EOF: OpenSSL 3
#     otherwise fails the connection there, and a kTLS end sends no close_notify);
#   - GnuTLS: gnutls-serv --echo (what the enrolled client sends comes back) and gnutls-cli;
#   - Go's crypto/tls: kw_go_peer (full duplex).
# The enrolled end is kw_xfer, an ordinary program that knows nothing of TLS: as a client
# it reaches the peer's server at 127.0.0.1 (a mutual-TLS destination), as a server it
# listens with "tls": "mutual" and the peers' clients connect to it through 127.0.0.2. Each
# connection: the third-party end sees the enrolled end's SPIFFE ID; the agent's tls event
# names both; a capture of the connection is TLS records only, and the marker that starts
# every file appears nowhere on the wire.
# Two facts of third-party tools, asserted here:
#   - gnutls-cli checks a host name, which an SVID does not carry: it runs without its own
#     verification, saves the chain it got, and GnuTLS's certtool verifies that chain
#     against the bundle afterwards. It writes what it receives one byte per write(2), so
#     the enrolled server sends it 1 MiB, not 16 (16 MiB would be 16 M syscalls here).
#   - GnuTLS's tools end with close_notify (gnutls-serv once the client's stream ended,
#     gnutls-cli at the end of its input): the enrolled end has every byte, then its next
#     read() fails with EIO (a non-data record on a kTLS socket, without a control message
#     to tell it so). That is the defined outcome of an alert after the handshake.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PY_SRV=7241 GNUTLS_SRV=7242 GO_SRV=7243 # third-party servers; the enrolled client connects
PY_CLI=7251 GNUTLS_CLI=7252 GO_CLI=7253 # the enrolled server; third-party clients connect
LEDGER=spiffe://$KW_TD/ledger           # the SVID of the third-party servers
PARTNER=spiffe://partner.org/client     # the SVID of the third-party clients: a partner's
XCLIENT=spiffe://$KW_TD/xfer-client
XSERVER=spiffe://$KW_TD/xfer-server
MIB=16
MARKER=kwarden-interop-plaintext
PY_PEER=$TOP/test/e2e/tools/kw_py_peer.py
GO_PEER=$KW_TOOLS/kw_go_peer
[[ -x $GO_PEER ]] || fail "$GO_PEER is not built: install golang-go (make deps) and rebuild"
setup_tools
make_cgroup
make_mtls_peer "$LEDGER"
expect_ok "$KWARDEN" ca init --trust-domain partner.org --out "$T/partner-ca"
"$KWARDEN" bundle show --ca "$T/partner-ca" >"$T/partner.json" || fail "cannot show the partner's bundle"
expect_ok "$KWARDEN" svid mint --ca "$T/partner-ca" --id "$PARTNER" --out "$T/partner" --ttl 1h
install -m 0755 "$KW_TOOLS/kw_xfer" "$T/bin/xfer-client"
install -m 0755 "$KW_TOOLS/kw_xfer" "$T/bin/xfer-server"
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$XCLIENT", "selectors": { "exe": "$T/bin/xfer-client", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$XSERVER", "selectors": { "exe": "$T/bin/xfer-server", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PY_CLI, "tls": "mutual" }, { "port": $GNUTLS_CLI, "tls": "mutual" },
                  { "port": $GO_CLI, "tls": "mutual" } ] } ],
  "destinations": [
    { "name": "peers", "cidrs": ["127.0.0.1/32"], "ports": [$PY_SRV, $GNUTLS_SRV, $GO_SRV], "protocol": "tcp",
      "tls": "mutual", "identity": "$LEDGER" },
    { "name": "xfer", "cidrs": ["127.0.0.1/32"], "ports": [$PY_CLI, $GNUTLS_CLI, $GO_CLI], "protocol": "tcp",
      "tls": "mutual", "identity": "$XSERVER" } ],
  "rules": [ { "from": "$XCLIENT", "to": "peers" }, { "from": "$PARTNER", "to": "xfer" } ],
  "federation": [ { "trust_domain": "partner.org", "bundle": "$T/partner.json" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

# Text, since gnutls-serv echoes a record only up to its first NUL byte; each file starts
# with the marker the capture must not show.
make_data() { # FILE MIB
    { echo "$MARKER $1"; head -c $(($2 * 786432 + 4096)) /dev/urandom | base64 -w 76; } >"$1"
    truncate -s $(($2 << 20)) "$1"
    chmod 0644 "$1"
}
make_data "$T/from-enrolled" "$MIB"
make_data "$T/from-peer" "$MIB"
make_data "$T/from-enrolled-1m" 1
install -d -m 0777 "$T/out"
BYTES=$((MIB << 20))

capture_start() { # PORT
    tcpdump -i lo -n -s 0 -B 65536 -U -w "$T/wire-$1.pcap" "tcp port $1" >"$T/tcpdump-$1.log" 2>&1 &
    KW_DUMP=$!
    kw_track pids "$KW_DUMP"
    wait_until 10 "tcpdump on port $1 to start" grep -q "listening on" "$T/tcpdump-$1.log"
}
# Every byte of the connection on the wire is a TLS record, the marker nowhere, nothing lost.
capture_check() { # PORT
    sleep 0.5
    kill -INT "$KW_DUMP" 2>/dev/null || true
    wait "$KW_DUMP" 2>/dev/null || true
    grep -q '^0 packets dropped by kernel' "$T/tcpdump-$1.log" ||
        fail "tcpdump on port $1 lost packets: $(cat "$T/tcpdump-$1.log")"
    local out rc=0
    out=$("$KW_PY" "$TOP/vmtest/tls_records.py" --summary "$T/wire-$1.pcap" "$MARKER") || rc=$?
    note "the wire, port $1:"$'\n'"$out"
    ((rc == 0)) || fail "port $1: the capture is not TLS records only:"$'\n'"$out"
    (($(grep -c ' -> ' <<<"$out") == 2)) || fail "port $1: expected one connection (two directions):"$'\n'"$out"
    rm -f "$T/wire-$1.pcap"
}
assert_line() { # WHAT LINE TEXT: TEXT has LINE as one of its lines
    grep -qxF -- "$2" <<<"$3" || fail "$1: expected the line '$2', saw '$3'"
}
same_file() { # WHAT EXPECTED ACTUAL
    assert_eq "sha256 of $1" "$(sha256_of "$2")" "$(sha256_of "$3")"
}

# ---- the enrolled client and third-party servers ---------------------------------------

# kw_xfer sends from-enrolled, writes what it gets to OUT, exits STATUS: 5 (EIO) when the
# server ends with close_notify, after every byte.
enrolled_client() { # PORT OUT STATUS
    KW_TIMEOUT=300 expect_status "$3" as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- \
        "$T/bin/xfer-client" --send "$T/from-enrolled" --recv "$2" 127.0.0.1 "$1"
    assert_line "the enrolled client's socket" "ulp: tls" "$KW_OUT"
    assert_line "what the enrolled client sent" "sent $BYTES bytes (write)" "$KW_OUT"
    assert_line "what the enrolled client received" "received $BYTES bytes" "$KW_OUT"
    if (($3 == 5)); then
        assert_line "the enrolled client's last read, after the server's close_notify" \
            "recv: EIO (5) Input/output error" "$KW_OUT"
    fi
}
client_event() { # PORT WHO
    expect_one_event "the enrolled client's handshake with $2" '.type == "tls" and .role == "client"'
    assert_event result=ok "spiffe_id=$XCLIENT" "peer_id=$LEDGER" destination=peers "dst_port=$1"
    note "$2 as server: $(jq -c '{cipher, session_tickets, ticket_wait_us, duration_ns}' <<<"$KW_EVENT")"
}
peer_server() { # NAME PORT CMD...: a third-party server in the background, until it listens
    "${@:3}" >"$T/$1.log" 2>&1 </dev/null &
    KW_PEER=$!
    kw_track pids "$KW_PEER"
    wait_until 30 "$1 on port $2" kw_tcp_listening "$2"
}
peer_done() { # NAME: the peer server exited 0 and saw the enrolled client's SPIFFE ID
    local rc=0
    wait "$KW_PEER" || rc=$?
    ((rc == 0)) || fail "$1 exited $rc: $(cat "$T/$1.log")"
    grep -q "^tls: TLSv1.3 .* peer $XCLIENT\$" "$T/$1.log" || fail "$1 did not see $XCLIENT: $(cat "$T/$1.log")"
    assert_line "what $1 received" "received $BYTES bytes" "$(cat "$T/$1.log")"
}

for peer in py gnutls go; do
    case $peer in
        py) port=$PY_SRV name="Python's ssl (OpenSSL)" ;;
        gnutls) port=$GNUTLS_SRV name="gnutls-serv" ;;
        go) port=$GO_SRV name="Go's crypto/tls" ;;
    esac
    capture_start "$port"
    case $peer in
        py) peer_server "$peer-server" "$port" "$KW_PY" "$PY_PEER" server 127.0.0.1 "$port" \
            "$T/ledger/svid.pem" "$T/ledger/svid_key.pem" "$T/root/root.pem" "$T/from-peer" "$T/out/at-py-server" ;;
        gnutls) peer_server "$peer-server" "$port" gnutls-serv --echo --crlf -p "$port" \
            --x509certfile "$T/ledger/svid.pem" --x509keyfile "$T/ledger/svid_key.pem" \
            --x509cafile "$T/root/root.pem" --require-client-cert --verify-client-cert ;;
        go) peer_server "$peer-server" "$port" "$GO_PEER" server "127.0.0.1:$port" \
            "$T/ledger/svid.pem" "$T/ledger/svid_key.pem" "$T/root/root.pem" "$T/from-peer" "$T/out/at-go-server" ;;
    esac
    ev_mark
    start=$SECONDS
    # gnutls-serv says close_notify when the client's stream ends.
    enrolled_client "$port" "$T/out/at-client-$peer" "$([[ $peer == gnutls ]] && echo 5 || echo 0)"
    note "$name as server: $MIB MiB each way in $((SECONDS - start))s"
    client_event "$port" "$name"
    if [[ $peer == gnutls ]]; then
        # The echo: the enrolled client got back exactly what it sent.
        same_file "what gnutls-serv echoed to the enrolled client" "$T/from-enrolled" "$T/out/at-client-$peer"
        kill "$KW_PEER" 2>/dev/null || true
        grep -q "Accepted connection" "$T/$peer-server.log" || fail "gnutls-serv: $(cat "$T/$peer-server.log")"
    else
        peer_done "$peer-server"
        same_file "what $name received" "$T/from-enrolled" "$T/out/at-$peer-server"
        same_file "what the enrolled client received from $name" "$T/from-peer" "$T/out/at-client-$peer"
    fi
    capture_check "$port"
done

# ---- third-party clients and the enrolled server ---------------------------------------

# kw_xfer listening on PORT. Third-party clients come through 127.0.0.2: 127.0.0.1:PORT is
# the mutual-TLS destination the rules admit them to, which only the agent may connect to.
enrolled_server() { # PORT SEND OUT [KW_XFER_OPTION...]
    KW_TIMEOUT=300 kw_bg as_workload --pidfile "$T/xfer-server-$1.pid" \
        "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$T/bin/xfer-server" --listen "${@:4}" \
        --send "$2" --recv "$3" 0.0.0.0 "$1" >"$T/xfer-server-$1.log" 2>&1
    KW_SERVER=$KW_BG_PID
    wait_until 30 "the enrolled kw_xfer server on port $1" kw_tcp_listening "$1"
}
server_done() { # PORT EXPECTED_STATUS
    local rc=0 out
    wait "$KW_SERVER" || rc=$?
    out=$(cat "$T/xfer-server-$1.log")
    note "the enrolled server on port $1 (status $rc): $out"
    ((rc == $2)) || fail "the enrolled kw_xfer server exited $rc, not $2: $out"
    assert_line "the enrolled server's socket" "ulp: tls" "$out"
    assert_line "what the enrolled server received" "received $BYTES bytes" "$out"
    expect_one_event "the enrolled server's handshake on port $1" '.type == "tls" and .role == "server"'
    assert_event result=ok "spiffe_id=$XSERVER" "peer_id=$PARTNER" "tgid=$(cat "$T/xfer-server-$1.pid")"
}

for peer in py go; do
    if [[ $peer == py ]]; then port=$PY_CLI name="Python's ssl (OpenSSL)"; else port=$GO_CLI name="Go's crypto/tls"; fi
    capture_start "$port"
    ev_mark
    enrolled_server "$port" "$T/from-enrolled" "$T/out/at-server-$peer"
    start=$SECONDS
    if [[ $peer == py ]]; then
        KW_TIMEOUT=300 expect_ok "$KW_PY" "$PY_PEER" client 127.0.0.2 "$port" "$T/partner/svid.pem" \
            "$T/partner/svid_key.pem" "$T/root/root.pem" "$T/from-peer" "$T/out/at-$peer-client"
    else
        KW_TIMEOUT=300 expect_ok "$GO_PEER" client "127.0.0.2:$port" "$T/partner/svid.pem" \
            "$T/partner/svid_key.pem" "$T/root/root.pem" "$T/from-peer" "$T/out/at-$peer-client"
    fi
    note "$name as client: $MIB MiB each way in $((SECONDS - start))s"
    grep -q "^tls: TLSv1.3 .* peer $XSERVER\$" <<<"$KW_OUT" || fail "$name did not see $XSERVER: $KW_OUT"
    assert_line "what $name received" "received $BYTES bytes" "$KW_OUT"
    server_done "$port" 0
    same_file "what $name received from the enrolled server" "$T/from-enrolled" "$T/out/at-$peer-client"
    same_file "what the enrolled server received from $name" "$T/from-peer" "$T/out/at-server-$peer"
    capture_check "$port"
done

# gnutls-cli: fed through a FIFO held open until the enrolled server's 1 MiB has arrived
# (at the end of its input it says close_notify and quits), the enrolled server keeping its
# FIN until its own reading ends (gnutls-cli quits when it reads the end).
capture_start "$GNUTLS_CLI"
ev_mark
enrolled_server "$GNUTLS_CLI" "$T/from-enrolled-1m" "$T/out/at-server-gnutls" --fin-after-eof
mkfifo "$T/gnutls-in"
timeout 300 gnutls-cli -p "$GNUTLS_CLI" 127.0.0.2 --logfile="$T/gnutls-cli.info" \
    --x509certfile "$T/partner/svid.pem" --x509keyfile "$T/partner/svid_key.pem" \
    --x509cafile "$T/root/root.pem" --no-ca-verification --save-cert="$T/gnutls-peer.pem" \
    <"$T/gnutls-in" >"$T/out/at-gnutls-client" 2>"$T/gnutls-cli.err" &
gnutls_cli=$!
kw_track pids "$gnutls_cli"
exec {feed}>"$T/gnutls-in"
start=$SECONDS
cat "$T/from-peer" >&"$feed"
wait_until 180 "gnutls-cli to receive 1 MiB" test "$(stat -c %s "$T/out/at-gnutls-client")" -ge $((1 << 20))
exec {feed}>&-
rc=0
wait "$gnutls_cli" || rc=$?
note "gnutls-cli as client: $MIB MiB to the enrolled server, 1 MiB back, in $((SECONDS - start))s (status $rc)"
((rc == 0)) || fail "gnutls-cli exited $rc: $(cat "$T/gnutls-cli.err" "$T/gnutls-cli.info")"
server_done "$GNUTLS_CLI" 5
assert_line "the enrolled server's last read, after gnutls-cli's close_notify" \
    "recv: EIO (5) Input/output error" "$(cat "$T/xfer-server-$GNUTLS_CLI.log")"
same_file "what gnutls-cli received from the enrolled server" "$T/from-enrolled-1m" "$T/out/at-gnutls-client"
same_file "what the enrolled server received from gnutls-cli" "$T/from-peer" "$T/out/at-server-gnutls"
grep -q "TLS1.3" "$T/gnutls-cli.info" || fail "gnutls-cli did not speak TLS 1.3: $(cat "$T/gnutls-cli.info")"
verdict=$(certtool --verify --load-ca-certificate "$T/root/root.pem" --infile "$T/gnutls-peer.pem" 2>&1) ||
    fail "GnuTLS's certtool refuses the chain gnutls-cli got: $verdict"
grep -q "Chain verification output: Verified" <<<"$verdict" || fail "certtool: $verdict"
certtool -i --infile "$T/gnutls-peer.pem" 2>/dev/null | grep -qF "URI: $XSERVER" ||
    fail "the chain gnutls-cli got does not name $XSERVER"
capture_check "$GNUTLS_CLI"

stop_agent
