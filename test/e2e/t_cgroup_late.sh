#!/usr/bin/env bash
# A cgroup selector naming a cgroup that does not exist yet matches nothing; once the
# cgroup is created the agent re-resolves it and the workload gets its identity. When
# the cgroup is removed and created again (as systemd does on a unit restart) it has a
# new id, and the agent follows it again.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7190
setup_tools
make_attested
start_sink db "$PORT"
KW_CG=/kwlate-$$
KW_CG_DIR=/sys/fs/cgroup$KW_CG
write_billing_policy "$T/policy.json" "$PORT"
start_agent "$T/policy.json"

# Tries the attested connect until it succeeds (bounded): the agent re-resolves cgroups
# once a second.
attested_connects() { # TAG
    as_workload "$KW_ATTESTED" --send "$1" 127.0.0.1 "$PORT" >/dev/null 2>&1
}
create_cgroup() {
    mkdir "$KW_CG_DIR" || fail "cannot create cgroup $KW_CG_DIR"
    kw_track cgroups "$KW_CG_DIR"
    KW_CG_ID=$(stat -c %i "$KW_CG_DIR")
}

create_cgroup
first_id=$KW_CG_ID
wait_until 15 "the agent to pick up the new cgroup $KW_CG" attested_connects "late-1-$$"
wait_sink_data db "late-1-$$"

rmdir "$KW_CG_DIR" || fail "cannot remove cgroup $KW_CG_DIR"
create_cgroup
[[ $KW_CG_ID != "$first_id" ]] || fail "re-created cgroup kept id $first_id: the test proves nothing"
wait_until 15 "the agent to follow the re-created cgroup $KW_CG (id $first_id -> $KW_CG_ID)" \
    attested_connects "late-2-$$"
wait_sink_data db "late-2-$$"
grep -q "cgroup was created or re-created" "$T/agent.log" || fail "agent log does not show the re-resolution"

# Another binary in the same cgroup is still refused.
expect_errno EPERM as_workload "$T/bin/kw_client" --send "other-$$" 127.0.0.1 "$PORT"
stop_agent
