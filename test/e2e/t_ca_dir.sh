#!/usr/bin/env bash
# A node CA made with the CA tooling: `ca init` makes the root offline,
# `ca sign-intermediate` the node's intermediate; the agent issues from it and OpenSSL
# verifies the SVIDs against the offline root. Federation bundles are kept per trust
# domain; a policy naming a missing bundle or another trust domain is refused and the
# last good state stays. A broken CA directory stops the agent from starting.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

setup_tools
make_attested
make_cgroup
make_node_ca
[[ ! -e $T/state/ca/root.key ]] || fail "sign-intermediate copied the root key to the node"
assert_eq "mode of the node CA directory" 700 "$(stat -c %a "$T/state/ca")"
assert_eq "mode of the node intermediate key" 600 "$(stat -c %a "$T/state/ca/intermediate.key")"

write_billing_policy "$T/policy.json" 7151
start_agent "$T/policy.json"
assert_eq "CA the agent issues from" "$T/state/ca" "$(kwarden_cli svid list --json | jq -r .ca)"
checked=$(verify_agent_svids "$T/root/root.pem")
assert_eq "SVIDs verified against the offline root" 1 "$checked"
serial=$(kwarden_cli svid list --json | jq -r '.svids[0].serial')

expect_ok kwarden_cli bundle show
printf '%s\n' "$KW_OUT" | jq -c '[.keys[].x5c]' >"$T/ours.x5c"
"$KWARDEN" bundle show --ca "$T/root" | jq -c '[.keys[].x5c]' >"$T/root.x5c"
cmp -s "$T/ours.x5c" "$T/root.x5c" || fail "the agent's bundle is not the offline root: $(cat "$T/ours.x5c") vs $(cat "$T/root.x5c")"

# Federation: a partner trust domain's bundle, shown separately, never merged.
expect_ok "$KWARDEN" ca init --trust-domain partner.org --out "$T/partner"
"$KWARDEN" bundle show --ca "$T/partner" >"$T/partner.json"
jq --arg b "$T/partner.json" '. + {federation: [{trust_domain: "partner.org", bundle: $b}]}' \
    "$T/policy.json" >"$T/federated.json"
expect_ok "$KWARDEN" policy check "$T/federated.json"
expect_ok kwarden_cli policy apply "$T/federated.json"
expect_ok kwarden_cli bundle show --trust-domain partner.org
printf '%s\n' "$KW_OUT" | jq -c '[.keys[].x5c]' >"$T/shown-partner.x5c"
jq -c '[.keys[].x5c]' "$T/partner.json" >"$T/partner.x5c"
cmp -s "$T/shown-partner.x5c" "$T/partner.x5c" || fail "the partner bundle shown is not the partner's file"
expect_ok kwarden_cli bundle show
[[ $(printf '%s\n' "$KW_OUT" | jq '.keys | length') == 1 ]] || fail "our bundle now holds more than our root: $KW_OUT"
serial=$(kwarden_cli svid list --json | jq -r '.svids[0].serial')

jq '.federation[0].bundle = "/nonexistent/partner.json"' "$T/federated.json" >"$T/missing.json"
expect_status 1 "$KWARDEN" policy check "$T/missing.json"
assert_match "policy check names the federation entry" "/federation/0/bundle: .*nonexistent" "$KW_OUT"
expect_status 1 kwarden_cli policy apply "$T/missing.json"
assert_match "policy apply names the federation entry" "/federation/0/bundle: .*nonexistent" "$KW_OUT"
expect_ok kwarden_cli bundle show --trust-domain partner.org
assert_eq "SVID serial after a refused policy" "$serial" "$(kwarden_cli svid list --json | jq -r '.svids[0].serial')"

jq '.trust_domain = "other.org" | .workloads[0].id = "spiffe://other.org/billing" | .rules[0].from = "spiffe://other.org/billing" | del(.federation)' \
    "$T/federated.json" >"$T/other-td.json"
expect_ok "$KWARDEN" policy check "$T/other-td.json"
expect_status 1 kwarden_cli policy apply "$T/other-td.json"
assert_match "policy apply names the trust domain mismatch" "/trust_domain: 'other.org' is not the trust domain of the node CA" "$KW_OUT"
assert_eq "SVID serial after a refused trust domain" "$serial" "$(kwarden_cli svid list --json | jq -r '.svids[0].serial')"
stop_agent_unguarded

# A CA directory whose key is not the intermediate's: the agent refuses to start.
cp "$T/root/root.key" "$T/state/ca/intermediate.key"
rc=0
timeout 60 "$KWARDEN" agent --policy "$T/policy.json" --state-dir "$T/state" --admin-socket "$KW_ADMIN" \
    >"$T/broken.log" 2>&1 || rc=$?
note "agent with a broken CA directory: status $rc: $(tail -n 3 "$T/broken.log")"
assert_eq "exit status of the agent with a broken CA directory" 1 "$rc"
grep -q "key does not belong to the signing certificate" "$T/broken.log" ||
    fail "the agent did not say what is wrong with the CA directory: $(cat "$T/broken.log")"
