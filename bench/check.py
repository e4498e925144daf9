#!/usr/bin/env python3
"""bench/check.py RESULTS.json: every figure of `make bench` was produced.

Checks that the run's facts are there (date, kernel, CPU, emulation flag) and that each
expected figure has at least as many finite numeric samples as the run's repeats (3 for
BENCH_QUICK, else 5), with its median, min and max. Never checks a value: the harness
must not rot, and the numbers are what they are. `make test` runs it on a BENCH_QUICK
run. Exit 0, or 1 with one line per missing or malformed figure.
"""
import json
import math
import sys

CIPHERS = ["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"]
POLICY_SHAPES = ["cidrs", "ports", "ports_x_cidrs", "rules"]
POLICY_SIZES = [1000, 10000, 100000]
SETUPS = ["plaintext"] + [f"{kind}-{c}" for kind in ("kwarden", "stunnel", "boringssl") for c in CIPHERS]


def expected():
    names = []
    for setup in SETUPS:
        for conns in (1, 8):
            names += [f"bulk{conns}.{setup}.mb_per_s", f"bulk{conns}.{setup}.cpu_s_per_gb"]
        names += [f"latency.{setup}.p50_us", f"latency.{setup}.p99_us", f"newconn.{setup}.per_s"]
        if setup.startswith("kwarden"):
            names.append(f"newconn.{setup}.agent_cpu_ms_per_handshake")
    for kind in ("connect", "exec"):
        names += [f"gate.{kind}.none.per_s", f"gate.{kind}.agent.per_s", f"gate.{kind}.ratio"]
    names += ["gate.connect.agent_events.per_s", "gate.connect.events.ratio"]
    for kind in ("pipe", "echo"):
        names += [f"tax.{kind}.none.per_s", f"tax.{kind}.agent.per_s", f"tax.{kind}.ratio"]
    names += ["tax.pipe.agent_handshakes.per_s", "tax.pipe.handshakes.ratio"]
    names += ["gate.connect.agent_cpu_us_per_connect", "gate.connect.bpf_us_per_connect", "gate.exec.bpf_us_per_exec",
              "gate.mmap.bpf_us_per_mmap", "gate.connect.events.agent_cpu_us_per_connect",
              "gate.connect.events.bpf_us_per_connect", "gate.pipe.bpf_us_per_pipe", "gate.echo.bpf_us_per_echo"]
    names += ["memory.rss_idle_mib", "memory.rss_held_mib"]
    names += ["issuance.svid_per_s", "issuance.keygen_per_s", "issuance.sign_per_s"]
    for workers in (0, 1, 2):
        names += [f"engine.w{workers}.per_s", f"engine.w{workers}.cpu_us"]
    names.append("engine.ratio")
    for shape in POLICY_SHAPES:
        for size in POLICY_SIZES:
            names += [f"policy.{shape}.{size}.parse_ms", f"policy.{shape}.{size}.compile_ms"]
    return names


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/check.py RESULTS.json")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    problems = []
    for key in ("date", "kernel", "cpu", "host_cpu"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            problems.append(f"run fact '{key}' missing or empty")
    if not isinstance(doc.get("emulated"), bool):
        problems.append("run fact 'emulated' missing (true or false)")
    want = 3 if doc.get("quick") else 5
    figs = doc.get("figures", {})
    for name in expected():
        fig = figs.get(name)
        if fig is None:
            problems.append(f"{name}: missing")
            continue
        samples = fig.get("samples", [])
        good = [x for x in samples if finite(x)]
        if len(good) < want or len(good) != len(samples):
            problems.append(f"{name}: {len(good)} finite samples of {len(samples)}, need at least {want}")
        for key in ("median", "min", "max"):
            if not finite(fig.get(key)):
                problems.append(f"{name}: '{key}' missing or not a number")
        if not fig.get("unit") or not fig.get("where"):
            problems.append(f"{name}: 'unit' or 'where' missing")
    for p in problems:
        print(f"bench/check.py: {sys.argv[1]}: {p}")
    if problems:
        return 1
    print(f"bench/check.py: {len(expected())} figures, each with at least {want} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
