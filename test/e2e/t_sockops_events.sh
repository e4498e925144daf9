#!/usr/bin/env bash
# An allowed connection to a gated destination that asks for lifecycle events produces
# one "established" and one "closed" event (sockops is attached for it: status says so); the closed event counts at least the bytes sent and a positive
# duration, and names the destinations and the policy revision the connect was allowed under.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7111
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"

write_billing_policy "$T/policy.json" "$PORT"
jq '.destinations[0].lifecycle_events = true' "$T/policy.json" >"$T/policy.tmp" && mv "$T/policy.tmp" "$T/policy.json"
start_agent "$T/policy.json"
expect_ok kwarden_cli status --json
assert_eq "lifecycle events in status" true "$(jq .lifecycle_events <<<"$KW_OUT")"

TEXT=$(head -c 3000 /dev/zero | tr '\0' 'x')-$$
LEN=${#TEXT}
expect_ok as_workload --pidfile "$T/client.pid" "$KW_ATTESTED" --send "$TEXT" 127.0.0.1 "$PORT"
wait_sink_data db "$TEXT"
pid=$(cat "$T/client.pid")

# Matched by the connecting process when the event names it, else by the only
# connection of this test.
SOCK_FILTER='.type == $t and ((has("tgid") | not) or (.tgid | tostring) == $pid)'
expect_one_event "established" "$SOCK_FILTER" --arg t established --arg pid "$pid"
established=$KW_EVENT
expect_one_event "closed" "$SOCK_FILTER" --arg t closed --arg pid "$pid"
assert_event_has bytes_sent bytes_received duration_ns
jq -e --argjson len "$LEN" '(.bytes_sent | tonumber) >= $len' <<<"$KW_EVENT" >/dev/null ||
    fail "closed event: bytes_sent should be >= $LEN (bytes the client sent), saw $(jq -c .bytes_sent <<<"$KW_EVENT")"
jq -e '(.duration_ns | tonumber) > 0' <<<"$KW_EVENT" >/dev/null ||
    fail "closed event: duration_ns should be > 0, saw $(jq -c .duration_ns <<<"$KW_EVENT")"
for f in dst_port spiffe_id; do
    if jq -e --arg f "$f" 'has($f)' <<<"$KW_EVENT" >/dev/null; then
        case $f in
            dst_port) assert_event "dst_port=$PORT" ;;
            spiffe_id) assert_event "spiffe_id=$KW_BILLING" ;;
        esac
    fi
done
# Named by the policy the connect was allowed under: the one in force.
rev=$(status_revision)
[[ -n $rev ]] || fail "kwarden status reports no policy revision"
jq -e --arg rev "$rev" '.policy_revision as $p | $p != null and ($rev | startswith($p))' <<<"$KW_EVENT" >/dev/null ||
    fail "closed event: policy_revision should be the first digits of $rev, saw $(jq -c .policy_revision <<<"$KW_EVENT")"
jq -e '.destinations | length > 0' <<<"$KW_EVENT" >/dev/null ||
    fail "closed event: the destinations it was allowed to should be named, saw $(jq -c .destinations <<<"$KW_EVENT")"
# established comes before closed in the stream.
first=$(ev_select '.type == "established" or .type == "closed"' | head -n1 | jq -r .type)
assert_eq "first lifecycle event" established "$first"
note "established: $established"

stop_agent
