#!/usr/bin/env bash
# "mode": "audit" allows and records: an unattested connect to a declared destination
# succeeds, its data arrives, and it leaves exactly one event with decision "deny",
# mode "audit". The attested binary leaves no deny event.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7107
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"

write_billing_policy "$T/policy.json" "$PORT" audit
start_agent "$T/policy.json"

expect_ok as_workload --pidfile "$T/unatt.pid" "$T/bin/kw_client" --send "audited-$$" 127.0.0.1 "$PORT"
wait_sink_data db "audited-$$"
expect_deny_event "$(cat "$T/unatt.pid")" "$PORT" "$T/bin/kw_client" spiffe_id=unattested mode=audit \
    protocol=tcp path=connect dst_addr=127.0.0.1 destinations@=db

expect_ok as_workload --pidfile "$T/att.pid" "$KW_ATTESTED" --send "attested-$$" 127.0.0.1 "$PORT"
wait_sink_data db "attested-$$"
expect_no_event "deny of the attested binary" \
    '.type == "connect" and .decision == "deny" and (.tgid | tostring) == $pid' --arg pid "$(cat "$T/att.pid")"

stop_agent
