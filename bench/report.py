#!/usr/bin/env python3
"""bench/report.py: turns one `make bench` run into its results.

    bench/report.py --scratch DIR --out FILE.json [--png FILE.png] [--date YYYY-MM-DD] [--elapsed S]
                    [--host-cpu TEXT] [--host-load TEXT]
    bench/report.py --render FILE.json [--png FILE.png]     (the table of earlier results)

Reads what bench/guest.sh wrote in the VM (DIR/raw.jsonl: one line per repeat;
DIR/meta.json: kernel, CPU, emulation, settings) and what kw_bench_issuance and
kw_bench_policy wrote on the host (DIR/issuance.json, DIR/policy.json). Writes FILE.json
(every repeat of every figure with its median, min and max, the raw lines and the run's
facts), prints the table, and draws the chart with gnuplot. bench/check.py checks that every figure is there; nothing here judges values.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import textwrap

CIPHERS = [("aes-128-gcm", "AES-128-GCM"), ("aes-256-gcm", "AES-256-GCM"), ("chacha20-poly1305", "ChaCha20-Poly1305")]
KINDS = [("kwarden", "kwarden"), ("stunnel", "stunnel4"), ("boringssl", "BoringSSL")]
SETUPS = [("plaintext", "plaintext")] + [(f"{kind}-{c}", f"{label} {name}") for kind, label in KINDS for c, name in CIPHERS]
LEGEND = ("kwarden: mTLS through the agent, kTLS in the kernel, both ends enrolled; stunnel4: a client and a server "
          "stunnel (the sidecar pattern); BoringSSL: TLS inside client and server (the library pattern, kw_load_tls). "
          "All TLS 1.3 with client certificates (X.509-SVIDs), full handshakes (no resumption).")
POLICY_SHAPES = [("cidrs", "CIDRs"), ("ports", "ports"), ("ports_x_cidrs", "ports x CIDRs"), ("rules", "rules")]
WIDTH = 126  # the table's widest row
SHORT = {"plaintext": "plain", "kwarden": "kw", "stunnel": "stunnel", "boringssl": "bssl",
         "aes-128-gcm": "aes128", "aes-256-gcm": "aes256", "chacha20-poly1305": "chacha"}


def short(setup):
    if setup == "plaintext":
        return "plain"
    kind, cipher = setup.split("-", 1)
    return f"{SHORT[kind]}-{SHORT[cipher]}"


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def figure(samples, unit, where, what):
    """One figure: every sample (None where a window measured nothing), median, min, max."""
    known = [x for x in samples if x is not None]
    stats = {"median": median(known), "min": min(known), "max": max(known)} if known else {}
    return {"what": what, "unit": unit, "where": where, "samples": samples, **stats}


def build(scratch, date, elapsed, host_cpu, host_load):
    with open(os.path.join(scratch, "meta.json")) as f:
        meta = json.load(f)
    runs = {}
    extra = {}
    raw = []
    with open(os.path.join(scratch, "raw.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            raw.append(r)
            runs.setdefault((r["figure"], r["setup"]), []).append(r["result"])
    vm = meta.get("where", "vm") + (", emulated" if meta["emulated"] else "")
    figs = {}

    def add(name, results, key, unit, what, scale=1.0):
        if results:
            figs[name] = figure([x[key] * scale for x in results], unit, vm, what)

    for setup, label in SETUPS:
        for conns in (1, 8):
            res = runs.get((f"bulk{conns}", setup), [])
            add(f"bulk{conns}.{setup}.mb_per_s", res, "mb_per_s", "MB/s", f"{label}, {conns} connection(s), 64 KiB writes")
            add(f"bulk{conns}.{setup}.cpu_s_per_gb", res, "cpu_s_per_gb", "CPU s/GB",
                f"{label}, {conns} connection(s): whole-machine busy CPU seconds per 10^9 bytes received")
        res = runs.get(("latency", setup), [])
        add(f"latency.{setup}.p50_us", res, "p50_us", "us", f"{label}: 1 KiB request/response round trip, median")
        add(f"latency.{setup}.p99_us", res, "p99_us", "us", f"{label}: 1 KiB request/response round trip, 99th percentile")
        res = runs.get(("newconn", setup), [])
        add(f"newconn.{setup}.per_s", res, "per_s", "conn/s", f"{label}: connect, 1-byte exchange, close")
        if setup.startswith("kwarden") and res:
            # Both ends enrolled under one agent: each connection is two handshakes.
            figs[f"newconn.{setup}.agent_cpu_ms_per_handshake"] = figure(
                [x["watch_cpu_s"] * 1000 / (2 * x["count"]) if x["count"] else None for x in res], "ms", vm,
                f"{label}: agent utime+stime per handshake (client and server role)")
        cipher = runs.get(("cipher", setup))
        if cipher:
            extra[f"tls_events.{setup}"] = cipher[0]
    ARM = {"none": "no kwarden programs", "none_after": "no kwarden programs, measured again after the agent's arms",
           "agent": "agent's programs, 1,000-rule policy, lifecycle events off",
           "agent_events": "agent's programs, 1,000-rule policy, lifecycle events on",
           "agent_handshakes": "agent's programs right after mutual-TLS handshakes (file_permission guard attached)"}
    for arm in ("none", "none_after", "agent", "agent_events"):
        add(f"gate.connect.{arm}.per_s", runs.get(("connect", arm), []), "per_s", "conn/s",
            "loopback connect()+close() by an attested process, " + ARM[arm])
    for arm in ("none", "none_after", "agent"):
        add(f"gate.exec.{arm}.per_s", runs.get(("exec", arm), []), "per_s", "exec/s",
            "posix_spawn+wait of an attested /bin/true copy, " + ARM[arm])
        add(f"tax.pipe.{arm}.per_s", runs.get(("pipe", arm), []), "per_s", "op/s",
            "64-byte write+read through a pipe by a process kwarden does not govern, " + ARM[arm])
        add(f"tax.echo.{arm}.per_s", runs.get(("echo", arm), []), "per_s", "op/s",
            "64-byte send+recv loopback echo by a process kwarden does not govern, " + ARM[arm])
    add("tax.pipe.agent_handshakes.per_s", runs.get(("pipe", "agent_handshakes"), []), "per_s", "op/s",
        "64-byte write+read through a pipe by a process kwarden does not govern, " + ARM["agent_handshakes"])
    BPF_KIND = {"connect": "connect+close", "exec": "exec of an attested binary",
                "mmap": "PROT_EXEC mapping of a pinned file by an attested process",
                "pipe": "64-byte pipe write+read by a process kwarden does not govern",
                "echo": "64-byte loopback send+recv round trip by a process kwarden does not govern"}
    for setup, suffix in (("agent", ""), ("agent_events", ".events")):
        for kind in ("connect", "exec", "mmap", "pipe", "echo"):
            stats = runs.get((f"bpf_{kind}", setup), [])
            if stats:
                figs[f"gate.{kind}{suffix}.bpf_us_per_{kind}"] = figure(
                    [x["run_time_ns"] / 1e3 / x["count"] if x["count"] else None for x in stats], "us", vm,
                    f"kernel time in kwarden's BPF programs per {BPF_KIND[kind]} (kernel.bpf_stats_enabled, every "
                    f"program), {ARM[setup]}")
                extra[f"bpf_by_program.{kind}{suffix}"] = stats[-1].get("by_program")
        gate_agent = runs.get(("connect", setup), [])
        if gate_agent:
            figs[f"gate.connect{suffix}.agent_cpu_us_per_connect"] = figure(
                [x["watch_cpu_s"] * 1e6 / x["count"] if x["count"] else None for x in gate_agent], "us", vm,
                f"agent utime+stime per connect+close, {ARM[setup]}")
    for name, kind, fig_kind, arm in (("gate.connect.ratio", "connect", "gate", "agent"),
                                      ("gate.connect.events.ratio", "connect", "gate", "agent_events"),
                                      ("gate.exec.ratio", "exec", "gate", "agent"),
                                      ("tax.pipe.ratio", "pipe", "tax", "agent"),
                                      ("tax.pipe.handshakes.ratio", "pipe", "tax", "agent_handshakes"),
                                      ("tax.echo.ratio", "echo", "tax", "agent")):
        none, after, agent = runs.get((kind, "none"), []), runs.get((kind, "none_after"), []), runs.get((kind, arm), [])
        if none and agent:
            # Repeat i with the agent over repeat i without. The arms run one after the
            # other and an emulated machine's speed drifts over minutes: the baseline is
            # measured before and after the agent's arms, and repeat i's baseline is the
            # mean of the two, which cancels a drift that is linear in time.
            base = [(n["per_s"] + a["per_s"]) / 2 for n, a in zip(none, after)] if after else [n["per_s"] for n in none]
            figs[name] = figure([a["per_s"] / b if b else None for a, b in zip(agent, base)], "x", vm,
                                f"{fig_kind} cost: {kind} rate with the agent ({ARM[arm]}) / without"
                                + (" (mean of the baselines before and after)" if after else ""))
    add("memory.rss_idle_mib", runs.get(("rss_idle", "kwarden"), []), "rss_kib", "MiB",
        "agent VmRSS, policy loaded, server enrolled, no connection", 1 / 1024)
    add("memory.rss_held_mib", runs.get(("rss_held", "kwarden"), []), "rss_kib", "MiB",
        f"agent VmRSS with {meta['held_connections']} managed connections open", 1 / 1024)
    hold = runs.get(("hold", "kwarden"))
    if hold:
        extra["hold"] = hold[0]

    issuance_path = os.path.join(scratch, "issuance.json")
    if os.path.exists(issuance_path):
        with open(issuance_path) as f:
            iss = json.load(f)
        names = {"SVID issuance (key + certificate)": "issuance.svid_per_s",
                 "P-256 key generation alone": "issuance.keygen_per_s",
                 "certificate signing alone": "issuance.sign_per_s"}
        for fig in iss["figures"]:
            if fig["name"] in names:
                figs[names[fig["name"]]] = figure(fig["per_second"], "/s", "host", fig["name"] + ", one thread")
    engine_path = os.path.join(scratch, "handshake.json")
    if os.path.exists(engine_path):
        with open(engine_path) as f:
            eng = json.load(f)
        by_workers = {fig["workers"]: fig for fig in eng["figures"]}
        for workers, fig in by_workers.items():
            figs[f"engine.w{workers}.per_s"] = figure(
                fig["per_second"], "conn/s", "host",
                f"{fig['name']}: mutual TLS 1.3 connections (both ends' handshakes), {eng['concurrency']} in flight")
            figs[f"engine.w{workers}.cpu_us"] = figure(fig["cpu_us"], "us", "host",
                                                       f"{fig['name']}: process CPU per connection (both ends)")
        if 1 in by_workers and 2 in by_workers:
            # Repeats ran interleaved (0, 1, 2 workers, then again): a ratio per repeat.
            figs["engine.ratio"] = figure([b / a if a else None for a, b in zip(by_workers[1]["per_second"],
                                                                                by_workers[2]["per_second"])],
                                          "x", "host", "handshake engine: connections/s with 2 workers / with 1")
    policy_path = os.path.join(scratch, "policy.json")
    if os.path.exists(policy_path):
        with open(policy_path) as f:
            pol = json.load(f)
        for fig in pol["figures"]:
            for step in ("parse", "compile"):
                figs[f"policy.{fig['key']}.{fig['size']}.{step}_ms"] = figure(
                    fig[f"{step}_ms"], "ms", "host",
                    f"{step} of a generated policy of {fig['size']} {fig['shape']} ({fig['bytes']} bytes, "
                    f"{fig['nodes']} destination nodes), one thread")
    return {
        "date": date,
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": meta["kernel"], "cpu": meta["cpu_model"], "host_cpu": host_cpu, "host_load": host_load,
        "cpus": meta["cpus"], "vm_accel": meta.get("vm_accel"),
        "emulated": meta["emulated"], "quick": meta["quick"], "elapsed_s": elapsed,
        "meta": meta, "figures": figs, "info": extra, "raw": raw,
    }


def cell(f, fmt="{:.0f}"):
    if f is None or "median" not in f:
        return "-"
    return f"{fmt.format(f['median'])} ({fmt.format(f['min'])}-{fmt.format(f['max'])})"


def num(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def auto(f):
    if f is None or "median" not in f:
        return "-"
    return f"{num(f['median'])} ({num(f['min'])}-{num(f['max'])})"


def ratio(f, base):
    if f is None or base is None or "median" not in f or not base.get("median"):
        return "-"
    return f"{f['median'] / base['median']:.2f}x"


def table(doc):
    F = doc["figures"]
    m = doc["meta"]
    out = []
    emul = ", EMULATED" if doc["emulated"] else ""
    out.append(f"kwarden benchmark {doc['date']}{emul}")
    accel = f" (QEMU -accel {doc['vm_accel']})" if doc.get("vm_accel") else ""
    out.append(f"kernel {doc['kernel']}, {m['cpus']} vCPUs{accel}, guest CPU \"{doc['cpu']}\" (AES-NI {m['aes_ni']}), "
               f"host CPU \"{doc['host_cpu']}\"")
    if doc["emulated"]:
        out.append("EMULATED: the VM runs under QEMU software emulation (TCG): syscalls, context switches and AES/ChaCha "
                   "cost differ from real hardware. Compare setups with each other, not these numbers with a real machine.")
    out.append(f"median (min-max) of {m['repeats']} repeats{' (BENCH_QUICK: short runs)' if doc['quick'] else ''}; "
               f"CPU = {m['cpu_accounting']}")
    out.append("")
    out.append("Gate cost, 1,000-rule policy       no programs          agent attached       ratio (min-max)")
    rows = (("loopback connect+close /s", "gate.connect.none.per_s", "gate.connect.agent.per_s", "gate.connect.ratio"),
            ("  ... lifecycle events on", None, "gate.connect.agent_events.per_s", "gate.connect.events.ratio"),
            ("exec /bin/true (attested) /s", "gate.exec.none.per_s", "gate.exec.agent.per_s", "gate.exec.ratio"),
            ("system tax: pipe 64 B /s", "tax.pipe.none.per_s", "tax.pipe.agent.per_s", "tax.pipe.ratio"),
            ("  ... right after handshakes", None, "tax.pipe.agent_handshakes.per_s", "tax.pipe.handshakes.ratio"),
            ("system tax: echo 64 B /s", "tax.echo.none.per_s", "tax.echo.agent.per_s", "tax.echo.ratio"))
    for label, none, agent, r in rows:
        out.append(f"  {label:<33} {auto(F.get(none)) if none else '':<20} {auto(F.get(agent)):<20} "
                   f"{cell(F.get(r), '{:.2f}')}")
    if F.get("gate.connect.none_after.per_s"):
        out.append("  (no programs again, after the agent's arms: "
                   + ", ".join(f"{kind} {auto(F.get(name))}" for kind, name in
                               (("connect+close", "gate.connect.none_after.per_s"), ("exec", "gate.exec.none_after.per_s"),
                                ("pipe", "tax.pipe.none_after.per_s"), ("echo", "tax.echo.none_after.per_s")))
                   + "; each ratio divides by the mean of the two baselines)")
    out.append("  (system tax: round trips by a process kwarden does not govern, through a pipe and a loopback "
               "echo (send/recv): the data hooks run for every process. file_permission runs only while a mutual-TLS "
               "handshake may: within twice --handshake-timeout of one. Client and echo server share one vCPU. "
               "Kernel time in kwarden's programs per round trip, no handshake: pipe "
               f"{auto(F.get('gate.pipe.bpf_us_per_pipe'))} us, echo {auto(F.get('gate.echo.bpf_us_per_echo'))} us)")
    out.append(f"  (agent CPU per connect+close: {auto(F.get('gate.connect.agent_cpu_us_per_connect'))} us with "
               f"lifecycle events off, {auto(F.get('gate.connect.events.agent_cpu_us_per_connect'))} us with them on, "
               "which the agent turns into JSON lines)")
    out.append(f"  (kernel time in kwarden's BPF programs, from the kernel's BPF stats: "
               f"{auto(F.get('gate.connect.bpf_us_per_connect'))} us per connect+close with lifecycle events off, "
               f"{auto(F.get('gate.connect.events.bpf_us_per_connect'))} us with them on (sockops attached), "
               f"{auto(F.get('gate.exec.bpf_us_per_exec'))} us per exec, "
               f"{auto(F.get('gate.mmap.bpf_us_per_mmap'))} us per executable mapping)")
    for key, what in (("connect", "connect+close, events off"), ("connect.events", "connect+close, events on")):
        by = doc["info"].get(f"bpf_by_program.{key}")
        if by:
            count = next((x["result"]["count"] for x in reversed(doc["raw"])
                          if x["figure"] == "bpf_connect" and x["setup"] == ("agent" if key == "connect" else "agent_events")), 0)
            top = ", ".join(f"{name} {ns / 1e3 / count:.1f}" for name, (ns, _) in list(by.items())[:6]) if count else ""
            out.append(f"  (us per {what}, by program, last window: {top})")
    out.append("")
    plain = {k: F.get(f"{k}.plaintext.mb_per_s") for k in ("bulk1", "bulk8")}
    out.append(LEGEND)
    out.append("")
    out.append("Bulk, 64 KiB writes            1 conn MB/s        vs plain  CPU s/GB           8 conns MB/s       "
               "vs plain  CPU s/GB")
    for setup, label in SETUPS:
        row = f"  {label:<29}"
        for k in ("bulk1", "bulk8"):
            mb = F.get(f"{k}.{setup}.mb_per_s")
            row += f" {auto(mb):<18} {ratio(mb, plain[k]):<9} {auto(F.get(f'{k}.{setup}.cpu_s_per_gb')):<18}"
        out.append(row.rstrip())
    out.append("")
    out.append("Latency, 1 KiB each way        p50 us             p99 us             | New conns /s        vs plain  "
               "agent CPU ms/handshake")
    base_nc = F.get("newconn.plaintext.per_s")
    for setup, label in SETUPS:
        nc = F.get(f"newconn.{setup}.per_s")
        row = (f"  {label:<29} {auto(F.get(f'latency.{setup}.p50_us')):<18} "
               f"{auto(F.get(f'latency.{setup}.p99_us')):<18} | {auto(nc):<19} {ratio(nc, base_nc):<9} "
               f"{auto(F.get(f'newconn.{setup}.agent_cpu_ms_per_handshake')) if setup.startswith('kwarden') else ''}")
        out.append(row.rstrip())
    out.append(f"  (new connections: {m['newconn_clients']} clients; under kwarden both ends are enrolled, "
               "2 handshakes per connection)")
    out.append("")
    hold = doc["info"].get("hold", {})
    out.append(f"Agent memory, VmRSS MiB       idle {auto(F.get('memory.rss_idle_mib'))}; "
               f"{m['held_connections']} managed connections open {auto(F.get('memory.rss_held_mib'))}"
               + (f" (opened in {hold['seconds']:.1f} s)" if hold else ""))
    out.append("")
    out.append("SVID issuance (host, not emulated, one thread) /s: "
               f"issue {auto(F.get('issuance.svid_per_s'))}, key generation alone "
               f"{auto(F.get('issuance.keygen_per_s'))}, signing alone {auto(F.get('issuance.sign_per_s'))}")
    out.append("Handshake engine (host, not emulated; both ends of each connection, as one agent serves a node) "
               f"conn/s: steps on the loop {auto(F.get('engine.w0.per_s'))}, 1 worker {auto(F.get('engine.w1.per_s'))}, "
               f"2 workers {auto(F.get('engine.w2.per_s'))}: {cell(F.get('engine.ratio'), '{:.2f}')}x from 1 to 2; "
               f"CPU per connection {auto(F.get('engine.w0.cpu_us'))} / {auto(F.get('engine.w1.cpu_us'))} / "
               f"{auto(F.get('engine.w2.cpu_us'))} us")
    sizes = sorted({int(k.split(".")[2]) for k in F if k.startswith("policy.")})
    if sizes:
        out.append("")
        out.append("Policy parse | compile (host, not emulated, one thread) ms: tenfold the size should cost about "
                   "tenfold the time")
        out.append("  " + f"{'size':<15}" + "".join(f"{n:>36,}" for n in sizes))
        for shape, label in POLICY_SHAPES:
            row = f"  {label:<15}"
            for n in sizes:
                both = f"{auto(F.get(f'policy.{shape}.{n}.parse_ms'))} | {auto(F.get(f'policy.{shape}.{n}.compile_ms'))}"
                row += f"{both:>36}"
            out.append(row)
    ciphers = [f"{k[len('tls_events.kwarden-'):]}: {v['ok']} ok, {v['failed']} failed, {','.join(v['ciphers'])}"
               for k, v in sorted(doc["info"].items()) if k.startswith("tls_events.")]
    if ciphers:
        out.append("kwarden tls events per agent run: " + "; ".join(ciphers))
    out.append(f"run took {doc['elapsed_s']:.0f} s including the VM boot; host load average (1, 5, 15 min) "
               f"{doc.get('host_load') or '?'}: the VM's vCPUs share the host's cores with whatever else runs there")
    # Prose lines wrap; table rows stay as they are.
    wrapped = []
    for line in out:
        if len(line) <= WIDTH:
            wrapped.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        wrapped += textwrap.wrap(line, WIDTH, subsequent_indent=indent, break_on_hyphens=False)
    return "\n".join(wrapped)


def chart(doc, png):
    F = doc["figures"]
    if not any(k.startswith(("bulk", "latency", "newconn")) for k in F):
        print(f"bench/report.py: no chart: this run has none of its figures (bench/run --only)")
        return
    datafile = png + ".dat"
    cols = [("bulk1", "mb_per_s"), ("bulk8", "mb_per_s"), ("bulk1", "cpu_s_per_gb"), ("bulk8", "cpu_s_per_gb"),
            ("latency", "p50_us"), ("latency", "p99_us"), ("newconn", "per_s")]
    with open(datafile, "w") as f:
        for setup, _ in SETUPS:
            vals = []
            for fig, key in cols:
                x = F.get(f"{fig}.{setup}.{key}")
                vals += [x["median"], x["min"], x["max"]] if x and "median" in x else [math.nan] * 3
            f.write(short(setup) + " " + " ".join(f"{v:.4f}" for v in vals) + "\n")
    emul = " - EMULATED (QEMU TCG)" if doc["emulated"] else ""
    script = f"""
set terminal pngcairo size 1400,1000 font ",10"
set output '{png}'
set multiplot layout 2,2 title "kwarden benchmark {doc['date']}, kernel {doc['kernel']}{emul}\\nmedian, bars min-max of {doc['meta']['repeats']} repeats"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.6 border -1
set xtics rotate by -45 scale 0
set grid ytics
set key top right
set yrange [0:*]
set title "bulk throughput, 64 KiB writes (MB/s)"
plot '{datafile}' using 2:3:4:xtic(1) title '1 conn', '' using 5:6:7 title '8 conns'
set title "CPU seconds per GB (whole machine)"
plot '{datafile}' using 8:9:10:xtic(1) title '1 conn', '' using 11:12:13 title '8 conns'
set title "1 KiB request/response latency (us, log scale)"
set logscale y
set yrange [*:*]
plot '{datafile}' using 14:15:16:xtic(1) title 'p50', '' using 17:18:19 title 'p99'
set title "new connections per second (connect, 1-byte exchange, close; log scale)"
plot '{datafile}' using 20:21:22:xtic(1) title 'conn/s'
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    os.unlink(datafile)
    if r.returncode != 0 or not os.path.exists(png):
        sys.exit(f"bench/report.py: gnuplot failed ({r.returncode}): {r.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", metavar="RESULTS.json", help="print the table (and --png) of existing results")
    ap.add_argument("--scratch")
    ap.add_argument("--out")
    ap.add_argument("--png")
    ap.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    ap.add_argument("--elapsed", type=float, default=0.0)
    ap.add_argument("--host-cpu", default="")
    ap.add_argument("--host-load", default="", help="the host's load averages before and after the run")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            doc = json.load(f)
        if a.png:
            chart(doc, a.png)
        print(table(doc))
        return
    if not a.scratch or not a.out:
        ap.error("--scratch and --out are required (or --render)")
    doc = build(a.scratch, a.date, a.elapsed, a.host_cpu, a.host_load)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    if a.png:
        chart(doc, a.png)
    print(table(doc))
    print(f"\nresults: {a.out}" + (f", chart: {a.png}" if a.png else ""))


if __name__ == "__main__":
    main()
