#!/usr/bin/env bash
# Transparent mTLS, client side: an enrolled, attested client (`kwarden exec`)
# connects to a mutual-TLS destination served by `openssl s_server` holding an SVID of
# the trust domain. The agent holds connect(), handshakes with the process's SVID,
# installs kTLS, and the unmodified client reads and writes plaintext that s_server
# sees decrypted (it echoes each line reversed). The kTLS counters rise. Refused, each
# with the exact errno: the same client not enrolled (EPERM, kernel), an enrolled but
# unattested process (EPERM), a server presenting an unexpected identity (ECONNREFUSED),
# and the client reading its socket's kTLS keys back with getsockopt(SOL_TLS) (EPERM).
# Enrolled processes keep every other connection and lose io_uring (ENOSYS).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7161
PLAIN=7162
LEDGER=spiffe://$KW_TD/ledger
setup_tools
make_attested
make_cgroup
make_node_ca
expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "$LEDGER" --out "$T/ledger" --ttl 1h

write_policy() { # FILE SERVER_IDENTITY
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$2" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "ledger" } ] }
JSON
}
write_policy "$T/policy.json" "$LEDGER"
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

# The server: TLS 1.3 only, no tickets (kTLS cannot take them), client certificate
# required and verified against our root; -rev answers each line reversed.
openssl s_server -accept "127.0.0.1:$PORT" -tls1_3 -num_tickets 0 -ciphersuites TLS_AES_128_GCM_SHA256 \
    -cert "$T/ledger/svid.pem" -cert_chain "$T/ledger/svid.pem" -key "$T/ledger/svid_key.pem" \
    -CAfile "$T/root/root.pem" -Verify 1 -verify_return_error -rev >"$T/s_server.log" 2>&1 </dev/null &
kw_track pids $!
listening() { ss -Htln "sport = :$PORT" | grep -q .; }
wait_until 20 "openssl s_server on port $PORT" listening
start_sink plain "$PLAIN"

tls_stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }
tx_before=$(tls_stat TlsTxSw)
rx_before=$(tls_stat TlsRxSw)
enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}

marker="kwarden-mtls-$$-$RANDOM"
reply=$(rev <<<"$marker")
ev_mark
expect_ok enrolled "$KW_ATTESTED" --send "$marker"$'\n' --expect "$reply" 127.0.0.1 "$PORT"
expect_one_event "the handshake" '.type == "tls" and .result == "ok"'
assert_event role=client "spiffe_id=$KW_BILLING" "peer_id=$LEDGER" cipher=TLS_AES_128_GCM_SHA256 \
    "dst_port=$PORT" destination=ledger
grep -q "Verification: OK" "$T/s_server.log" ||
    fail "s_server did not verify the client's SVID: $(tail -n 5 "$T/s_server.log")"
((  $(tls_stat TlsTxSw) > tx_before )) || fail "TlsTxSw did not rise ($tx_before -> $(tls_stat TlsTxSw)): no kTLS TX was installed"
(( $(tls_stat TlsRxSw) > rx_before )) || fail "TlsRxSw did not rise ($rx_before -> $(tls_stat TlsRxSw)): no kTLS RX was installed"

# The process owns a kTLS socket but cannot read its keys back (or set new ones).
marker2="kwarden-keys-$$-$RANDOM"
expect_errno EPERM enrolled "$KW_ATTESTED" --send "$marker2"$'\n' --expect "$(rev <<<"$marker2")" --tls-getsockopt \
    127.0.0.1 "$PORT"
assert_match "the refused call" "getsockopt SOL_TLS TLS_TX: EPERM" "$KW_OUT"

# The same attested binary without enrolment: the kernel lets only the agent connect there.
ev_mark
expect_errno EPERM as_workload "$KW_ATTESTED" --send "direct-$$" 127.0.0.1 "$PORT"
expect_one_event "the direct connect" '.type == "connect" and .decision == "deny"'
assert_event "decided_by~=reached only through the agent" "spiffe_id=$KW_BILLING"

# Enrolled but unattested (another binary): no SVID, EPERM from the agent.
ev_mark
expect_errno EPERM enrolled "$T/bin/kw_client" --send "unattested-$$" 127.0.0.1 "$PORT"
expect_one_event "the refused handshake" '.type == "tls" and .result == "failed"'
assert_event spiffe_id=unattested errno=1

# Enrolled processes keep their other connections; io_uring is refused outright.
expect_ok enrolled "$KW_ATTESTED" --send "plain-$$" 127.0.0.1 "$PLAIN"
wait_sink_data plain "plain-$$"
expect_errno ENOSYS enrolled "$T/bin/kw_uring_connect" 127.0.0.1 "$PLAIN"

# A server that is not the identity the policy names: the client refuses it.
write_policy "$T/policy2.json" "spiffe://$KW_TD/someone-else"
expect_ok kwarden_cli policy apply "$T/policy2.json"
ev_mark
expect_errno ECONNREFUSED enrolled "$KW_ATTESTED" --send "wrong-server-$$" 127.0.0.1 "$PORT"
expect_one_event "the refused server" '.type == "tls" and .result == "failed"'
assert_event "error~=someone-else" "error~=$LEDGER" errno=111

# The enrolment socket takes nothing but a process's own seccomp listener: a pipe, or a
# pid that is not the caller's, or a field of the wrong type, is refused by name, and the
# agent keeps serving.
enroll_raw() { # PID_OFFSET [JSON]: send a pipe as the "listener", claiming getpid()+PID_OFFSET
    as_workload "$KW_PY" - "$T/enroll.sock" "$1" "${2:-{\}}" <<'PY'
import json, os, socket, sys
r, w = os.pipe()
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
req = {"op": "enroll", "pid": os.getpid() + int(sys.argv[2])}
req.update(json.loads(sys.argv[3]))
req = json.dumps(req).encode() + b"\n"
s.sendmsg([req], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, sys.byteorder))])
print(s.makefile().readline().strip())
PY
}
expect_ok enroll_raw 0
assert_eq "answer to a pipe handed over as a listener" "false the descriptor is not a seccomp listener" \
    "$(jq -r '"\(.ok) \(.error)"' <<<"$KW_OUT")"
expect_ok enroll_raw 1
assert_eq "answer to a pid that is not the caller's" "false the pid in the request is not the caller's" \
    "$(jq -r '"\(.ok) \(.error)"' <<<"$KW_OUT")"
# An "op" that is not a string (nlohmann's value() would have thrown in the agent's loop).
expect_ok enroll_raw 0 '{"op": 1}'
assert_eq "answer to a numeric op" 'false expected {"op":"enroll","pid":N} with one listener fd' \
    "$(jq -r '"\(.ok) \(.error)"' <<<"$KW_OUT")"
kw_agent_ready || fail "the agent stopped answering after bad enrolment requests"

# No agent: exec says so and does not run the command.
expect_status 1 "$KWARDEN" exec --enroll-socket "$T/nothing.sock" -- /bin/echo should-not-run
assert_match "kwarden exec without an agent" "no kwarden agent answers" "$KW_OUT"
[[ $KW_OUT != *should-not-run* ]] || fail "kwarden exec ran the command without an agent"

stop_agent
