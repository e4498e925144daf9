#!/usr/bin/env bash
# bench/guest.sh OUTDIR: the guest side of `make bench` (bench/run boots the VM and runs
# it there). Measures every figure of the benchmark with the real code paths and writes
# one JSON line per repeat to OUTDIR/raw.jsonl, and OUTDIR/meta.json (kernel, CPU,
# emulation, settings). bench/report.py turns them into the table, JSON and chart.
#
#   gate      connect()+close() per second on loopback by an attested process, and
#             posix_spawn of an attested /bin/true copy per second: with no kwarden
#             programs, then with the agent's programs under a 1,000-rule policy, with
#             lifecycle events off (the default) and on; the kernel time in kwarden's
#             programs per connect and per exec (BPF stats); the system tax: pipe and
#             loopback echo round trips of a process kwarden does not govern
#   bulk1/8   MB/s and whole-machine CPU per GB, 1 and 8 connections, 64 KiB writes
#   latency   1 KiB request, 1 KiB response on one connection: p50, p99
#   newconn   connect, 1-byte exchange, close per second (4 clients); under kwarden also
#             the agent's CPU per handshake (both ends enrolled: 2 handshakes per connection)
#   memory    the agent's VmRSS idle and with N managed connections open
# for the setups: plaintext; kwarden mTLS+kTLS; stunnel4 pairs (the sidecar pattern);
# BoringSSL in the process (the library pattern, kw_load_tls); each TLS setup with
# AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305, TLS 1.3, client certificates.
#
# Environment: KW_BUILD (kwarden, bench-tools/), BENCH_QUICK=1 (3 short repeats: the
# harness check `make test` runs), BENCH_ONLY="PHASE..." (some of: plaintext stunnel
# boringssl gate kwarden; to work on one). It denies nothing outside its own cgroup but
# loads kwarden's programs and changes sysctls: it refuses to run unless vmtest/run
# started it (KWARDEN_VM_KERNEL), or `bench/run --no-vm` on a machine given to it.
set -Eeuo pipefail

if [[ -z ${KWARDEN_VM_KERNEL:-} || $# -ne 1 ]]; then
    echo "bench/guest.sh OUTDIR: runs inside the VM (bench/run boots it) or with bench/run --no-vm" >&2
    exit 2
fi
OUT=$1
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# Attested binaries must live on a filesystem whose inodes the kernel sees as they are:
# a tmpfs of our own, not the 9p/overlay view of the host (see test/e2e/run.sh).
SCRATCH=/tmp/kwbench
mkdir -p "$SCRATCH"
MOUNTED=0
if ! mountpoint -q "$SCRATCH"; then
    mount -t tmpfs -o mode=0755 kwbench "$SCRATCH"
    MOUNTED=1
fi
T=$(mktemp -d "$SCRATCH/run.XXXXXX")
chmod 0755 "$T"
export T
# shellcheck source=../test/e2e/lib.sh
source "$BENCH_DIR/../test/e2e/lib.sh"
KW_TIMEOUT=600 # as_workload's bound on each workload process
# A failed run shows the tails of its logs: the scratch directory dies with the VM.
bench_exit() {
    local rc=$? log
    set +e
    if ((rc != 0)); then
        for log in "$T"/*.log "$T"/load.err; do
            [[ -s $log ]] || continue
            echo "---- $(basename "$log") (tail)"
            tail -n 15 "$log"
        done >&2
        for log in "$T"/agent*.log; do  # what went wrong earlier than the tail
            [[ -s $log ]] || continue
            echo "---- $(basename "$log") (warnings and errors, last 20)"
            grep -E '^[0-9T:.-]+ (warning|error|critical) ' "$log" | tail -n 20
        done >&2
    fi
    kw_cleanup "$T"
    cd /
    if ((MOUNTED == 1)); then
        umount "$SCRATCH" || echo "bench: cannot unmount $SCRATCH: teardown: $(tail -n 3 "$T/teardown.log" 2>&1)" >&2
    fi
    exit "$rc"
}
trap bench_exit EXIT

QUICK=${BENCH_QUICK:-0}
# Each figure is one kw_load run: a warmup, then $REPEATS windows measured back to back.
if [[ $QUICK == 1 ]]; then
    REPEATS=3 DURATION=0.2 WARMUP=0.05 NEWCONN_DURATION=0.4 RSS_EVERY=0.2
else
    REPEATS=5 DURATION=2 WARMUP=1 NEWCONN_DURATION=3 RSS_EVERY=1
fi
TIMING=(--duration "$DURATION" --warmup "$WARMUP" --repeats "$REPEATS")
CLIENTS=4 # parallel clients of newconn and hold
RAW=$OUT/raw.jsonl
: >"$RAW"
BENCH_T0=$SECONDS

P_PLAIN=7401 P_BACKEND=7402 P_STUNNEL_SERVER=7403 P_STUNNEL_CLIENT=7404 P_BORINGSSL=7405 P_KWARDEN=7406 P_GATE=7407
P_TAX=7408 P_METRICS=7409
SERVER_ID=spiffe://$KW_TD/bench/server
CLIENT_ID=spiffe://$KW_TD/bench/client
TRUE_ID=spiffe://$KW_TD/bench/true
NO_AESNI="~0x200000000000000" # OPENSSL_ia32cap: BoringSSL sees no AES hardware
declare -A SUITE=([aes-128-gcm]=TLS_AES_128_GCM_SHA256 [aes-256-gcm]=TLS_AES_256_GCM_SHA384
    [chacha20-poly1305]=TLS_CHACHA20_POLY1305_SHA256)
CIPHERS=(aes-128-gcm aes-256-gcm chacha20-poly1305)

# ---- setup ------------------------------------------------------------------------------

ulimit -n 65536
# Thousands of connections a second from one address: short-lived ports come back fast.
kw_sysctl net.ipv4.ip_local_port_range "10000 65000"
kw_sysctl net.ipv4.tcp_tw_reuse 1
modprobe tls

mkdir -p "$T/bin"
for tool in kw_load kw_load_tls; do
    [[ -x $KW_BUILD/bench-tools/$tool ]] || fail "$KW_BUILD/bench-tools/$tool is missing: build it first (make build)"
    install -m 0755 "$KW_BUILD/bench-tools/$tool" "$T/bin/$tool"
done
# The workloads the policies attest: copies of kw_load, and of /bin/true for the exec rate.
install -m 0755 "$T/bin/kw_load" "$T/bin/kw-load-server"
install -m 0755 "$T/bin/kw_load" "$T/bin/kw-load-client"
install -m 0755 /bin/true "$T/bin/true"
for b in 0 1 2 3 4 5 6 7; do install -m 0755 /bin/true "$T/bin/filler-$b"; done
make_cgroup
quietly() { # CMD...: its output goes to setup.log, shown only if it fails
    "$@" >>"$T/setup.log" 2>&1 || fail "'$*' failed: $(tail -n 3 "$T/setup.log")"
}
# A trust domain as an operator makes one (the agent's intermediate in $T/state/ca), and
# SVIDs for the peers kwarden does not manage: stunnel4 and the BoringSSL tool.
mkdir -p "$T/state"
quietly "$KWARDEN" ca init --trust-domain "$KW_TD" --out "$T/root"
quietly "$KWARDEN" ca sign-intermediate --root "$T/root" --out "$T/state/ca" --ttl 1d
quietly "$KWARDEN" svid mint --ca "$T/root" --id "$SERVER_ID" --out "$T/svid-server" --ttl 1d
quietly "$KWARDEN" svid mint --ca "$T/root" --id "$CLIENT_ID" --out "$T/svid-client" --ttl 1d

sysinfo=$("$T/bin/kw_load" sysinfo)
emulated=$(jq -r .emulated <<<"$sysinfo")
if [[ $emulated == true ]]; then HOLD=1000; else HOLD=10000; fi
[[ $QUICK == 1 ]] && HOLD=50
jq -n --argjson sys "$sysinfo" --arg kernel "$(uname -r)" --arg klabel "$KWARDEN_VM_KERNEL" \
    --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" --argjson cpus "$(nproc)" \
    --arg aes "$(grep -qw aes /proc/cpuinfo && echo yes || echo no)" --argjson quick "$QUICK" \
    --argjson repeats "$REPEATS" --argjson duration "$DURATION" --argjson warmup "$WARMUP" \
    --argjson newconn_duration "$NEWCONN_DURATION" --argjson clients "$CLIENTS" --argjson hold "$HOLD" \
    --argjson mem_mib "$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" --arg where "${BENCH_WHERE:-vm}" \
    --arg accel "${KWARDEN_VM_ACCEL:-}" '
    { where: $where, kernel: $kernel, kernel_label: $klabel, cpu_model: $cpu, cpus: $cpus, memory_mib: $mem_mib, aes_ni: $aes,
      hypervisor: $sys.hypervisor, emulated: $sys.emulated, vm_accel: (if $accel == "" then null else $accel end),
      emulation_detection: "CPUID leaf 0x40000000 hypervisor signature: TCGTCGTCGTCG is QEMU software emulation (TCG)",
      cpu_accounting: "whole machine busy time from /proc/stat (user+nice+system+irq+softirq+steal) over each measured window",
      quick: ($quick == 1), repeats: $repeats, duration_s: $duration, warmup_s: $warmup,
      newconn_duration_s: $newconn_duration, newconn_clients: $clients, held_connections: $hold }' >"$OUT/meta.json"
note "$(jq -c . "$OUT/meta.json")"

# ---- measuring ------------------------------------------------------------------------------

# Appends one repeat's result (a kw_load JSON line) to raw.jsonl.
record() { # FIGURE SETUP REPEAT JSON
    printf '{"figure":"%s","setup":"%s","repeat":%d,"result":%s}\n' "$1" "$2" "$3" "$4" >>"$RAW"
}

# Runs CMD, a kw_load run that prints one result line per window: $REPEATS of them.
measure() { # FIGURE SETUP CMD...
    local figure=$1 setup=$2 rc=0 out line last="" n=0
    shift 2
    out=$("$@" 2>>"$T/load.err") || rc=$?
    while IFS= read -r line; do
        [[ $line == '{"mode":'* ]] || continue
        n=$((n + 1))
        last=$line
        record "$figure" "$setup" "$n" "$line"
    done <<<"$out"
    [[ $rc -eq 0 && $n -eq $REPEATS ]] ||
        fail "$figure, $setup: '$*' exited $rc with $n of $REPEATS results: '$out'; stderr: $(tail -n 3 "$T/load.err")"
    note "$figure $setup: $last"
}

# The client-side figures of one setup: CLIENT is the command, CLIENT_OPTS its options.
measure_setup() { # SETUP PORT [newconn options...]
    local setup=$1 port=$2
    shift 2
    measure bulk1 "$setup" "${CLIENT[@]}" bulk "${CLIENT_OPTS[@]}" "${TIMING[@]}" --conns 1 127.0.0.1 "$port"
    measure bulk8 "$setup" "${CLIENT[@]}" bulk "${CLIENT_OPTS[@]}" "${TIMING[@]}" --conns 8 127.0.0.1 "$port"
    measure latency "$setup" "${CLIENT[@]}" latency "${CLIENT_OPTS[@]}" "${TIMING[@]}" --size 1024 127.0.0.1 "$port"
    measure newconn "$setup" "${CLIENT[@]}" newconn "${CLIENT_OPTS[@]}" "${TIMING[@]}" --duration "$NEWCONN_DURATION" \
        --threads "$CLIENTS" "$@" 127.0.0.1 "$port"
}

# Starts a server in the background (tracked), and waits until PORT listens.
start_server() { # NAME PORT CMD...
    local name=$1 port=$2
    shift 2
    kw_bg "$@" >>"$T/$name.log" 2>&1
    wait_until 30 "$name to listen on port $port ($(tail -n 2 "$T/$name.log" 2>/dev/null))" kw_tcp_listening "$port"
}

stop_bg() { # PID...
    local pid
    for pid in "$@"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

rss_kib() { # PID
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Records the agent's VmRSS $REPEATS times, $RSS_EVERY seconds apart.
measure_rss() { # FIGURE
    local r
    for ((r = 1; r <= REPEATS; r++)); do
        sleep "$RSS_EVERY"
        record "$1" kwarden "$r" "{\"mode\":\"rss\",\"pid\":$KW_AGENT_PID,\"rss_kib\":$(rss_kib "$KW_AGENT_PID")}"
    done
}

# ---- no kwarden programs: plaintext, stunnel4, BoringSSL -----------------------------------------

phase_plaintext() {
    note "plaintext"
    start_server plaintext "$P_PLAIN" "$T/bin/kw_load" serve 127.0.0.1 "$P_PLAIN"
    local server=$KW_BG_PID
    CLIENT=("$T/bin/kw_load") CLIENT_OPTS=()
    measure_setup plaintext "$P_PLAIN"
    stop_bg "$server"
}

# stunnel4: kw_load -> stunnel client (plaintext in, TLS out) -> stunnel server -> kw_load.
write_stunnel_conf() { # ROLE CIPHER ACCEPT CONNECT
    local role=$1 client_mode=""
    [[ $role == server ]] || client_mode="client = yes"
    cat >"$T/stunnel-$role.conf" <<CONF
foreground = yes
pid =
syslog = no
debug = 4
output = $T/stunnel-$role.log
[bench]
$client_mode
accept = 127.0.0.1:$3
connect = 127.0.0.1:$4
cert = $T/svid-$role/svid.pem
key = $T/svid-$role/svid_key.pem
CAfile = $T/root/root.pem
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
sslVersionMax = TLSv1.3
ciphersuites = ${SUITE[$2]}
sessionResume = no
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
CONF
}

phase_stunnel() {
    local cipher backend server client
    start_server backend "$P_BACKEND" "$T/bin/kw_load" serve 127.0.0.1 "$P_BACKEND"
    backend=$KW_BG_PID
    for cipher in "${CIPHERS[@]}"; do
        note "stunnel4 $cipher"
        write_stunnel_conf server "$cipher" "$P_STUNNEL_SERVER" "$P_BACKEND"
        write_stunnel_conf client "$cipher" "$P_STUNNEL_CLIENT" "$P_STUNNEL_SERVER"
        start_server stunnel-server "$P_STUNNEL_SERVER" stunnel4 "$T/stunnel-server.conf"
        server=$KW_BG_PID
        start_server stunnel-client "$P_STUNNEL_CLIENT" stunnel4 "$T/stunnel-client.conf"
        client=$KW_BG_PID
        CLIENT=("$T/bin/kw_load") CLIENT_OPTS=()
        measure_setup "stunnel-$cipher" "$P_STUNNEL_CLIENT"
        stop_bg "$client" "$server"
    done
    stop_bg "$backend"
}

# BoringSSL in the process: each connection does its own handshake and record layer.
phase_boringssl() {
    local cipher cap server
    for cipher in "${CIPHERS[@]}"; do
        note "BoringSSL in-process $cipher"
        cap=()
        if [[ $cipher == chacha20-poly1305 ]]; then cap=(env "OPENSSL_ia32cap=$NO_AESNI"); fi
        start_server boringssl-server "$P_BORINGSSL" "${cap[@]}" "$T/bin/kw_load_tls" serve --cipher "$cipher" \
            --cert "$T/svid-server/svid.pem" --key "$T/svid-server/svid_key.pem" --ca "$T/root/root.pem" \
            127.0.0.1 "$P_BORINGSSL"
        server=$KW_BG_PID
        CLIENT=("${cap[@]}" "$T/bin/kw_load_tls")
        CLIENT_OPTS=(--cipher "$cipher" --peer-id "$SERVER_ID" --cert "$T/svid-client/svid.pem"
            --key "$T/svid-client/svid_key.pem" --ca "$T/root/root.pem")
        measure_setup "boringssl-$cipher" "$P_BORINGSSL"
        stop_bg "$server"
    done
}

# ---- the gate: no programs, then the agent's programs under a 1,000-rule policy -------------------

# 1,000 workloads (8 binaries, one uid each) x 1,000 destinations, one rule each, plus
# the benchmark's client (allowed to the gate port) and the /bin/true copy.
write_gate_policy() { # FILE
    jq -n --argjson n 1000 --arg td "$KW_TD" --arg bin "$T/bin" --argjson uid "$KW_UID" --arg cg "$KW_CG" \
        --argjson port "$P_GATE" --arg client "$CLIENT_ID" --arg true_id "$TRUE_ID" '
      def filler: [range($n) | { i: . }][];
      { version: 1, trust_domain: $td, mode: "enforce",
        workloads: ([filler | { id: "spiffe://\($td)/filler/w\(.i)",
                                selectors: { exe: "\($bin)/filler-\(.i % 8)", uid: (3000 + .i) } }]
                    + [{ id: $client, selectors: { exe: "\($bin)/kw-load-client", uid: $uid, cgroup: $cg } },
                       { id: $true_id, selectors: { exe: "\($bin)/true", uid: $uid, cgroup: $cg } }]),
        destinations: ([filler | { name: "filler-\(.i)", cidrs: ["10.\(80 + (.i / 200 | floor)).\(.i % 200).0/24"],
                                   ports: [6000 + (.i % 50)], protocol: "tcp" }]
                       + [{ name: "gate", cidrs: ["127.0.0.1/32"], ports: [$port], protocol: "tcp" }]),
        rules: ([filler | { from: "spiffe://\($td)/filler/w\(.i)", to: "filler-\(.i)" }]
                + [{ from: $client, to: "gate" }]) }' >"$1"
}

# The same attested client binary, uid and cgroup in both arms; with the agent, its own
# CPU over each window too (it turns the kernel's events into JSON lines).
gate_measure() { # ARM [--watch-pid PID]
    local arm=$1
    shift
    measure connect "$arm" as_workload "$T/bin/kw-load-client" connect "${TIMING[@]}" "$@" 127.0.0.1 "$P_GATE"
    measure exec "$arm" as_workload "$T/bin/kw-load-client" exec "${TIMING[@]}" "$@" "$T/bin/true"
}

# Kernel time spent in the agent's BPF programs so far (kernel.bpf_stats_enabled must be
# on): run_time_ns and run_cnt summed over its program descriptors, each program once.
# /proc/PID/fdinfo needs only PTRACE_MODE_READ, which the guard leaves open (bpftool's
# *_GET_FD_BY_ID of kwarden's programs it refuses).
# Sums print with %.0f: mawk's %d stops at 2^31 (two seconds of run time).
bpf_run_totals() { # PID: prints "PROGRAMS RUN_TIME_NS RUN_CNT"
    # One cat and one awk for every fdinfo (a process per file took seconds under
    # emulation); each fdinfo starts with "pos:". Their own reads run kwarden's file hooks
    # too: a few hundred runs against tens of thousands in a window.
    { cat "/proc/$1/fdinfo/"* 2>/dev/null || true; } | awk '
         function flush() { if (id != "" && ns != "" && !(id in seen)) { seen[id] = 1; n++; t += ns; c += cnt } }
         /^pos:/ { flush(); id = ns = cnt = "" }
         /^prog_id:/ { id = $2 } /^run_time_ns:/ { ns = $2 } /^run_cnt:/ { cnt = $2 }
         END { flush(); printf "%d %.0f %.0f\n", n, t, c }'
}

# Per program: "ID RUN_TIME_NS RUN_CNT" lines, for the breakdown of a window.
bpf_run_by_prog() { # PID
    { cat "/proc/$1/fdinfo/"* 2>/dev/null || true; } | awk '
         function flush() { if (id != "" && ns != "" && !(id in seen)) { seen[id] = 1; printf "%s %.0f %.0f\n", id, ns, cnt } }
         /^pos:/ { flush(); id = ns = cnt = "" }
         /^prog_id:/ { id = $2 } /^run_time_ns:/ { ns = $2 } /^run_cnt:/ { cnt = $2 }
         END { flush() }'
}

# Which programs a window's run time went to: {"NAME": [run_time_ns, run_cnt], ...}, the
# names from `kwarden status` (the guard refuses bpftool the agent's programs).
bpf_breakdown() { # BEFORE_FILE AFTER_FILE
    local names
    names=$(kwarden_cli status --json | jq -c '[.programs[] | {key: (.id | tostring), value: .name}] | from_entries')
    awk 'NR == FNR { ns[$1] = $2; cnt[$1] = $3; next }
         { printf "%s %.0f %.0f\n", $1, $2 - ns[$1], $3 - cnt[$1] }' "$1" "$2" |
        jq -Rsc --argjson names "$names" '
          [split("\n")[] | select(length > 0) | split(" ") | select(.[2] != "0")
           | {key: ($names[.[0]] // ("prog " + .[0])), value: [(.[1] | tonumber), (.[2] | tonumber)]}]
          | sort_by(-.value[0]) | from_entries'
}

# The kernel's share of the gate's cost, apart from the agent's userspace: kwarden's BPF
# programs' run time per connect+close, per exec and per executable mapping, from the
# kernel's own BPF stats.
# Stats add two clock reads to every program run, so these are windows of their own,
# after the rated ones. Every program counts (LSM hooks, sockops, the guard's file and
# inode hooks, whoever triggered them in the window): what kwarden costs the kernel.
gate_bpf_cost() { # SETUP KIND...
    local setup=$1 kind r before after out count progs ns cnt
    shift
    # mmap: the attested client maps a page of its own (pinned) executable PROT_EXEC, as
    # a loader maps each library segment.
    # pipe, echo: the system tax's round trips, by a process kwarden does not govern.
    local -A target=([connect]="127.0.0.1 $P_GATE" [exec]="$T/bin/true" [mmap]="$T/bin/kw-load-client"
        [pipe]="--size 64" [echo]="--size 64 127.0.0.1 $P_TAX")
    local -A runner=([connect]=as_workload [exec]=as_workload [mmap]=as_workload [pipe]="${TAX_CPU[*]}"
        [echo]="${TAX_CPU[*]}")
    kw_sysctl kernel.bpf_stats_enabled 1
    for kind in "$@"; do
        for ((r = 1; r <= REPEATS; r++)); do
            bpf_run_by_prog "$KW_AGENT_PID" >"$T/bpf-before"
            before=$(bpf_run_totals "$KW_AGENT_PID")
            # shellcheck disable=SC2086 # target: the kind's arguments, split on purpose
            out=$(${runner[$kind]} "$T/bin/kw-load-client" "$kind" --duration "$DURATION" --warmup 0 --repeats 1 \
                ${target[$kind]} 2>>"$T/load.err") || fail "gate bpf stats: $kind failed: $out"
            after=$(bpf_run_totals "$KW_AGENT_PID")
            bpf_run_by_prog "$KW_AGENT_PID" >"$T/bpf-after"
            count=$(grep '^{"mode":' <<<"$out" | jq -r .count)
            read -r progs ns cnt <<<"$after"
            read -r _ ns0 cnt0 <<<"$before"
            ((progs > 0 && count > 0)) || fail "gate bpf stats: $progs programs seen in the agent, $count ${kind}s"
            record "bpf_$kind" "$setup" "$r" "{\"mode\":\"bpf_stats\",\"kind\":\"$kind\",\"count\":$count,\"programs\":$progs,\"run_time_ns\":$((ns - ns0)),\"run_cnt\":$((cnt - cnt0)),\"by_program\":$(bpf_breakdown "$T/bpf-before" "$T/bpf-after")}"
        done
        note "bpf stats, $kind, $setup: $(tail -n 1 "$RAW")"
    done
    sysctl -q -w kernel.bpf_stats_enabled=0
}

client_established() {
    [[ $(ev_count '.type == "established" and .spiffe_id == $id' --arg id "$CLIENT_ID") -gt 0 ]]
}

# The system tax: small I/O by a process kwarden does not govern (root, outside the
# policy's cgroup, unattested, to an undeclared port), since the file and socket data
# hooks run for every process: a pipe, and a loopback echo with send/recv.
# Client and echo server run on one vCPU (TAX_CPU): under QEMU's single-threaded TCG
# both vCPUs take turns on one host thread, and a ping-pong between them measures that
# round robin (windows of one arm 20% apart) more than the calls' own work.
TAX_CPU=(taskset -c 0)
tax_measure() { # ARM
    measure pipe "$1" "${TAX_CPU[@]}" "$T/bin/kw_load" pipe "${TIMING[@]}" --size 64
    measure echo "$1" "${TAX_CPU[@]}" "$T/bin/kw_load" echo "${TIMING[@]}" --size 64 127.0.0.1 "$P_TAX"
}

# What the counters say the client did: its allowed connections to the gate port.
gate_counted() {
    curl -fsS --max-time 5 "http://127.0.0.1:$P_METRICS/metrics" |
        awk -v id="$CLIENT_ID" 'index($0, "kwarden_connections_total{decision=\"allow\",identity=\"" id "\",destination=\"gate\"}") == 1 { print $2 }'
}

phase_gate() {
    local server tax counted
    start_server gate "$P_GATE" "$T/bin/kw_load" serve 127.0.0.1 "$P_GATE"
    server=$KW_BG_PID
    start_server tax "$P_TAX" "${TAX_CPU[@]}" "$T/bin/kw_load" serve 127.0.0.1 "$P_TAX"
    tax=$KW_BG_PID
    [[ ! -e /sys/fs/bpf/kwarden ]] || fail "kwarden programs are pinned before the gate's baseline"
    note "gate: no kwarden programs"
    gate_measure none
    tax_measure none
    write_gate_policy "$T/policy-gate.json"
    note "gate: agent with $(jq '.rules | length' "$T/policy-gate.json") rules, lifecycle events off (the default)"
    KW_AGENT_WRAP=() KW_AGENT_ARGS=(--metrics-address "127.0.0.1:$P_METRICS")
    start_agent "$T/policy-gate.json" "$T/events-gate.jsonl"
    gate_measure agent --watch-pid "$KW_AGENT_PID"
    # No handshake in this phase: the file_permission guard goes twice the handshake
    # timeout after the agent's start.
    wait_until 60 "the agent releasing the file_permission guard (no handshake)" file_guard_is false
    tax_measure agent
    gate_bpf_cost agent connect exec mmap pipe echo
    # The gate really decided those connections: the kernel counted them as the client's.
    counted=$(gate_counted)
    ((${counted:-0} > 0)) || fail "the metrics count no allowed connection of $CLIENT_ID to the gate port"
    note "gate: $counted connections of $CLIENT_ID counted in the kernel"
    # The same, every destination asking for lifecycle events: sockops attached, an event
    # pair per connection, which the agent turns into JSON lines.
    jq '.lifecycle_events = true' "$T/policy-gate.json" >"$T/policy-gate-events.json"
    expect_ok kwarden_cli policy apply "$T/policy-gate-events.json"
    note "gate: lifecycle events on"
    measure connect agent_events as_workload "$T/bin/kw-load-client" connect "${TIMING[@]}" --watch-pid "$KW_AGENT_PID" \
        127.0.0.1 "$P_GATE"
    gate_bpf_cost agent_events connect
    ev_mark
    expect_ok as_workload "$T/bin/kw-load-client" connect --duration 0.2 --warmup 0 127.0.0.1 "$P_GATE"
    wait_until 20 "an established event of $CLIENT_ID at port $P_GATE: the gate governs its connections" \
        client_established
    # The baseline again, programs gone: the ratios divide by the mean of the two
    # baselines, so that the machine's drift over these minutes does not read as a cost.
    stop_agent_unguarded
    expect_ok "$KWARDEN" teardown
    [[ ! -e /sys/fs/bpf/kwarden ]] || fail "kwarden programs are still pinned after 'kwarden teardown'"
    note "gate: no kwarden programs again"
    gate_measure none_after
    tax_measure none_after
    stop_bg "$server" "$tax"
}

# ---- kwarden mTLS+kTLS, both ends enrolled, one agent per cipher --------------------------------

write_mtls_policy() { # FILE
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$SERVER_ID", "selectors": { "exe": "$T/bin/kw-load-server", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "listen": [ { "port": $P_KWARDEN, "tls": "mutual" } ] },
    { "id": "$CLIENT_ID", "selectors": { "exe": "$T/bin/kw-load-client", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "bench", "cidrs": ["127.0.0.1/32"], "ports": [$P_KWARDEN], "protocol": "tcp",
                      "tls": "mutual", "identity": "$SERVER_ID" } ],
  "rules": [ { "from": "$CLIENT_ID", "to": "bench" } ] }
JSON
}

enrolled() { # [--pidfile FILE] CMD...: as the workload, enrolled
    local pidfile=()
    if [[ $1 == --pidfile ]]; then
        pidfile=(--pidfile "$2")
        shift 2
    fi
    as_workload "${pidfile[@]}" "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$@"
}

# The agent's memory: idle (the server enrolled, no connection), then holding $HOLD
# managed connections (client and server both enrolled).
measure_memory() {
    local out=$T/hold.out wrapper
    measure_rss rss_idle
    kw_bg enrolled --pidfile "$T/hold.pid" "$T/bin/kw-load-client" hold --conns "$HOLD" --threads "$CLIENTS" \
        127.0.0.1 "$P_KWARDEN" >"$out" 2>&1
    wrapper=$KW_BG_PID
    # Until the client says it holds them, or is gone (a failed connection ends it).
    wait_until $((HOLD + 60)) "$HOLD managed connections to open ($(tail -n 2 "$out"))" \
        bash -c 'grep -q "\"mode\":\"hold\"" "$1" || ! kill -0 "$2" 2>/dev/null' _ "$out" "$wrapper"
    grep -q '"mode":"hold"' "$out" || fail "the client opening $HOLD connections ended: $(tail -n 3 "$out")"
    record hold kwarden 1 "$(grep '"mode":"hold"' "$out")"
    measure_rss rss_held
    note "agent RSS with $HOLD connections: $(rss_kib "$KW_AGENT_PID") KiB; $(grep '"mode":"hold"' "$out")"
    kill -TERM "$(cat "$T/hold.pid")"
    wait "$wrapper" || fail "the client holding $HOLD connections failed: $(tail -n 3 "$out")"
}

# What the agent negotiated: every handshake ok, and with this cipher.
record_ciphers() { # CIPHER EVENTS
    local line
    line=$(jq -sc --arg want "${SUITE[$1]}" '
        [.[] | select(.type == "tls")] as $tls
        | { mode: "tls_events", ok: ([$tls[] | select(.result == "ok")] | length),
            failed: ([$tls[] | select(.result != "ok")] | length),
            ciphers: ([$tls[] | .cipher // empty] | unique), want: $want }' "$2")
    record cipher "kwarden-$1" 1 "$line"
    jq -e --arg want "${SUITE[$1]}" '.ok > 0 and .failed == 0 and .ciphers == [$want]' <<<"$line" >/dev/null ||
        fail "kwarden $1: the agent's tls events do not all say ${SUITE[$1]}: $line"
}

phase_kwarden() {
    local cipher events wrapper
    write_mtls_policy "$T/policy-mtls.json"
    for cipher in "${CIPHERS[@]}"; do
        note "kwarden $cipher"
        KW_AGENT_WRAP=()
        if [[ $cipher == chacha20-poly1305 ]]; then KW_AGENT_WRAP=(env "OPENSSL_ia32cap=$NO_AESNI"); fi
        # A long handshake timeout holds the file_permission guard (twice it) through the
        # pipe measurement after the handshakes.
        KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock" --tls-cipher "$cipher" --handshake-timeout 30s)
        events=$T/events-$cipher.jsonl
        start_agent "$T/policy-mtls.json" "$events"
        start_server kwarden-server "$P_KWARDEN" enrolled --pidfile "$T/server.pid" \
            "$T/bin/kw-load-server" serve 127.0.0.1 "$P_KWARDEN"
        wrapper=$KW_BG_PID
        if [[ $cipher == aes-128-gcm ]]; then measure_memory; fi
        CLIENT=(enrolled "$T/bin/kw-load-client") CLIENT_OPTS=()
        measure_setup "kwarden-$cipher" "$P_KWARDEN" --watch-pid "$KW_AGENT_PID"
        if [[ $cipher == aes-128-gcm ]]; then
            # The pipe tax while handshakes run: the file_permission guard attached.
            file_guard_is true || fail "the file_permission guard is not attached right after handshakes"
            measure pipe agent_handshakes "$T/bin/kw_load" pipe "${TIMING[@]}" --size 64
            file_guard_is true || fail "the file_permission guard was released during the pipe measurement"
        fi
        # Only SIGKILL ends a server whose accept() the agent holds.
        stop_bg "$(cat "$T/server.pid")" "$wrapper"
        stop_agent
        record_ciphers "$cipher" "$events"
    done
}

for phase in ${BENCH_ONLY:-plaintext stunnel boringssl gate kwarden}; do
    declare -F "phase_$phase" >/dev/null || fail "BENCH_ONLY: no phase '$phase' (plaintext stunnel boringssl gate kwarden)"
    "phase_$phase"
done
note "done in $((SECONDS - BENCH_T0)) s"
