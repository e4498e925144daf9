#!/usr/bin/env bash
# The attested binary (exe + uid + cgroup selectors), run in its cgroup as its uid,
# reaches the protected service on loopback and on a veth peer in another network
# namespace; the data arrives and each allowed connect is logged once with its identity.
# A negative control first shows the netns destination really is gated.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7101
setup_tools
make_attested
make_cgroup
make_netns

start_sink lo "$PORT"
start_sink ns --netns "$KW_NS" --addr 10.203.0.2 "$PORT"

# Without the agent the path works at all (so a later failure is the gate's doing).
expect_ok "$T/bin/kw_client" --send pre-lo 127.0.0.1 "$PORT"
expect_ok "$T/bin/kw_client" --send pre-ns 10.203.0.2 "$PORT"
wait_sink_data lo pre-lo
wait_sink_data ns pre-ns
sink_snapshot lo
sink_snapshot ns

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32", "10.203.0.2/32"],
                      "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
start_agent "$T/policy.json"
ATT_SHA=$(sha256_of "$KW_ATTESTED")

# Negative control: the plain tool (not attested) cannot reach the netns peer.
expect_errno EPERM as_workload --pidfile "$T/neg.pid" "$T/bin/kw_client" --send nope 10.203.0.2 "$PORT"
assert_sink_unchanged ns
expect_deny_event "$(cat "$T/neg.pid")" "$PORT" "$T/bin/kw_client" \
    spiffe_id=unattested mode=enforce protocol=tcp path=connect dst_addr=10.203.0.2 destinations@=db

# Loopback.
expect_ok as_workload --pidfile "$T/lo.pid" "$KW_ATTESTED" --send "attested-lo-$$" 127.0.0.1 "$PORT"
wait_sink_data lo "attested-lo-$$"
expect_connect_event allow "$(cat "$T/lo.pid")" "$PORT" "spiffe_id=$KW_BILLING" \
    "exe=$KW_ATTESTED" "sha256=$ATT_SHA" mode=enforce protocol=tcp path=connect \
    dst_addr=127.0.0.1 destinations@=db

# veth peer in another network namespace.
expect_ok as_workload --pidfile "$T/ns.pid" "$KW_ATTESTED" --send "attested-ns-$$" 10.203.0.2 "$PORT"
wait_sink_data ns "attested-ns-$$"
expect_connect_event allow "$(cat "$T/ns.pid")" "$PORT" "spiffe_id=$KW_BILLING" \
    "exe=$KW_ATTESTED" "sha256=$ATT_SHA" mode=enforce protocol=tcp path=connect \
    dst_addr=10.203.0.2 destinations@=db

stop_agent
