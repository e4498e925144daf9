#!/usr/bin/env bash
# X.509-SVIDs in a running agent: every SVID the agent issues passes OpenSSL's
# verification against the bundle `kwarden bundle show` prints; an SVID with svid_ttl
# "4s" is replaced (new serial, new fingerprint) before its not-after, by the same agent
# process; a policy change re-issues every SVID; no key ever leaves the agent.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7131
BATCH=spiffe://$KW_TD/batch
setup_tools
make_attested
make_cgroup
write_policy() { # FILE RULE_TO
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$KW_BILLING", "svid_ttl": "4s",
      "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$BATCH", "selectors": { "exe": "/usr/bin/true" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$2", "to": "db" } ] }
JSON
}
write_policy "$T/policy.json" "$KW_BILLING"
start_agent "$T/policy.json"
agent_pid=$KW_AGENT_PID

expect_ok kwarden_cli bundle show
printf '%s\n' "$KW_OUT" >"$T/bundle.json"
jq -e '.keys | length == 1 and (.[0] | .use == "x509-svid" and .kty == "EC" and .crv == "P-256" and (.x5c | length == 1))' \
    "$T/bundle.json" >/dev/null || fail "bundle show is not a SPIFFE bundle with one P-256 x509-svid key: $KW_OUT"
jq -e '.spiffe_sequence >= 1 and (has("spiffe_refresh_hint"))' "$T/bundle.json" >/dev/null ||
    fail "bundle show lacks spiffe_sequence or spiffe_refresh_hint: $KW_OUT"
bundle_to_pem "$T/root.pem" <"$T/bundle.json"
openssl x509 -in "$T/root.pem" -noout -ext subjectAltName | grep -q "URI:spiffe://$KW_TD\$" ||
    fail "the root does not carry spiffe://$KW_TD: $(openssl x509 -in "$T/root.pem" -noout -ext subjectAltName)"

checked=$(verify_agent_svids "$T/root.pem")
assert_eq "SVIDs verified by OpenSSL (one per workload ID)" 2 "$checked"

# Each `svid list` is one snapshot; fields are read from the same snapshot.
snap() { kwarden_cli svid list --json >"$T/snap.json"; }
field() { # ID FIELD
    jq -r --arg id "$1" --arg f "$2" '.svids[] | select(.spiffe_id == $id) | .[$f]' "$T/snap.json"
}

snap
batch_serial=$(field "$BATCH" serial)

# One python3 process asks the admin socket every 50 ms (a CLI and jq per poll cost
# about a second under emulation): it notes the first SVID's serial and not-after, then
# the time of the first answer with another serial. That time is taken after the answer,
# so a slow VM can only make the check below fail, not pass.
watch=$("$KW_PY" - "$KW_ADMIN" "$KW_BILLING" <<'PY'
import calendar, json, socket, sys, time
path, spiffe_id = sys.argv[1:]
def current():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b'{"op":"svid.list"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    svid = next(x for x in json.loads(data)["svids"] if x["spiffe_id"] == spiffe_id)
    return svid["serial"], svid["sha256"], calendar.timegm(time.strptime(svid["not_after"], "%Y-%m-%dT%H:%M:%SZ"))
first, first_sha, first_not_after = current()
deadline = time.time() + 8
while time.time() < deadline:
    serial, sha, _ = current()
    if serial != first:
        print(first, first_sha, first_not_after, f"{time.time():.3f}", serial, sha)
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
) || fail "no new serial for $KW_BILLING within 8 s"
read -r first_serial first_sha first_not_after seen_at second_serial second_sha <<<"$watch"
note "first SVID of $KW_BILLING: serial $first_serial, not after $first_not_after; new serial $second_serial seen at $seen_at"
awk -v a="$seen_at" -v b="$first_not_after" 'BEGIN { exit !(a < b) }' ||
    fail "the new SVID was seen at $seen_at, not before the old one's not-after $first_not_after"
[[ $second_sha != "$first_sha" ]] || fail "the rotated SVID has the old fingerprint"
snap
assert_eq "ttl_seconds of $KW_BILLING" 4 "$(field "$KW_BILLING" ttl_seconds)"
assert_eq "ttl_seconds of $BATCH (the default)" 3600 "$(field "$BATCH" ttl_seconds)"
assert_eq "SVID of $BATCH (1 h TTL) unchanged by the rotation" "$batch_serial" "$(field "$BATCH" serial)"
assert_eq "agent pid (nothing restarted)" "$agent_pid" "$KW_AGENT_PID"
kw_pid_alive "$agent_pid" || fail "the agent exited"
grep -q "rotated the SVID of $KW_BILLING: serial $first_serial -> " "$T/agent.log" ||
    fail "the agent did not log the rotation of serial $first_serial"

# A policy change re-issues every SVID, the 1 h one included.
write_policy "$T/policy2.json" "$BATCH"
expect_ok kwarden_cli policy apply "$T/policy2.json"
snap
[[ $(field "$BATCH" serial) != "$batch_serial" ]] || fail "a policy change did not re-issue the SVID of $BATCH"
checked=$(verify_agent_svids "$T/root.pem")
assert_eq "SVIDs verified after the policy change" 2 "$checked"

# No key in anything the agent says.
kwarden_cli svid list --json >"$T/list.json"
kwarden_cli status --json >"$T/status.json"
for f in "$T/list.json" "$T/status.json" "$T/agent.log" "$T/bundle.json"; do
    grep -q "PRIVATE KEY" "$f" && fail "$f contains a private key"
done
find "$T/state" -type f -exec grep -l "PRIVATE KEY" {} + && fail "the agent wrote a private key under its state directory"

stop_agent
