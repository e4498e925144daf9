#!/usr/bin/env bash
# Metrics as an operator gets them: a real Prometheus (Debian's 2.42, from the package,
# never run as a service) scrapes the agent's /metrics, and PromQL over its HTTP API
# returns exactly the traffic this test made: allowed and denied connections by identity
# and destination, the data octets of the allowed ones, the agent's mutual-TLS handshakes
# (counted under the enrolled client's identity, not the agent's). promtool accepts the
# exposition. With lifecycle events off (the default) no allowed connection makes an
# event: the agent did no work for them; asked for, they come, and the counters go on
# across the reload. Bad requests get their status and the endpoint
# keeps serving.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7171      # db: allowed
DENIED=7172    # ledger-plain: declared, no rule
TLS_PORT=7173  # ledger: mutual TLS, served by openssl s_server
METRICS=9977
PROM=9091
PROM_BIN=$TOP/.cache/prometheus/bin
[[ -x $PROM_BIN/prometheus && -x $PROM_BIN/promtool ]] ||
    fail "$PROM_BIN/prometheus and promtool are missing: run 'make deps' (scripts/install-deps.sh)"
LEDGER=spiffe://$KW_TD/ledger
setup_tools
make_attested
make_cgroup
make_mtls_peer "$LEDGER"
start_sink db "$PORT"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [
    { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" },
    { "name": "ledger-plain", "cidrs": ["127.0.0.1/32"], "ports": [$DENIED], "protocol": "tcp" },
    { "name": "ledger", "cidrs": ["127.0.0.1/32"], "ports": [$TLS_PORT], "protocol": "tcp",
      "tls": "mutual", "identity": "$LEDGER" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" }, { "from": "$KW_BILLING", "to": "ledger" } ] }
JSON
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --metrics-address "127.0.0.1:$METRICS")
start_agent "$T/policy.json"
grep -q "metrics on http://127.0.0.1:$METRICS/metrics" "$T/agent.log" ||
    fail "the agent does not say it serves metrics on port $METRICS: $(grep -i metric "$T/agent.log" | tail -n 3)"

# ---- Prometheus, scraping every second -----------------------------------------------------
cat >"$T/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kwarden
    static_configs:
      - targets: ['127.0.0.1:$METRICS']
YAML
expect_ok "$PROM_BIN/promtool" check config "$T/prometheus.yml"
kw_bg "$PROM_BIN/prometheus" --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom-data" \
    --web.listen-address="127.0.0.1:$PROM" >"$T/prometheus.log" 2>&1
promql() { # QUERY -> the value of its single sample, or "" when it has none
    curl -fsS --max-time 5 "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
        jq -r 'if .status == "success" and (.data.result | length) == 1 then .data.result[0].value[1] else "" end'
}
scraped() { [[ $(promql 'up{job="kwarden"}') == 1 ]]; }
wait_until 90 "Prometheus to scrape the agent (up == 1; $(tail -n 2 "$T/prometheus.log"))" scraped

# ---- known traffic ----------------------------------------------------------------------------
ALLOWED=3 DENIALS=2 HANDSHAKES=2
TEXT=$(head -c 1500 /dev/zero | tr '\0' 'm')-$$
LEN=${#TEXT}
ev_mark
for ((i = 0; i < ALLOWED; i++)); do
    expect_ok as_workload "$KW_ATTESTED" --send "$TEXT" 127.0.0.1 "$PORT"
done
wait_sink_data db "$TEXT"
for ((i = 0; i < DENIALS; i++)); do
    expect_errno EPERM as_workload "$KW_ATTESTED" 127.0.0.1 "$DENIED"
done
start_s_server "$TLS_PORT"
for ((i = 0; i < HANDSHAKES; i++)); do
    marker="kwarden-metrics-$i-$RANDOM"
    expect_ok as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- \
        "$KW_ATTESTED" --send "$marker"$'\n' --expect "$(rev <<<"$marker")" 127.0.0.1 "$TLS_PORT"
done

# ---- what Prometheus says --------------------------------------------------------------------
expect_value() { # WHAT WANT QUERY
    local got
    until [[ $(promql "$3") == "$2" ]]; do
        ((SECONDS < deadline)) || {
            got=$(promql "$3")
            fail "$1: PromQL '$3' gives '${got:-no sample}', expected $2; the agent serves: $(curl -fsS \
                "http://127.0.0.1:$METRICS/metrics" | grep -E '^kwarden_(connection|tls_handshakes)' | head -n 20)"
        }
        sleep 0.5
    done
    note "$1: $3 = $2"
}
deadline=$((SECONDS + 60))
sel="identity=\"$KW_BILLING\""
expect_value "allowed connections to db" "$ALLOWED" "kwarden_connections_total{decision=\"allow\",$sel,destination=\"db\"}"
expect_value "denied connections to ledger-plain" "$DENIALS" \
    "kwarden_connections_total{decision=\"deny\",$sel,destination=\"ledger-plain\"}"
expect_value "octets sent to db" "$((ALLOWED * LEN))" "kwarden_connection_sent_bytes_total{$sel,destination=\"db\"}"
expect_value "octets received from db (none: the sink only reads)" 0 "kwarden_connection_received_bytes_total{$sel,destination=\"db\"}"
# The agent made those connections, for billing: counted as billing's.
expect_value "mutual-TLS connections to ledger" "$HANDSHAKES" \
    "kwarden_connections_total{decision=\"allow\",$sel,destination=\"ledger\"}"
expect_value "client handshakes" "$HANDSHAKES" \
    'kwarden_tls_handshakes_total{role="client",result="ok",cipher="TLS_AES_128_GCM_SHA256"}'
expect_value "handshakes in the duration histogram" "$HANDSHAKES" \
    'kwarden_tls_handshake_duration_seconds_count{role="client"}'
expect_value "handshakes of billing over its mTLS octets (both ways moved)" 1 \
    "kwarden_connection_received_bytes_total{$sel,destination=\"ledger\"} > bool 0"
expect_value "no identity x destination pair folded" 0 kwarden_connection_series_folded
expect_value "lifecycle events off" 0 kwarden_lifecycle_events_enabled
expect_value "the SVID of billing expires in the future" 1 \
    "kwarden_svid_expiry_timestamp_seconds{$sel} > bool time()"
expect_value "the policy's revision" 1 "kwarden_policy_info{revision=\"$(status_revision)\"}"
expect_value "the agent's resident memory is reported" 1 'process_resident_memory_bytes > bool 1e6'
expect_value "nothing dropped" 0 kwarden_events_dropped_total

# The agent did no work per allowed connection: not one lifecycle event.
expect_no_event "a lifecycle event with lifecycle events off" '.type == "established" or .type == "closed"'
# The control: the same connection, db asking for lifecycle events, makes them (so their
# absence above is the setting's doing, not a stream that lost them), and the gauge says so.
jq '.destinations[0].lifecycle_events = true' "$T/policy.json" >"$T/policy-events.json"
expect_ok kwarden_cli policy apply "$T/policy-events.json"
ev_mark
expect_ok as_workload "$KW_ATTESTED" --send "$TEXT" 127.0.0.1 "$PORT"
expect_one_event "the closed event with lifecycle events on" '.type == "closed" and .spiffe_id == $id' --arg id "$KW_BILLING"
deadline=$((SECONDS + 30))
expect_value "lifecycle events on" 1 kwarden_lifecycle_events_enabled
# Counted under the new revision's numbering, in the same series: one more, never a reset.
expect_value "allowed connections to db after the reload" "$((ALLOWED + 1))" \
    "kwarden_connections_total{decision=\"allow\",$sel,destination=\"db\"}"

# ---- the exposition itself, and requests that are not scrapes ---------------------------------
curl -fsS "http://127.0.0.1:$METRICS/metrics" >"$T/metrics.txt" || fail "GET /metrics failed"
"$PROM_BIN/promtool" check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 ||
    fail "promtool check metrics: $(head -n 10 "$T/promtool.out")"
note "promtool check metrics: ok ($(grep -c '^# TYPE' "$T/metrics.txt") families, $(grep -vc '^#' "$T/metrics.txt") samples)"
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
assert_eq "POST /metrics" 405 "$(code -X POST "http://127.0.0.1:$METRICS/metrics")"
assert_eq "GET /other" 404 "$(code "http://127.0.0.1:$METRICS/other")"
reply=$(printf 'NOT HTTP\r\n\r\n' | socat -t 5 - "TCP:127.0.0.1:$METRICS" | head -n 2 | tr -d '\r')
assert_match "a line that is not HTTP" "^HTTP/1.1 400 Bad Request" "$reply"
# A connection that sends nothing is not waited on for ever, and does not stop scrapes.
socat -u - "TCP:127.0.0.1:$METRICS" </dev/null >/dev/null 2>&1 &
assert_eq "GET /metrics after bad requests" 200 "$(code "http://127.0.0.1:$METRICS/metrics")"
expect_ok kwarden_cli status --json
jq -e '.metrics.bad_requests >= 3 and .metrics.scrapes > 0' <<<"$KW_OUT" >/dev/null ||
    fail "status should count the bad requests and scrapes: $(jq -c .metrics <<<"$KW_OUT")"

stop_agent
