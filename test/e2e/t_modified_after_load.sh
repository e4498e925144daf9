#!/usr/bin/env bash
# A binary modified after the policy was loaded is refused (the pinned hash no longer
# holds: same inode, new content and ctime). A fork of an attested process inherits the
# identity and is allowed; its exec of a shell is not the attested binary and is refused.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7103
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
start_agent "$T/policy.json"
ATT_SHA=$(sha256_of "$KW_ATTESTED")

# Before the change: allowed.
expect_ok as_workload --pidfile "$T/before.pid" "$KW_ATTESTED" --send "before-$$" 127.0.0.1 "$PORT"
wait_sink_data db "before-$$"
expect_connect_event allow "$(cat "$T/before.pid")" "$PORT" "spiffe_id=$KW_BILLING" \
    "exe=$KW_ATTESTED" "sha256=$ATT_SHA" mode=enforce protocol=tcp path=connect

# A fork of an attested process: the child's connect is allowed under the same identity.
ev_mark
expect_ok as_workload --pidfile "$T/fork.pid" "$KW_ATTESTED" --fork --send "forked-$$" 127.0.0.1 "$PORT"
wait_sink_data db "forked-$$"
expect_one_event "allowed connect of the forked child" \
    '.type == "connect" and .decision == "allow" and (.dst_port | tostring) == $port' --arg port "$PORT"
assert_event "spiffe_id=$KW_BILLING" "exe=$KW_ATTESTED" "uid=$KW_UID"
fork_parent=$(cat "$T/fork.pid")
child_tgid=$(jq -r .tgid <<<"$KW_EVENT")
[[ $child_tgid != "$fork_parent" ]] ||
    fail "the allowed connect came from the parent ($fork_parent), not from a forked child"

# Its exec of a shell: bash (unattested) is refused.
sink_snapshot db
ev_mark
expect_status 1 as_workload --pidfile "$T/execsh.pid" "$KW_ATTESTED" --exec-sh 127.0.0.1 "$PORT"
assert_match "bash (exec'd by the attested binary) error" 'Operation not permitted' "$KW_OUT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/execsh.pid")" "$PORT" /bin/bash spiffe_id=unattested mode=enforce \
    protocol=tcp path=connect dst_addr=127.0.0.1 destinations@=db

# Modify the attested binary in place, after the policy load: refused.
patch_in_place "$KW_ATTESTED"
[[ $(sha256_of "$KW_ATTESTED") != "$ATT_SHA" ]] || fail "patching $KW_ATTESTED did not change its hash"
ev_mark
expect_errno EPERM as_workload --pidfile "$T/modified.pid" "$KW_ATTESTED" --send "modified-$$" 127.0.0.1 "$PORT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/modified.pid")" "$PORT" "$KW_ATTESTED" spiffe_id=unattested mode=enforce \
    protocol=tcp path=connect dst_addr=127.0.0.1 destinations@=db

# Appending a byte (another common way a file changes) is refused as well.
printf '\n' >>"$KW_ATTESTED"
ev_mark
expect_errno EPERM as_workload --pidfile "$T/appended.pid" "$KW_ATTESTED" --send "appended-$$" 127.0.0.1 "$PORT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/appended.pid")" "$PORT" "$KW_ATTESTED" spiffe_id=unattested

stop_agent
