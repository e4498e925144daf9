#!/usr/bin/env bash
# kw-timeout: 420
# Legitimate workloads keep working under the pinned-code rule: a
# pinned binary linking many shared libraries (curl), a python script importing C
# extension modules from lib-dynload (opened with allow_code) and running JIT-like code
# from anonymous PROT_EXEC memory, and a program resolving a host name through NSS
# (the libnss_* modules opened with allow_code): each keeps its identity and reaches the
# destination only that identity may reach. Control: without allow_code, the C extension
# cannot be mapped (refused, with an event) and the script fails.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7162
kw_sysctl kernel.bpf_stats_enabled 1 # the BPF cost per mapping, noted at the end
setup_tools
make_cgroup
start_sink db "$PORT"
KW_CURL=$(command -v curl) || fail "curl is not installed in the guest"
DYNLOAD=$("$KW_PY" -c 'import sys; print([p for p in sys.path if p.endswith("lib-dynload")][0])')
NSS_JSON=$(printf '"%s",' /lib/x86_64-linux-gnu/libnss_*.so.2 /usr/lib/x86_64-linux-gnu/libnss_*.so.2 2>/dev/null |
    sed 's/,$//')
note "lib-dynload: $DYNLOAD; NSS modules: $NSS_JSON"

cat >"$T/app.py" <<PY
#!$KW_PY
# C extensions from lib-dynload, then code in anonymous executable memory, then connect.
import importlib.util, sys
names = []
for n in ("_json", "_bz2", "_lzma", "_ctypes", "_decimal", "_hashlib", "_ssl", "_csv"):
    spec = importlib.util.find_spec(n)
    if spec and spec.origin and "lib-dynload" in spec.origin:
        __import__(n)
        names.append(n)
if not names:
    sys.exit("no C extension module found in lib-dynload")
import ctypes, mmap, socket
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(b"\xb8\x2a\x00\x00\x00\xc3")  # mov eax, 42; ret
jit = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
assert jit() == 42, "the JIT-like code did not run"
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(("py-%s-" % "+".join(names) + sys.argv[2]).encode())
s.close()
print("imported", names)
PY
cat >"$T/nss.py" <<PY
#!$KW_PY
# The host name goes through NSS (getaddrinfo), as any client's would.
import socket, sys
addr = socket.getaddrinfo("localhost", int(sys.argv[1]), socket.AF_INET, socket.SOCK_STREAM)[0][4]
s = socket.create_connection(addr)
s.sendall(sys.argv[2].encode())
s.close()
PY
chmod 0755 "$T/app.py" "$T/nss.py"

KW_PYID=spiffe://$KW_TD/py
KW_NSSID=spiffe://$KW_TD/nss
write_policy() { # FILE DYNLOAD_JSON
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING", "selectors": { "exe": "$KW_CURL", "uid": $KW_UID, "cgroup": "$KW_CG" } },
                 { "id": "$KW_PYID", "allow_code": $2,
                   "selectors": { "script": "$T/app.py", "uid": $KW_UID, "cgroup": "$KW_CG" } },
                 { "id": "$KW_NSSID", "allow_code": [$NSS_JSON],
                   "selectors": { "script": "$T/nss.py", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" }, { "from": "$KW_PYID", "to": "db" },
             { "from": "$KW_NSSID", "to": "db" } ] }
JSON
}
write_policy "$T/policy.json" "[\"$DYNLOAD\"]"
start_agent "$T/policy.json"
ev_mark

# curl: a dozen libraries, all in its pinned closure. The sink does not answer HTTP:
# the request arriving is the proof; curl then times out.
as_workload "$KW_CURL" -s --max-time 3 "http://127.0.0.1:$PORT/curl-$$" || true
wait_sink_data db "GET /curl-$$"

expect_ok as_workload "$T/app.py" "$PORT" "dyn-$$"
note "app.py: $KW_OUT"
wait_sink_data db "dyn-$$"

expect_ok as_workload "$T/nss.py" "$PORT" "nss-$$"
wait_sink_data db "nss-$$"
expect_no_event "no refused mapping for the pinned workloads" '.type == "guard" and .action == "exec_map"'

# Control: without allow_code the C extensions are not pinned: the import fails.
write_policy "$T/policy-closed.json" '[]'
expect_ok kwarden_cli policy apply "$T/policy-closed.json"
ev_mark
sink_snapshot db
expect_status 1 as_workload "$T/app.py" "$PORT" "closed-$$"
assert_match "the refused import" "Operation not permitted|failed to map" "$KW_OUT"
assert_sink_unchanged db
expect_one_event "a refused C extension" '.type == "guard" and .action == "exec_map" and .comm == "app.py"'
assert_event decision=deny errno=EPERM "spiffe_id=$KW_PYID"
# Unguarded, so that bpftool may read the programs' statistics.
stop_agent_unguarded
if command -v bpftool >/dev/null; then
    for p in kw_mmap_file kw_file_mprotect kw_exec_commit; do
        note "bpf stats $p: $(bpftool prog show name "$p" 2>&1 | grep -o 'run_time_ns [0-9]* run_cnt [0-9]*')"
    done
fi
