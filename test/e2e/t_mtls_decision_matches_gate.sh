#!/usr/bin/env bash
# The agent decides mutual-TLS destinations by the kernel's rule:
# a connection is governed by every declared destination containing it, mutual-TLS or
# not. An attested, enrolled process (python3, attested by uid and cgroup) connects to a
# few dozen loopback addresses under generated policies, where nothing listens: a
# refusal is EPERM (the kernel's gate on plain destinations, the agent on mutual-TLS
# ones), an allowed connect gets ECONNREFUSED (from the kernel, or from the agent's own
# connect). Each errno must be what `kwarden policy decide`, the agent's decision
# function on the same compiled tables, says for that target. First a hand-written
# policy with the cases the agent got wrong: a mutual-TLS destination inside a broader
# plain one that refuses the workload, and a plain one inside a mutual-TLS one. (The
# host test gate_test.cpp covers many more generated policies; this one shows the
# kernel and the agent agree with the function.)
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
        if r < 0.06:
            cidrs.add(rng.choice(["::1/128", "::/0"]))
        elif r < 0.12:
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
# Most targets fall inside a CIDR of the policy (where destinations nest), the others
# anywhere in 127.0.0.0/24, on ::1, or v4-mapped on an IPv6 socket.
small = [c for d in dests for c in d["cidrs"] if c.startswith("127.0.0.") and int(c.split("/")[1]) >= 24]
with open(targets, "w") as f:
    for _ in range(30):
        port = rng.choice(ports + [7319])
        r = rng.random()
        host = rng.randrange(256)
        if small and r < 0.6:
            net, n = rng.choice(small).split("/")
            base = int(net.rsplit(".", 1)[1])
            host = base + rng.randrange(2 ** (32 - int(n)))
        if r > 0.92:
            f.write(f"[::1]:{port}\n")
        elif r > 0.84:
            f.write(f"[::ffff:127.0.0.{host}]:{port}\n")
        else:
            f.write(f"127.0.0.{host}:{port}\n")
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

# Runs the probe under the policy in force and compares each errno with the decision
# function's answer for the workload: deny -> EPERM, allow -> ECONNREFUSED (nothing
# listens: the kernel's refusal, or the agent's connect's). Each verdict seen, as
# PATH:ERRNO, is appended to $T/seen. (One python3 compares them all: jq per target is
# slow under emulation.)
check_policy() { # POLICY TARGETS
    local policy=$1 targets=$2 list rc=0
    mapfile -t list <"$targets"
    expect_ok "$KWARDEN" policy decide "$policy" --from "$KW_BILLING" "${list[@]}"
    printf '%s\n' "$KW_OUT" | grep '^{' >"$T/decided"
    expect_ok probe "$targets"
    printf '%s\n' "$KW_OUT" >"$T/probed"
    KW_OUT=$("$KW_PY" - "$T/decided" "$T/probed" "$T/seen" "$policy" <<'PY'
import json, sys
decided_path, probed_path, seen_path, policy_path = sys.argv[1:]
lines = [json.loads(line) for line in open(decided_path)]
decided = {d["target"]: d for d in lines}  # a target listed twice is decided alike
probed = [line.split() for line in open(probed_path) if line.strip()]
bad = []
with open(seen_path, "a") as seen:
    for target, got in probed:
        d = decided.get(target)
        if d is None:
            bad.append(f"{target}: no decision")
            continue
        want = "EPERM" if d["decision"] == "deny" else "ECONNREFUSED"
        # Allowed to ::1, the loopback may answer otherwise (no IPv6): anything but EPERM.
        ok = got == want or (want != "EPERM" and got != "EPERM" and target.startswith("["))
        if not ok:
            bad.append(f"{target} ({d['path']} path): the decision function says {want} ({json.dumps(d)}), the connect got {got}")
        seen.write(f"{d['path']}:{want}\n")
if len(probed) != len(lines):
    bad.append(f"{len(probed)} targets probed, {len(lines)} decided")
if bad:
    print(f"{policy_path}: " + "; ".join(bad) + "; policy: " + json.dumps(json.load(open(policy_path))))
    sys.exit(1)
PY
) || rc=$?
    ((rc == 0)) || fail "$KW_OUT"
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

for seed in 4 6; do  # between them: every kind of verdict on both paths
    generate "$seed" "$T/gen$seed.json" "$T/gen$seed.targets"
    expect_ok kwarden_cli policy apply "$T/gen$seed.json"
    check_policy "$T/gen$seed.json" "$T/gen$seed.targets"
done

note "verdicts seen: $(sort "$T/seen" | uniq -c | tr '\n' ' ')"
# The generated policies must reach every kind of case, or the comparison proves little.
for k in agent:EPERM agent:ECONNREFUSED kernel:EPERM kernel:ECONNREFUSED undeclared:ECONNREFUSED; do
    grep -qx "$k" "$T/seen" || fail "no target was decided $k: the generated policies miss a case"
done
