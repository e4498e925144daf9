#!/usr/bin/env bash
# The agent decides mutual-TLS destinations by the kernel's rule (issue 12, defect 6):
# a connection is governed by every declared destination containing it, mutual-TLS or
# not. An attested, enrolled process (python3, attested by uid and cgroup) connects to a
# few dozen loopback addresses under generated policies, where nothing listens: a
# refusal is EPERM (the kernel's gate on plain destinations, the agent on mutual-TLS
# ones), an allowed connect gets ECONNREFUSED (from the kernel, or from the agent's own
# connect). Each errno must be what `kwarden policy decide`, the agent's decision
# function on the same compiled tables, says for that target. First a hand-written
# policy with the cases the agent got wrong: a mutual-TLS destination inside a broader
# plain one that refuses the workload, and a plain one inside a mutual-TLS one.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

make_cgroup
OTHER=spiffe://$KW_TD/other
PORTS=(7311 7312 7313)

# The workload: any process of uid $KW_UID in the test cgroup is $KW_BILLING; $OTHER is
# never carried (uid 4242).
workloads_json() {
    cat <<JSON
[ { "id": "$KW_BILLING", "selectors": { "uid": $KW_UID, "cgroup": "$KW_CG" } },
  { "id": "$OTHER", "selectors": { "uid": 4242 } } ]
JSON
}

cat >"$T/fixed.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "workloads": $(workloads_json),
  "destinations": [
    { "name": "lan", "cidrs": ["127.0.0.0/24"] },
    { "name": "ledger", "cidrs": ["127.0.0.7/32"], "ports": [7311], "tls": "mutual",
      "identity": "spiffe://$KW_TD/ledger" },
    { "name": "mesh", "cidrs": ["127.0.1.0/24"], "tls": "mutual", "identity": "spiffe://$KW_TD/mesh" },
    { "name": "db", "cidrs": ["127.0.1.5/32"], "ports": [7312] } ],
  "rules": [ { "from": "$OTHER", "to": "lan" }, { "from": "*", "to": "ledger" },
             { "from": "*", "to": "mesh" }, { "from": "$OTHER", "to": "db" } ] }
JSON

# Writes policy SEED to FILE and its targets, one ADDR:PORT a line, to TARGETS: CIDRs
# nested in 127.0.0.0/24 (and ::1, ::/0), a few ports or none, some mutual-TLS, rules
# from the workload, from $OTHER or from "*".
generate() { # SEED FILE TARGETS
    "$KW_PY" - "$@" "$KW_TD" "$KW_BILLING" "$OTHER" "${PORTS[*]}" "$(workloads_json)" <<'PY'
import json, random, sys
seed, path, targets, td, me, other, ports, workloads = sys.argv[1:]
rng = random.Random(int(seed))
ports = [int(p) for p in ports.split()]
dests, rules = [], []
for d in range(rng.randint(3, 7)):
    cidrs = set()
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.1:
            cidrs.add(rng.choice(["::1/128", "::/0"]))
        elif r < 0.2:
            cidrs.add(rng.choice(["127.0.0.0/8", "0.0.0.0/0"]))
        else:
            n = rng.choice([24, 26, 28, 29, 30, 31, 32])
            host = rng.randrange(256) & (0xFF << (32 - n)) & 0xFF
            cidrs.add(f"127.0.0.{host}/{n}")
    dest = {"name": f"d{d}", "cidrs": sorted(cidrs)}
    chosen = sorted(set(rng.choice(ports) for _ in range(rng.randint(0, 2))))
    if chosen:
        dest["ports"] = chosen
    if rng.random() < 0.4:
        dest.update({"tls": "mutual", "identity": f"spiffe://{td}/s{rng.randint(0, 1)}"})
    dests.append(dest)
    for _ in range(rng.randint(0, 3)):
        rules.append({"from": rng.choice([me, me, other, "*"]), "to": dest["name"]})
policy = {"version": 1, "trust_domain": td, "workloads": json.loads(workloads),
          "destinations": dests, "rules": rules}
with open(path, "w") as f:
    json.dump(policy, f, indent=1)
with open(targets, "w") as f:
    for _ in range(30):
        port = rng.choice(ports + [7319])
        r = rng.random()
        if r < 0.1:
            f.write(f"[::1]:{port}\n")
        elif r < 0.2:
            f.write(f"[::ffff:127.0.0.{rng.randrange(256)}]:{port}\n")
        else:
            f.write(f"127.0.0.{rng.randrange(256)}:{port}\n")
PY
}

# The enrolled, attested probe: one connect per target, its errno name (or "connected").
probe() { # TARGETS -> "TARGET ERRNO" lines
    as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$KW_PY" - "$1" <<'PY'
import errno, socket, sys
for line in open(sys.argv[1]):
    target = line.strip()
    host, port = target.rsplit(":", 1)
    v6 = host.startswith("[")
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host.strip("[]"), int(port)))
        result = "connected"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    finally:
        s.close()
    print(target, result, flush=True)
PY
}

declare -A SEEN=()
# Runs the probe under the policy in force and compares each errno with the decision
# function's answer for the workload: deny -> EPERM, allow -> ECONNREFUSED (nothing
# listens: the kernel's refusal, or the agent's connect's).
check_policy() { # POLICY TARGETS
    local policy=$1 targets=$2 target want got path line list
    mapfile -t list <"$targets"
    expect_ok "$KWARDEN" policy decide "$policy" --from "$KW_BILLING" "${list[@]}"
    printf '%s\n' "$KW_OUT" | grep '^{' >"$T/decided"
    expect_ok probe "$targets"
    printf '%s\n' "$KW_OUT" >"$T/probed"
    while read -r target got; do
        line=$(jq -c --arg t "$target" 'select(.target == $t)' "$T/decided" | head -n1)
        [[ -n $line ]] || fail "$policy: no decision for $target"
        path=$(jq -r .path <<<"$line")
        want=$(jq -r 'if .decision == "deny" then "EPERM" else "ECONNREFUSED" end' <<<"$line")
        # Allowed to ::1, the loopback may answer otherwise (no IPv6): anything but EPERM.
        [[ $got == "$want" || ($want != EPERM && $got != EPERM && $target == \[*) ]] ||
            fail "$policy: $target ($path path): the decision function says $want ($line), the connect got $got; policy: $(jq -c . "$policy")"
        SEEN[$path:$want]=$((${SEEN[$path:$want]:-0} + 1))
    done <"$T/probed"
    assert_eq "targets probed under $policy" "$(wc -l <"$targets")" "$(wc -l <"$T/probed")"
}

KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --handshake-timeout 3s)
start_agent "$T/fixed.json"

# The cases the agent decided by the first mutual-TLS destination alone, with their
# answers written down: these do not depend on the decision function.
printf '%s\n' 127.0.0.7:7311 127.0.0.8:7311 127.0.1.5:7312 127.0.1.6:7312 >"$T/fixed.targets"
expect_ok probe "$T/fixed.targets"
assert_eq "errnos under the hand-written policy" \
    "127.0.0.7:7311 EPERM|127.0.0.8:7311 EPERM|127.0.1.5:7312 EPERM|127.0.1.6:7312 ECONNREFUSED" \
    "$(paste -sd'|' <<<"$KW_OUT")"
check_policy "$T/fixed.json" "$T/fixed.targets"

for seed in 1 2 3 4 5; do
    generate "$seed" "$T/gen$seed.json" "$T/gen$seed.targets"
    expect_ok kwarden_cli policy apply "$T/gen$seed.json"
    check_policy "$T/gen$seed.json" "$T/gen$seed.targets"
done

note "verdicts seen: $(for k in "${!SEEN[@]}"; do printf '%s=%s ' "$k" "${SEEN[$k]}"; done)"
# The generated policies must reach every kind of case, or the comparison proves little.
for k in agent:EPERM agent:ECONNREFUSED kernel:EPERM kernel:ECONNREFUSED undeclared:ECONNREFUSED; do
    ((${SEEN[$k]:-0} > 0)) || fail "no target was decided $k: the generated policies miss a case"
done
