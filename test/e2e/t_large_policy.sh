#!/usr/bin/env bash
# A policy of 1,000 workloads x 1,000 destinations (plus the billing workload and db)
# loads, and decisions inside it stay exact: a process matching workload w3 (binary 3 of
# 8, uid 2003) is attested as w3 and refused at db, which only billing may reach; the
# billing binary still reaches db; the same binary as an unlisted uid is unattested.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7180
N=1000
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
for b in 0 1 2 3 4 5 6 7; do install -m 0755 "$KW_TOOLS/kw_client" "$T/bin/client-$b"; done

jq -n --argjson n "$N" --arg td "$KW_TD" --arg bin "$T/bin" --arg billing "$KW_BILLING" \
    --arg attested "$KW_ATTESTED" --argjson uid "$KW_UID" --arg cg "$KW_CG" --argjson port "$PORT" '
  { version: 1, trust_domain: $td, mode: "enforce",
    workloads: ([range($n) | { id: "spiffe://\($td)/w\(.)",
                               selectors: { exe: "\($bin)/client-\(. % 8)", uid: (2000 + .) } }]
                + [{ id: $billing, selectors: { exe: $attested, uid: $uid, cgroup: $cg } }]),
    destinations: ([range($n) | { name: "d\(.)", cidrs: ["10.\(100 + (. / 250 | floor)).\(. % 250).1/32"],
                                  ports: [5000 + (. % 100)], protocol: "tcp" }]
                   + [{ name: "db", cidrs: ["127.0.0.1/32"], ports: [$port], protocol: "tcp" }]),
    rules: ([range($n) | { from: "spiffe://\($td)/w\(.)", to: "d\(.)" }] + [{ from: $billing, to: "db" }]) }' \
    >"$T/policy.json"
assert_eq "workloads in the generated policy" $((N + 1)) "$(jq '.workloads | length' "$T/policy.json")"
assert_eq "destinations in the generated policy" $((N + 1)) "$(jq '.destinations | length' "$T/policy.json")"

started=$SECONDS
start_agent "$T/policy.json"
note "agent loaded $((N + 1)) x $((N + 1)) in $((SECONDS - started)) s (kernel $KWARDEN_VM_KERNEL, emulated)"
assert_eq "workloads the agent reports" $((N + 1)) "$(jq .workloads "$T/status.json")"
assert_eq "destinations the agent reports" $((N + 1)) "$(jq .destinations "$T/status.json")"

ev_mark
expect_errno EPERM as_workload --uid 2003 --pidfile "$T/w3.pid" "$T/bin/client-3" --send "w3-$$" 127.0.0.1 "$PORT"
expect_one_event "w3's refusal at db" '.type == "connect" and (.tgid | tostring) == $p' --arg p "$(cat "$T/w3.pid")"
assert_event decision=deny spiffe_id=spiffe://$KW_TD/w3 "destinations@=db" uid=2003

expect_errno EPERM as_workload --uid 4242 --pidfile "$T/nobody.pid" "$T/bin/client-3" --send "nobody-$$" 127.0.0.1 "$PORT"
expect_one_event "an unlisted uid's refusal" '.type == "connect" and (.tgid | tostring) == $p' --arg p "$(cat "$T/nobody.pid")"
assert_event decision=deny spiffe_id=unattested
assert_sink_unchanged db

expect_ok as_workload "$KW_ATTESTED" --send "billing-$$" 127.0.0.1 "$PORT"
wait_sink_data db "billing-$$"
stop_agent
