#!/usr/bin/env bash
# `make demo`, guest side: the agent with its embedded default policy. /usr/bin/curl,
# fetching the demo page, is attested as spiffe://kwarden.local/demo/client and reaches
# the demo service on 127.0.0.1:7070; python3 and bash, same uid, same cgroup, are
# refused by the kernel. Then mutual TLS: an unmodified python3 http.server and curl,
# both enrolled (`kwarden exec`), talk through the "tls": "mutual" destination demo-files
# with kTLS in their own sockets; the wire carries only TLS records, and curl run
# without enrolment is refused. (The curl commands below must stay the policy's argv.)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
kw="$top/build/kwarden"
[[ -n ${KWARDEN_VM_KERNEL:-} ]] || { echo "demo.sh runs inside the VM: use 'make demo'" >&2; exit 2; }

work=$(mktemp -d)
sock=$work/admin.sock
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting the demo service on 127.0.0.1:7070"
mkdir -p "$work/www" && echo "hello from the protected service" >"$work/www/index.html"
python3 -m http.server 7070 --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
svc=$!
for _ in $(seq 150); do ss -Htln 'sport = :7070' | grep -q . && break; sleep 0.2; done

say "starting kwarden agent (embedded default policy)"
"$kw" agent --state-dir "$work/state" --events "$work/events.jsonl" --admin-socket "$sock" 2>"$work/agent.log" &
agent=$!
for _ in $(seq 100); do "$kw" status --admin-socket "$sock" >/dev/null 2>&1 && break; sleep 0.2; done
cat "$work/agent.log"
"$kw" status --admin-socket "$sock"
say "X.509-SVIDs from the ephemeral trust domain (keys stay in the agent's locked memory)"
"$kw" svid list --admin-socket "$sock"

rc=0
say "attested: curl (spiffe://kwarden.local/demo/client) -> 127.0.0.1:7070"
if out=$(curl -sS --max-time 5 http://127.0.0.1:7070/index.html 2>&1); then
    echo "curl: $out"
else
    echo "UNEXPECTED: curl failed: $out"; rc=1
fi

say "unattested: python3, same uid and cgroup, same destination"
python3 - <<'PY' || rc=1
import socket, errno
try:
    socket.create_connection(("127.0.0.1", 7070), timeout=5)
    print("UNEXPECTED: python3 connected"); raise SystemExit(1)
except PermissionError as e:
    print(f"python3: refused by the kernel: {e} (errno {e.errno} = EPERM)")
PY

say "unattested: bash /dev/tcp"
if bash -c 'exec 3<>/dev/tcp/127.0.0.1/7070' 2>"$work/bash.err"; then echo "UNEXPECTED: bash connected"; rc=1; else echo "bash: $(cat "$work/bash.err")"; fi

# The agent hashes an unattested executable the first time it names it in an event.
for _ in $(seq 100); do [[ $(grep -c '"decision":"deny"' "$work/events.jsonl") -ge 2 ]] && break; sleep 0.2; done
say "audit events (one JSON line each)"
cat "$work/events.jsonl"

say "mutual TLS: python3 -m http.server (spiffe://kwarden.local/demo/files), enrolled, on 127.0.0.1:7443"
mkdir -p "$work/files" && echo "kwarden demo report: only the reader may fetch this" >"$work/files/report.txt"
tcpdump -i lo -n -s 0 -U -w "$work/wire.pcap" 'tcp port 7443' >/dev/null 2>&1 &
dump=$!
"$kw" exec -- python3 -m http.server 7443 --bind 127.0.0.1 --directory "$work/files" >/dev/null 2>&1 &
files=$!
for _ in $(seq 150); do ss -Htln 'sport = :7443' | grep -q . && break; sleep 0.2; done

say "enrolled: curl (spiffe://kwarden.local/demo/reader) -> demo-files; the agent runs TLS 1.3 in its connect()"
if out=$("$kw" exec -- curl -sS --max-time 10 http://127.0.0.1:7443/report.txt 2>&1); then
    echo "curl: $out"
else
    echo "UNEXPECTED: enrolled curl failed: $out"; rc=1
fi
say "not enrolled: the same curl command, straight to the port"
if out=$(curl -sS --max-time 10 http://127.0.0.1:7443/report.txt 2>&1); then
    echo "UNEXPECTED: curl reached the mutual-TLS port without the agent: $out"; rc=1
else
    echo "curl: $out"
    echo "(the kernel lets only the agent connect to a mutual-TLS destination: EPERM, a deny event)"
fi
sleep 1
kill "$dump" 2>/dev/null; wait "$dump" 2>/dev/null
say "the wire (tcpdump on lo, port 7443): TCP payloads as TLS records"
python3 "$top/vmtest/tls_records.py" "$work/wire.pcap" "kwarden demo report" || rc=1
say "both ends' SVIDs, and the tls events naming both SPIFFE IDs"
"$kw" svid list --admin-socket "$sock"
grep '"type":"tls"' "$work/events.jsonl"
[[ $(grep '"type":"tls"' "$work/events.jsonl" | grep -c '"result":"ok"') -ge 2 ]] ||
    { echo "UNEXPECTED: no tls event for each end"; rc=1; }

kill "$agent" "$svc" "$files" 2>/dev/null; wait "$agent" 2>/dev/null
"$kw" teardown >/dev/null
exit $rc
