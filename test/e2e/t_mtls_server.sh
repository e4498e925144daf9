#!/usr/bin/env bash
# Transparent mTLS, both ends enrolled under one agent: an enrolled, attested
# `curl` fetches a file from an enrolled `python3 -m http.server` over mTLS+kTLS. Neither
# program knows: curl speaks HTTP to 127.0.0.1, python3 answers plaintext, the agent
# handshakes on both sockets and the kernel encrypts. A packet capture on lo shows TLS
# application records and never the marker in the file; the kTLS counters rise.
# Interop: `openssl s_client` holding an SVID of a client the rules admit gets the file;
# one holding an SVID the rules do not admit is refused by the server, and python3 never
# sees that connection.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7171
WEB=spiffe://$KW_TD/web
FILES=spiffe://$KW_TD/files
setup_tools
make_cgroup
make_node_ca
expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "$WEB" --out "$T/web-svid" --ttl 1h
expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "spiffe://$KW_TD/intruder" --out "$T/intruder-svid" --ttl 1h
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$WEB", "selectors": { "exe": "/usr/bin/curl", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$FILES", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "-m", "http.server"],
                                     "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PORT, "tls": "mutual" } ] } ],
  "destinations": [ { "name": "files", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$FILES" } ],
  "rules": [ { "from": "$WEB", "to": "files" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}
start_enrolled_http_server "$PORT" "$FILES"

tls_stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }
tx_before=$(tls_stat TlsTxSw)
rx_before=$(tls_stat TlsRxSw)
tcpdump -i lo -U -w "$T/lo.pcap" "tcp port $PORT" >"$T/tcpdump.log" 2>&1 &
dump=$!
kw_track pids "$dump"
wait_until 10 "tcpdump to start" grep -q "listening on" "$T/tcpdump.log"

ev_mark
expect_ok enrolled /usr/bin/curl -sS --max-time 20 "http://127.0.0.1:$PORT/file.txt"
assert_eq "the file curl fetched through mTLS" "$marker" "$KW_OUT"
expect_one_event "the client handshake" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$WEB" "peer_id=$FILES" cipher=TLS_AES_128_GCM_SHA256
expect_one_event "the server handshake" '.type == "tls" and .role == "server" and .result == "ok"'
assert_event "spiffe_id=$FILES" "peer_id=$WEB" cipher=TLS_AES_128_GCM_SHA256
(( $(tls_stat TlsTxSw) >= tx_before + 2 )) || fail "TlsTxSw rose by less than 2 ($tx_before -> $(tls_stat TlsTxSw))"
(( $(tls_stat TlsRxSw) >= rx_before + 2 )) || fail "TlsRxSw rose by less than 2 ($rx_before -> $(tls_stat TlsRxSw))"

sleep 1
kill -INT "$dump" 2>/dev/null || true
wait "$dump" 2>/dev/null || true
grep -aqF "$marker" "$T/lo.pcap" && fail "the plaintext marker is on the wire (capture $T/lo.pcap)"
# TLS 1.3 application data records: content type 23, legacy version 3.3.
records=$(tcpdump -r "$T/lo.pcap" -X 2>/dev/null | grep -c "1703 03" || true)
((records > 0)) || fail "no TLS application data records in the capture: $(tcpdump -r "$T/lo.pcap" 2>&1 | tail -n 5)"
note "capture: $(tcpdump -r "$T/lo.pcap" 2>/dev/null | wc -l) packets, $records lines with TLS application records, no marker"

# openssl s_client holding an admitted SVID reaches the enrolled server (through
# 127.0.0.2: 127.0.0.1:$PORT is a mutual-TLS destination only the agent may connect to).
sclient() { # SVID_DIR
    printf 'GET /file.txt HTTP/1.0\r\n\r\n' |
        timeout 30 openssl s_client -connect "127.0.0.2:$PORT" -tls1_3 -quiet \
            -cert "$1/svid.pem" -cert_chain "$1/svid.pem" -key "$1/svid_key.pem" -CAfile "$T/root/root.pem" \
            -verify_return_error 2>&1
}
requests_before=$(grep -c '"GET /file.txt' "$T/http.log" || true)
out=$(sclient "$T/web-svid") || true
[[ $out == *"$marker"* ]] || fail "openssl s_client with $WEB did not get the file: $out"
out=$(sclient "$T/intruder-svid") || true
[[ $out != *"$marker"* ]] || fail "the server served spiffe://$KW_TD/intruder: $out"
expect_one_event "the refused client" '.type == "tls" and .role == "server" and .result == "failed"'
assert_event "error~=no rule lets spiffe://$KW_TD/intruder reach $FILES"
sleep 1
requests_after=$(grep -c '"GET /file.txt' "$T/http.log" || true)
assert_eq "requests python3 saw (curl's, then s_client's admitted one)" $((requests_before + 1)) "$requests_after"

stop_agent
