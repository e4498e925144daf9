#!/usr/bin/env bash
# Server-side admission: an enrolled python3 http.server of our
# trust domain admits mTLS clients by the rules, as clients are decided. A rule may name
# a federated partner's SPIFFE ID: that partner workload (an SVID of partner.org,
# verified against the partner's bundle) gets the file, another partner workload and a
# workload of ours the rules do not name are refused, and python3 never sees them. Then
# a "*" rule: anyone whose SVID verifies is admitted, the partner's too, as "*" lets
# every process reach a destination on the client side.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7181
FILES=spiffe://$KW_TD/files
PAYMENTS=spiffe://partner.org/payments
make_cgroup
make_node_ca
expect_ok "$KWARDEN" ca init --trust-domain partner.org --out "$T/partner"
"$KWARDEN" bundle show --ca "$T/partner" >"$T/partner.json" || fail "cannot show the partner's bundle"
expect_ok "$KWARDEN" svid mint --ca "$T/partner" --id "$PAYMENTS" --out "$T/payments" --ttl 1h
expect_ok "$KWARDEN" svid mint --ca "$T/partner" --id spiffe://partner.org/other --out "$T/partner-other" --ttl 1h
expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "spiffe://$KW_TD/stranger" --out "$T/stranger" --ttl 1h

write_policy() { # FILE RULE_FROM
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$FILES", "selectors": { "exe": "/usr/bin/python3", "argv_prefix": ["python3", "-m", "http.server"],
                                     "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $PORT, "tls": "mutual" } ] } ],
  "destinations": [ { "name": "files", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$FILES" } ],
  "rules": [ { "from": "$2", "to": "files" } ],
  "federation": [ { "trust_domain": "partner.org", "bundle": "$T/partner.json" } ] }
JSON
}
write_policy "$T/partner-rule.json" "$PAYMENTS"
write_policy "$T/any-rule.json" "*"
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/partner-rule.json"

start_enrolled_http_server "$PORT" "$FILES"

# A client elsewhere: openssl s_client holding an SVID (through 127.0.0.2: 127.0.0.1:$PORT
# is a mutual-TLS destination only the agent may connect to here).
sclient() { # SVID_DIR
    printf 'GET /file.txt HTTP/1.0\r\n\r\n' |
        timeout 30 openssl s_client -connect "127.0.0.2:$PORT" -tls1_3 -quiet \
            -cert "$1/svid.pem" -cert_chain "$1/svid.pem" -key "$1/svid_key.pem" -CAfile "$T/root/root.pem" \
            -verify_return_error 2>&1
}
requests() { grep -c '"GET /file.txt' "$T/http.log" || true; }
admitted() { # SVID_DIR ID
    local out
    ev_mark
    out=$(sclient "$1") || true
    [[ $out == *"$marker"* ]] || fail "the server did not admit $2: $out; agent log: $(tail -n 5 "$T/agent.log")"
    expect_one_event "the admitted $2" '.type == "tls" and .role == "server" and .result == "ok"'
    assert_event "peer_id=$2" "spiffe_id=$FILES"
}
refused() { # SVID_DIR ID
    local out before
    before=$(requests)
    ev_mark
    out=$(sclient "$1") || true
    [[ $out != *"$marker"* ]] || fail "the server admitted $2: $out"
    expect_one_event "the refused $2" '.type == "tls" and .role == "server" and .result == "failed"'
    assert_event "error~=no rule lets $2 reach $FILES"
    sleep 0.5
    assert_eq "requests python3 saw after refusing $2" "$before" "$(requests)"
}

admitted "$T/payments" "$PAYMENTS"
refused "$T/partner-other" spiffe://partner.org/other
refused "$T/stranger" "spiffe://$KW_TD/stranger"

# "*": anyone whose SVID verifies, a partner's workload no rule names too.
expect_ok kwarden_cli policy apply "$T/any-rule.json"
admitted "$T/partner-other" spiffe://partner.org/other

stop_agent
