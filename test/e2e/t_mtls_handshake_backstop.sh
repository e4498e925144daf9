#!/usr/bin/env bash
# Transparent mTLS, the kernel backstop during the handshake: while the agent
# owns an enrolled client's socket for its TLS handshake, no one else moves data on it.
# An attested, enrolled, two-threaded client (kw_hs_race) connects to a mutual-TLS
# destination whose server accepts TCP and never answers (kw_sink), so the agent's
# handshake stalls until --handshake-timeout (4 s). While connect() is held, the second
# thread tries send, write, writev, sendfile (from a memfd), splice (pipe to socket),
# recv (MSG_DONTWAIT), read, readv, splice (socket to pipe) and recvmsg on the same
# descriptor: each gets EPERM from the BPF LSM (socket_sendmsg, socket_recvmsg,
# file_permission), and so do getsockopt(TCP_ZEROCOPY_RECEIVE) and getsockopt(SOL_TLS).
# connect() then fails with ETIMEDOUT, and the same twelve calls still get EPERM (fail
# closed: a socket whose handshake failed never carries plaintext). The
# silent server received exactly one TLS record, the agent's ClientHello (so the agent
# itself still wrote during the handshake), and never the test's marker.
# The file_permission program (splice from a socket meets no socket hook) runs only while
# a handshake may: the stalled handshake starts after the agent released it (twice the
# handshake timeout after start), so marking the socket is what attaches it again, before
# the second thread's splice.
# Positive control: after a successful mTLS connect to `openssl s_server -rev`, the same
# calls from another thread work, and every line comes back reversed through kTLS.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

SILENT=7181
PORT=7182
LEDGER=spiffe://$KW_TD/ledger
DATA_OPS=(send write writev sendfile splice recv read readv splice_in recvmsg)
OPTION_OPS=(zerocopy tls_keys)
setup_tools
[[ -x $KW_TOOLS/kw_hs_race ]] || fail "tool $KW_TOOLS/kw_hs_race is missing: build it first (cmake target kw_hs_race)"
RACE=$T/bin/billing-race
install -m 0755 "$KW_TOOLS/kw_hs_race" "$RACE"
make_cgroup
make_mtls_peer "$LEDGER"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$RACE", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "silent", "cidrs": ["127.0.0.1/32"], "ports": [$SILENT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$LEDGER" },
                    { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$LEDGER" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "silent" }, { "from": "$KW_BILLING", "to": "ledger" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --handshake-timeout 4s)
start_agent "$T/policy.json"
start_sink silent "$SILENT"
wait_until 30 "the agent releasing the file_permission guard (8 s after start, no handshake)" file_guard_is false

enrolled() { # CMD...: as the workload, enrolled
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}

# The line "PHASE OP: RESULT" of the tool's output, for each OP.
expect_results() { # PHASE REGEX OP...
    local phase=$1 want=$2 op line
    shift 2
    for op in "$@"; do
        line=$(grep -E "^$phase $op: " <<<"$KW_OUT" || true)
        [[ $line =~ ^$phase\ $op:\ $want$ ]] || fail "$phase $op: expected /$want/, saw '${line:-no line}'; output: $KW_OUT"
    done
}

# The handshake stalls: every call of the second thread is refused while it runs.
marker="kwarden-backstop-$$-$RANDOM"
ev_mark
expect_errno ETIMEDOUT enrolled "$RACE" --marker "$marker" 127.0.0.1 "$SILENT"
assert_match "connect() of the stalled handshake" $'\nconnect: ETIMEDOUT \\(110\\)\n' "$KW_OUT"$'\n'
assert_match "the calls ran while connect() was held" $'\nhandshake held: yes\n' "$KW_OUT"$'\n'
expect_results handshake 'EPERM \(1\)' "${DATA_OPS[@]}" "${OPTION_OPS[@]}"
file_guard_is true || fail "the file_permission guard is not attached after a handshake"
# Fail closed: after the failed handshake the socket still moves nothing (EPERM, not the
# EPIPE/EOF of the shut-down socket).
expect_results failed 'EPERM \(1\)' "${DATA_OPS[@]}" "${OPTION_OPS[@]}"
expect_one_event "the stalled handshake" '.type == "tls" and .result == "failed"'
assert_event role=client destination=silent "spiffe_id=$KW_BILLING" "dst_port=$SILENT" errno=110 \
    "error~=no connection and handshake within 4000 ms"

# What the silent server read: one connection, one TLS handshake record (0x16 0x03)
# holding a ClientHello (type 1), nothing after it, and never the marker.
tls_records() { # FILE -> "TYPE/MAJOR:FIRST_BYTE ..." per record, then "rest N"
    "$KW_PY" - "$1" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
out, i = [], 0
while i + 5 <= len(data):
    n = int.from_bytes(data[i + 3:i + 5], "big")
    out.append("%d/%d:%d" % (data[i], data[i + 1], data[i + 5] if i + 5 < len(data) else -1))
    i += 5 + n
print(" ".join(out + ["rest", str(len(data) - i)]))
PY
}
assert_eq "connections the silent server accepted" 1 "$(sink_conns silent)"
assert_eq "TLS records the silent server read" "22/3:1 rest 0" "$(tls_records "$T/sink-silent")"
! grep -qF "$marker" "$T/sink-silent" ||
    fail "the silent server received the marker in plaintext: $(tr -c '[:print:]' '.' <"$T/sink-silent" | tail -c 300)"
note "silent server: $(kw_size "$T/sink-silent") bytes, the ClientHello only"

# Positive control: once kTLS is installed the same calls work from another thread.
start_s_server "$PORT"
marker2="kwarden-managed-$$-$RANDOM"
ev_mark
expect_ok enrolled "$RACE" --managed --marker "$marker2" 127.0.0.1 "$PORT"
expect_results managed 'ok [1-9][0-9]*' "${DATA_OPS[@]}"
expect_one_event "the handshake of the control" '.type == "tls" and .result == "ok"'
assert_event role=client destination=ledger "peer_id=$LEDGER" "dst_port=$PORT"

stop_agent
