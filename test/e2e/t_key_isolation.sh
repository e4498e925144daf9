#!/usr/bin/env bash
# Key isolation: an enrolled workload never holds a key of its connection. The
# test build of the agent (kwarden-testhooks, --test-key-dump) writes every SVID private
# key when it is issued or rotated, and for every kTLS install the traffic secret and the
# key, iv, salt and rec_seq given to the kernel. An enrolled, attested client and an
# enrolled, attested server (kw_hold) exchange a line over mTLS+kTLS and stay alive,
# each holding its end of the connection (its only holder: the agent kept no copy). The
# dump has exactly one line per direction per install, for the very sockets those two
# processes hold (tgid, addresses, and each side's TX secret is the other's RX secret).
# Then every readable mapping of both processes (/proc/PID/mem) is searched for every
# dumped secret of 16 bytes or more, as dumped and byte-reversed: none is found. The
# scan can fail: the agent's own memory holds each identity's SVID private key, and a
# control process holding the dump's secrets is found holding every one of them.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7191
CLIENT=spiffe://$KW_TD/keyiso-client
SERVER=spiffe://$KW_TD/keyiso-server
HOOKED=$KW_BUILD/kwarden-testhooks
SCAN=$KW_E2E_DIR/tools/kw_memscan.py
DUMP=$T/keys.dump
[[ -x $HOOKED ]] || fail "test build $HOOKED is missing: build it first (cmake target kwarden-testhooks)"
[[ -x $KW_TOOLS/kw_hold ]] || fail "tool $KW_TOOLS/kw_hold is missing: build it first (cmake target kw_hold)"
mkdir -p "$T/bin"
install -m 0755 "$KW_TOOLS/kw_hold" "$T/bin/keyiso-client"
install -m 0755 "$KW_TOOLS/kw_hold" "$T/bin/keyiso-server"
make_cgroup
# The client's SVID rotates at half-life, 40 s: a rotated key is dumped, and searched, too
# (one rotation during the test: the agent then holds the key it rotated to).
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$CLIENT", "svid_ttl": "80s",
      "selectors": { "exe": "$T/bin/keyiso-client", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$SERVER", "selectors": { "exe": "$T/bin/keyiso-server", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PORT, "tls": "mutual" } ] } ],
  "destinations": [ { "name": "held", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$SERVER" } ],
  "rules": [ { "from": "$CLIENT", "to": "held" } ] }
JSON
# --unprotect: the scan reads the workloads' and the agent's memory, which the guard
# refuses to everyone but the agent (t_guard_ptrace proves that); here the scanner
# stands for an attacker who got past it, to show there is nothing to find.
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --test-key-dump "$DUMP" --unprotect)
KWARDEN=$HOOKED start_agent "$T/policy.json"
svids_at_least() { # N [ID]: the dump holds at least N SVID keys (of ID)
    (($(grep -c "^svid spiffe_id=${2:-}" "$DUMP" || true) >= $1))
}
wait_until 10 "the SVID keys in $DUMP" svids_at_least 2
assert_eq "mode of the key dump" 600 "$(stat -c %a "$DUMP")"
for id in "$CLIENT" "$SERVER"; do
    grep -qE "^svid spiffe_id=$id serial=[0-9a-f]+ key=[0-9a-f]{64}\$" "$DUMP" ||
        fail "no P-256 key of $id in the dump: $(cut -c1-80 "$DUMP")"
done

tls_stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }
tx_before=$(tls_stat TlsCurrTxSw)
rx_before=$(tls_stat TlsCurrRxSw)
enrolled_bg() { # NAME CMD...: as the workload, enrolled, in the background; pid in $T/NAME.pid
    local name=$1
    shift
    KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/$name.pid" \
        "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@" >"$T/$name.log" 2>&1
}
enrolled_bg server "$T/bin/keyiso-server" serve "$PORT"
listening() { ss -Htln "sport = :$PORT" | grep -q .; }
wait_until 30 "the enrolled server on port $PORT" listening
line="kwarden-keyiso-$$-$RANDOM"
ev_mark
enrolled_bg client "$T/bin/keyiso-client" connect 127.0.0.1 "$PORT" "$line"
held() { # NAME: the tool finished its exchange and holds the connection
    grep -qx held "$T/$1.log" && return 0
    grep -q . "$T/$1.log" && ! grep -q '^received: ' "$T/$1.log" && fail "$1 failed: $(cat "$T/$1.log")"
    return 1
}
wait_until 30 "the client to hold its connection" held client
wait_until 10 "the server to hold its connection" held server
assert_eq "what the server read" "received: $line" "$(grep '^received: ' "$T/server.log")"
assert_eq "what the client read" "received: ack:$line" "$(grep '^received: ' "$T/client.log")"
expect_one_event "the client handshake" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$CLIENT" "peer_id=$SERVER" cipher=TLS_AES_128_GCM_SHA256
expect_one_event "the server handshake" '.type == "tls" and .role == "server" and .result == "ok"'
assert_event "spiffe_id=$SERVER" "peer_id=$CLIENT" cipher=TLS_AES_128_GCM_SHA256
client_pid=$(cat "$T/client.pid")
server_pid=$(cat "$T/server.pid")
expect_ok kwarden_cli identity "$client_pid"
assert_eq "identity of the client" "$CLIENT" "$KW_OUT"
expect_ok kwarden_cli identity "$server_pid"
assert_eq "identity of the server" "$SERVER" "$KW_OUT"
# Both ends are kTLS sockets that exist now (the Curr counters count open ones).
(($(tls_stat TlsCurrTxSw) >= tx_before + 2)) || fail "TlsCurrTxSw: $tx_before -> $(tls_stat TlsCurrTxSw), expected +2"
(($(tls_stat TlsCurrRxSw) >= rx_before + 2)) || fail "TlsCurrRxSw: $rx_before -> $(tls_stat TlsCurrRxSw), expected +2"

# The connection, from the kernel's socket table: each end held by one process only.
conn=$(ss -Htnp state established "( sport = :$PORT or dport = :$PORT )")
note "the held connection:"$'\n'"$conn"
end_of() { # PID -> "LOCAL PEER" of the one socket of PID on the connection
    awk -v p="pid=$1," 'index($0, p) { print $3, $4 }' <<<"$conn"
}
read -r client_local client_peer <<<"$(end_of "$client_pid")"
read -r server_local server_peer <<<"$(end_of "$server_pid")"
assert_eq "the client's end" "127.0.0.1:$PORT" "$client_peer"
assert_eq "the server's end" "$client_local 127.0.0.1:$PORT" "$server_peer $server_local"
assert_eq "processes holding the connection's sockets (the agent kept none)" 2 "$(grep -o 'pid=' <<<"$conn" | wc -l)"

# Exactly one dump line per direction per install, for these two sockets.
field() { # LINE NAME
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}
assert_eq "kTLS lines in the dump" 4 "$(grep -c '^tls ' "$DUMP")"
for side in "client $client_pid $CLIENT $client_local $client_peer" "server $server_pid $SERVER $server_local $server_peer"; do
    read -r role pid id here there <<<"$side"
    for dir in tx rx; do
        l=$(grep "^tls .* role=$role dir=$dir " "$DUMP") || fail "no $role $dir line in the dump"
        assert_eq "the $role $dir line (tgid spiffe_id local peer cipher)" \
            "$pid $id $here $there TLS_AES_128_GCM_SHA256" \
            "$(field "$l" tgid) $(field "$l" spiffe_id) $(field "$l" local) $(field "$l" peer) $(field "$l" cipher)"
        assert_match "the $role $dir key material" '^[0-9a-f]{64} [0-9a-f]{32} [0-9a-f]{16} [0-9a-f]{8} [0-9a-f]{16}$' \
            "$(field "$l" secret) $(field "$l" key) $(field "$l" iv) $(field "$l" salt) $(field "$l" rec_seq)"
        printf -v "${role}_${dir}" '%s' "$(field "$l" secret)"
    done
done
# shellcheck disable=SC2154 # set by printf -v above
{
    assert_eq "the client's TX secret is the server's RX secret" "$client_tx" "$server_rx"
    assert_eq "the server's TX secret is the client's RX secret" "$server_tx" "$client_rx"
    [[ $client_tx != "$client_rx" ]] || fail "both directions have the same traffic secret"
}

# The client's SVID rotated once, so a rotated key is searched for too. The search uses
# a snapshot of the dump: what the control holds is exactly what is searched for.
wait_until 60 "the client's rotated SVID in the dump" svids_at_least 2 "$CLIENT "
cp "$DUMP" "$T/keys.snap"
DUMP=$T/keys.snap

# The control: a process that does hold every secret of the dump.
kw_bg "$KW_PY" "$SCAN" hold "$DUMP" >"$T/control.log" 2>&1
control_pid=$KW_BG_PID
wait_until 20 "the control process to load the secrets" grep -q '^holding ' "$T/control.log"

note "scanning the memory of the agent ($KW_AGENT_PID), the client ($client_pid), the server ($server_pid) and the control ($control_pid)"
"$KW_PY" "$SCAN" scan "$DUMP" "$KW_AGENT_PID" "$client_pid" "$server_pid" "$control_pid" >"$T/scan.jsonl" ||
    fail "the scan failed: $(tail -n 3 "$T/scan.jsonl")"
scan_of() { # PID -> its report
    jq -c --argjson p "$1" 'select(.pid == $p)' "$T/scan.jsonl"
}
secrets=$(($(grep -c '^svid ' "$DUMP") + 3 * 4))  # key per SVID; secret, key, crypto_info per kTLS line
summary='"\(.comm) (pid \(.pid)): \(.regions) mappings, \(.bytes) bytes, \(.secrets) secrets searched (\(.skipped_short) short fields skipped), \(.found | length) found; unreadable: \(.unreadable | map(split(": ")[0] | split(" ")[2]) | join(" "))"'
for pid in "$KW_AGENT_PID" "$client_pid" "$server_pid" "$control_pid"; do
    report=$(scan_of "$pid")
    [[ -n $report ]] || fail "no scan report for pid $pid"
    note "$(jq -r "$summary" <<<"$report")"
    assert_eq "secrets searched in pid $pid" "$secrets" "$(jq .secrets <<<"$report")"
    assert_eq "short fields (iv, salt, rec_seq) counted in pid $pid" 12 "$(jq .skipped_short <<<"$report")"
done

# The workloads: every mapping was read (but the kernel's [vvar] pages) and nothing found.
for who in "client $client_pid" "server $server_pid"; do
    read -r name pid <<<"$who"
    report=$(scan_of "$pid")
    jq -e '.regions > 0 and .bytes > 0' <<<"$report" >/dev/null || fail "nothing of the $name was read: $report"
    assert_eq "mappings of the $name that could not be read, other than [vvar*] and [vsyscall]" "" \
        "$(jq -r '.unreadable[] | select(test(" \\[(vvar|vvar_vclock|vsyscall)\\]: ") | not)' <<<"$report")"
    assert_eq "secrets found in the $name's memory" "{}" "$(jq -c .found <<<"$report")"
done

# The agent holds each identity's current SVID key (BoringSSL: little-endian words).
agent=$(scan_of "$KW_AGENT_PID")
for id in "$CLIENT" "$SERVER"; do
    found=$(jq -r --arg p "svid $id " '.found | to_entries[] | select(.key | startswith($p)) | "\(.key): \(.value[0])"' <<<"$agent")
    [[ -n $found ]] || fail "the agent's memory does not hold the SVID key of $id: the scan cannot see keys (report: $agent)"
    note "the agent holds the SVID key of $id: $(head -n 1 <<<"$found")"
done
note "in the agent: $(jq -r '.found | keys | map(select(startswith("svid"))) | length' <<<"$agent") of $(grep -c '^svid ' "$DUMP") SVID keys ever issued (superseded ones included), $(jq -r '.found | keys | map(select(startswith("tls"))) | length' <<<"$agent") of 12 kTLS secrets"

# The control holds every secret, as dumped.
control=$(scan_of "$control_pid")
assert_eq "secrets found in the control process" "$secrets" "$(jq '.found | length' <<<"$control")"
assert_eq "secrets found in the control process as dumped" "$secrets" \
    "$(jq '[.found[] | select(any(.[]; startswith("as-is ")))] | length' <<<"$control")"

kw_kill_pid "$control_pid"
stop_agent
