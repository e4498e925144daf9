#!/usr/bin/env bash
# kw-timeout: 420
# Third-party TLS servers on their stock settings. An enrolled client reaches:
#   - openssl s_server with OpenSSL's defaults: it sends two session tickets after the
#     handshake. The reply comes back through kTLS (the agent read the tickets off
#     first); the tls event says session_tickets 2, on the first connection (learned)
#     and on the next (known);
#   - s_server choosing by its own order (-serverpref: AES-256-GCM first; the agent asks
#     for AES-128-GCM), without tickets: the agent takes the server's suite;
#   - Python's ssl server (create_default_context: OpenSSL, server order, two tickets):
#     both at once;
#   - a destination that requires AES-128-GCM ("tls_cipher") of a server choosing
#     AES-256-GCM: ECONNREFUSED, and the event names both suites.
# Without the agent reading tickets off and taking the server's suite, each of the first
# three fails: the app's first read() meets a ticket (EIO), or the agent refuses the
# suite (ECONNREFUSED).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

STOCK=7231 AES256=7233 PYSSL=7234 STRICT=7235
LEDGER=spiffe://$KW_TD/ledger
setup_tools
make_attested
make_cgroup
make_mtls_peer "$LEDGER"

dest() { # NAME PORT [EXTRA_JSON]
    echo "{ \"name\": \"$1\", \"cidrs\": [\"127.0.0.1/32\"], \"ports\": [$2], \"protocol\": \"tcp\",
            \"tls\": \"mutual\", \"identity\": \"$LEDGER\"${3:+, $3} }"
}
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING", "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ $(dest stock $STOCK), $(dest aes256 $AES256), $(dest pyssl $PYSSL),
                    $(dest strict $STRICT '"tls_cipher": "aes-128-gcm"') ],
  "rules": [ { "from": "$KW_BILLING", "to": "stock" }, { "from": "$KW_BILLING", "to": "aes256" },
             { "from": "$KW_BILLING", "to": "pyssl" }, { "from": "$KW_BILLING", "to": "strict" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

start_s_server "$STOCK" --stock
start_s_server "$AES256" --stock -serverpref -num_tickets 0
start_s_server "$STRICT" --stock -serverpref
cat >"$T/pyssl.py" <<'PY'
# Python's ssl server, its defaults as they come (OpenSSL: two tickets, its own suite order);
# a client certificate required. Answers each line reversed.
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ctx.load_verify_locations(sys.argv[4])
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = srv.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            line = s.recv(4096)
            s.sendall(line.rstrip(b"\n")[::-1] + b"\n")
            print("served", s.version(), s.cipher()[0], flush=True)
    except Exception as e:
        print("error:", e, flush=True)
PY
"$KW_PY" "$T/pyssl.py" "$PYSSL" "$T/ledger/svid.pem" "$T/ledger/svid_key.pem" "$T/root/root.pem" \
    >"$T/pyssl.log" 2>&1 </dev/null &
kw_track pids $!
wait_until 20 "Python's ssl server on port $PYSSL" kw_tcp_listening "$PYSSL"

enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}
# One line through the server at PORT, back reversed; then the tls event's checks.
round_trip() { # PORT CHECK...
    local port=$1 marker="stock-$1-$RANDOM$RANDOM"
    shift
    ev_mark
    expect_ok enrolled "$KW_ATTESTED" --send "$marker"$'\n' --expect "$(rev <<<"$marker")" 127.0.0.1 "$port"
    expect_one_event "the handshake to port $port" '.type == "tls" and .result == "ok"'
    assert_event role=client "spiffe_id=$KW_BILLING" "peer_id=$LEDGER" "dst_port=$port" "$@"
    note "port $port: $(jq -c '{cipher, session_tickets, ticket_wait_us, duration_ns}' <<<"$KW_EVENT")"
}

round_trip "$STOCK" cipher=TLS_AES_128_GCM_SHA256 session_tickets=2
round_trip "$STOCK" cipher=TLS_AES_128_GCM_SHA256 session_tickets=2 # known: read until two came
round_trip "$AES256" cipher=TLS_AES_256_GCM_SHA384 session_tickets=0
round_trip "$AES256" cipher=TLS_AES_256_GCM_SHA384 session_tickets=0 # known to send none: no wait
round_trip "$PYSSL" cipher=TLS_AES_256_GCM_SHA384 session_tickets=2
grep -q "served TLSv1.3 TLS_AES_256_GCM_SHA384" "$T/pyssl.log" ||
    fail "Python's ssl server did not serve the client: $(tail -n 5 "$T/pyssl.log")"

# A destination that requires a suite refuses the server's own choice, and says so.
ev_mark
expect_errno ECONNREFUSED enrolled "$KW_ATTESTED" --send "strict-$$"$'\n' 127.0.0.1 "$STRICT"
expect_one_event "the refused handshake to the strict destination" '.type == "tls" and .result == "failed"'
assert_event destination=strict \
    "error~=negotiated TLS_AES_256_GCM_SHA384 but the destination requires TLS_AES_128_GCM_SHA256"

stop_agent
