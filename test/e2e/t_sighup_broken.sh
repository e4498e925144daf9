#!/usr/bin/env bash
# A broken policy never replaces a working one. SIGHUP with a broken --policy file: the
# agent logs a precise error (naming the JSON path), keeps running, and the old policy
# stays in force. `kwarden policy apply` of the broken file exits 1 naming the JSON
# path. A valid new policy applied with `kwarden policy apply` takes effect.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7109   # declared by the first policy, not by the second
PORT2=7110  # declared by the second policy
# The error must name where in the document the problem is: rules[0].to, /rules/0/to, ...
PATH_RE='rules(\[0\]|/0|\.0)(\.|/)to'
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
start_sink db2 "$PORT2"

write_policy() { # FILE PORT RULE_TO
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$2], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "$3" } ] }
JSON
}
old_policy_enforced() { # TAG
    expect_errno EPERM as_workload "$T/bin/kw_client" --send "unattested-$1-$$" 127.0.0.1 "$PORT"
    expect_ok as_workload "$KW_ATTESTED" --send "attested-$1-$$" 127.0.0.1 "$PORT"
    wait_sink_data db "attested-$1-$$"
    grep -qF "unattested-$1-$$" "$T/sink-db" && fail "unattested data ($1) reached the service"
    return 0
}

write_policy "$T/policy.json" "$PORT" db
start_agent "$T/policy.json"
old_policy_enforced start
rev_before=$(status_revision)
note "policy revision before: '$rev_before'"

# Broken: a rule names a destination that does not exist (valid JSON, invalid policy).
write_policy "$T/broken.json" "$PORT2" no-such-destination
expect_status 1 "$KWARDEN" policy check "$T/broken.json"
assert_match "'kwarden policy check' error names the JSON path" "$PATH_RE" "$KW_OUT"

log_size=$(kw_size "$T/agent.log")
cp "$T/broken.json" "$T/policy.json"
kill -HUP "$KW_AGENT_PID"
log_has_path() { tail -c "+$((log_size + 1))" "$T/agent.log" | grep -Eq "$PATH_RE"; }
wait_until 20 "the agent to log the rejected policy with its JSON path (/$PATH_RE/)" log_has_path
note "agent said: $(tail -c "+$((log_size + 1))" "$T/agent.log" | grep -E "$PATH_RE" | head -n 3)"
sleep 0.5
kw_pid_alive "$KW_AGENT_PID" || fail "the agent exited after SIGHUP with a broken policy"
kw_agent_ready || fail "the agent stopped answering 'kwarden status' after SIGHUP with a broken policy"
old_policy_enforced after-sighup
# The new port must not have become declared.
expect_ok as_workload "$T/bin/kw_client" --send "port2-still-free-$$" 127.0.0.1 "$PORT2"
[[ -z $rev_before ]] || assert_eq "policy revision after a rejected SIGHUP" "$rev_before" "$(status_revision)"

# policy apply of the broken file: exit 1, error names the JSON path, nothing changes.
expect_status 1 kwarden_cli policy apply "$T/broken.json"
assert_match "'kwarden policy apply' error names the JSON path" "$PATH_RE" "$KW_OUT"
old_policy_enforced after-apply

# A valid new policy: db moves to PORT2, so PORT becomes undeclared.
write_policy "$T/new.json" "$PORT2" db
expect_ok kwarden_cli policy apply "$T/new.json"
expect_ok as_workload "$T/bin/kw_client" --send "now-undeclared-$$" 127.0.0.1 "$PORT"
wait_sink_data db "now-undeclared-$$"
sink_snapshot db2
expect_errno EPERM as_workload "$T/bin/kw_client" --send "now-declared-$$" 127.0.0.1 "$PORT2"
assert_sink_unchanged db2
expect_ok as_workload "$KW_ATTESTED" --send "attested-new-$$" 127.0.0.1 "$PORT2"
wait_sink_data db2 "attested-new-$$"
if [[ -n $rev_before ]]; then
    [[ $(status_revision) != "$rev_before" ]] || fail "policy revision did not change after applying a new policy"
fi

stop_agent
