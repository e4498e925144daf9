#!/usr/bin/env bash
# kw-timeout: 420
# Only pinned code runs under an identity. The attested binary's
# workload allows LD_PRELOAD, so it keeps its identity with the variable set; but the
# preloaded library is not pinned: the loader's executable mapping of it is refused
# (EPERM, "failed to map segment"), its constructor never runs, nothing it would send
# reaches the sink, and a guard event names the file. Positive control: the same library
# opened with allow_code loads under the identity and does reach the sink. A copy bind-
# mounted over the pinned path in a private mount namespace (unshare -rm, as any user
# can) is another inode and is refused the same way; the same namespace without the bind
# mount loads the pinned file.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7161
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
install -m 0755 "$KW_TOOLS/kw_preload.so" "$T/bin/x.so"
install -m 0755 "$KW_TOOLS/kw_preload.so" "$T/bin/evil.so"

write_policy() { # FILE ALLOW_CODE_JSON
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING", "allow_env": ["LD_PRELOAD"], "allow_code": $2,
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
}
write_policy "$T/policy.json" '[]'
start_agent "$T/policy.json"

# The unpinned preload: the process runs (and keeps its identity: its own connect goes
# through), the library does not.
ev_mark
expect_ok as_workload --pidfile "$T/inj.pid" env "LD_PRELOAD=$T/bin/x.so" "KW_PRELOAD_SEND=$PORT:inj-$$" \
    "$KW_ATTESTED" --send "main-$$" 127.0.0.1 "$PORT"
assert_match "the loader's refusal" "x.so.*cannot be preloaded.*(failed to map|Operation not permitted)" "$KW_OUT"
[[ $KW_OUT != *"kw_preload: injected"* ]] || fail "the unpinned library ran: $KW_OUT"
wait_sink_data db "main-$$"
grep -q "inj-$$" "$T/sink-db" && fail "the injected library reached the sink"
expect_one_event "the refused mapping of x.so" '.type == "guard" and .action == "exec_map" and .file == "x.so"'
assert_event decision=deny errno=EPERM "spiffe_id=$KW_BILLING" "tgid=$(cat "$T/inj.pid")" audit=false

# Positive control: the same library, pinned through allow_code, runs under the identity
# and reaches the sink: the refusal above is what kept it out.
write_policy "$T/policy-open.json" "[\"$T/bin/x.so\"]"
expect_ok kwarden_cli policy apply "$T/policy-open.json"
expect_ok as_workload env "LD_PRELOAD=$T/bin/x.so" "KW_PRELOAD_SEND=$PORT:ctl-$$" \
    "$KW_ATTESTED" --send "main2-$$" 127.0.0.1 "$PORT"
assert_match "the pinned library ran" "kw_preload: sent" "$KW_OUT"
wait_sink_data db "ctl-$$"

# A private mount namespace: the same path, another inode. The unprivileged workload
# makes one (user namespace), binds a copy over the pinned library and execs.
ns_run() { # BIND(0|1) TAG
    as_workload --pidfile "$T/ns.pid" unshare -rm sh -c '
        if [ "$1" = 1 ]; then mount --bind "$2/bin/evil.so" "$2/bin/x.so" || exit 90; fi
        exec env LD_PRELOAD="$2/bin/x.so" KW_PRELOAD_SEND="$3:$4" "$5" --send "ns-main-$4" 127.0.0.1 "$3"
    ' sh "$1" "$T" "$PORT" "$2" "$KW_ATTESTED"
}
ev_mark
sink_snapshot db
expect_ok ns_run 1 "bound-$$"
[[ $KW_OUT != *"kw_preload: injected"* ]] || fail "the bind-mounted library ran: $KW_OUT"
wait_sink_data db "ns-main-bound-$$"
[[ $(grep -o "bound-$$" "$T/sink-db" | wc -l) == "$(grep -o "ns-main-bound-$$" "$T/sink-db" | wc -l)" ]] ||
    fail "the bind-mounted library reached the sink"
# The event names the file that was really there: the copy's own name.
expect_one_event "the refused mapping of the bind-mounted copy" \
    '.type == "guard" and .action == "exec_map" and .file == "evil.so"'
assert_event decision=deny errno=EPERM "spiffe_id=$KW_BILLING"
# Control: the namespace alone changes nothing, the pinned file loads.
expect_ok ns_run 0 "plain-$$"
assert_match "the pinned library ran in the namespace" "kw_preload: sent" "$KW_OUT"
stop_agent
