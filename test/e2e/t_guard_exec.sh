#!/usr/bin/env bash
# kw-timeout: 420
# No identity for injected code. The attested binary run with
# LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH in its environment gets no identity: the
# library really is loaded (it says so), the connect to the gated destination is refused
# with EPERM as "unattested", and one guard event names the workload and the variable.
# The same binary without the variable, behind a 100 KB variable (the kernel's scan
# crosses long strings), and with LD_PRELOAD once the workload lists it in allow_env, is
# attested and connects. An executable with no name on disk (memfd) matches no workload,
# not even one that selects on uid and cgroup only, which the same copy on disk matches.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7151
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
install -m 0755 "$KW_TOOLS/kw_preload.so" "$T/bin/x.so"

# Entry 0 attests the binary; entry 1 (uid and cgroup only) any other program there.
KW_ANYONE=spiffe://$KW_TD/anyone
write_policy() { # FILE ALLOW_ENV_JSON
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING", "allow_env": $2, "allow_code": ["$T/bin/x.so"],
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } },
                 { "id": "$KW_ANYONE", "selectors": { "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" }, { "from": "$KW_ANYONE", "to": "db" } ] }
JSON
}
write_policy "$T/policy.json" '[]'
start_agent "$T/policy.json"

# Positive control: the attested binary connects.
expect_ok as_workload "$KW_ATTESTED" --send "clean-$$" 127.0.0.1 "$PORT"
wait_sink_data db "clean-$$"

# Each loader variable: injected, refused as unattested, one guard event.
try_injected() { # VAR VALUE
    local var=$1 value=$2
    ev_mark
    sink_snapshot db
    expect_errno EPERM as_workload --pidfile "$T/inj.pid" env "$var=$value" "$KW_ATTESTED" --send "inj-$$" \
        127.0.0.1 "$PORT"
    if [[ $var != LD_LIBRARY_PATH ]]; then
        assert_match "$var loaded the library" "kw_preload: injected into pid" "$KW_OUT"
    fi
    assert_sink_unchanged db
    expect_deny_event "$(cat "$T/inj.pid")" "$PORT" "$KW_ATTESTED" spiffe_id=unattested
    expect_one_event "the guard withholding $KW_BILLING for $var" \
        '.type == "guard" and .action == "exec" and (.withheld_because | index($v)) != null' --arg v "$var"
    assert_event decision=deny "workload=$KW_BILLING" "tgid=$(cat "$T/inj.pid")" "exe=$KW_ATTESTED" \
        spiffe_id=unattested
}
try_injected LD_PRELOAD "$T/bin/x.so"
try_injected LD_AUDIT "$T/bin/x.so"
try_injected LD_LIBRARY_PATH /nonexistent

# The variable after a 100 KB one: the scan crosses it and still finds LD_PRELOAD.
BIG=$(head -c 100000 /dev/zero | tr '\0' b)
ev_mark
expect_errno EPERM as_workload env "BIG=$BIG" "LD_PRELOAD=$T/bin/x.so" "$KW_ATTESTED" --send "big-$$" 127.0.0.1 "$PORT"
expect_one_event "LD_PRELOAD behind a 100 KB variable" '.type == "guard" and .action == "exec"'
# ... and without it the same environment is clean: the scan reaches its end.
expect_ok as_workload env "BIG=$BIG" "$KW_ATTESTED" --send "big-clean-$$" 127.0.0.1 "$PORT"
wait_sink_data db "big-clean-$$"

# allow_env lets the operator open it up for one workload, deliberately (the library is
# pinned through allow_code: see t_code_unpinned_refused).
write_policy "$T/policy-preload.json" '["LD_PRELOAD"]'
expect_ok kwarden_cli policy apply "$T/policy-preload.json"
expect_ok as_workload env "LD_PRELOAD=$T/bin/x.so" "$KW_ATTESTED" --send "allowed-$$" 127.0.0.1 "$PORT"
assert_match "the allowed preload ran" "kw_preload: injected into pid" "$KW_OUT"
wait_sink_data db "allowed-$$"
# LD_AUDIT is still not allowed for it.
expect_errno EPERM as_workload env "LD_AUDIT=$T/bin/x.so" "$KW_ATTESTED" --send "audit-$$" 127.0.0.1 "$PORT"

# memfd: the plain tool from disk matches the uid+cgroup entry; the same bytes run from
# a memfd match nothing.
expect_ok as_workload "$T/bin/kw_client" --send "disk-$$" 127.0.0.1 "$PORT"
wait_sink_data db "disk-$$"
ev_mark
sink_snapshot db
expect_errno EPERM as_workload --pidfile "$T/memfd.pid" "$KW_PY" -c '
import os, sys
fd = os.memfd_create("kw_client")
with open(sys.argv[1], "rb") as f:
    os.write(fd, f.read())
os.execv("/proc/self/fd/%d" % fd, ["kw_client", "--send", sys.argv[2], "127.0.0.1", sys.argv[3]])
' "$T/bin/kw_client" "memfd-$$" "$PORT"
assert_sink_unchanged db
expect_one_event "the guard withholding an identity from a memfd exec" \
    '.type == "guard" and .action == "exec" and (.withheld_because | index("anonymous executable")) != null'
assert_event decision=deny "workload=$KW_ANYONE" spiffe_id=unattested
expect_one_event "the refused connect of the memfd process" \
    '.type == "connect" and .decision == "deny" and .spiffe_id == "unattested"'

stop_agent
