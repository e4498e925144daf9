#!/usr/bin/env bash
# Issue 13, class 5: an attested process's memory must not reach the disk through a core
# dump that someone of the same uid provokes. The workload (a pinned copy of sleep, uid
# 1000) inherits an unlimited core limit from before its exec; kill -SEGV then dumps
# nothing, with a file core_pattern (no core file) and with a pipe core_pattern (the
# helper is never started), and gives one core_dump guard event each. Raising its core
# limit from another process of its uid (prlimit) is EPERM with an rlimit event, and the
# limit stays as it was. The controls show each step works on an unprotected target: the
# same binary unpinned, and a workload with "allow_core_dumps", leave a core (ELF) in the
# file and through the helper; prlimit on the unpinned one succeeds. core_pattern is
# restored afterwards.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DUMPOK=spiffe://$KW_TD/dump-ok
command -v prlimit >/dev/null || fail "prlimit (util-linux) is not installed in the VM"
make_cgroup
mkdir -p "$T/bin"
WORKLOAD=$T/bin/billing-sleep # pinned: the workload
ALLOWED=$T/bin/dumpok-sleep   # pinned, allow_core_dumps
PLAIN=$T/bin/plain-sleep      # the same binary, not pinned
for f in "$WORKLOAD" "$ALLOWED" "$PLAIN"; do install -m 0755 "$(command -v sleep)" "$f"; done
CORES=$T/cores
PIPED=$T/piped
mkdir -m 1777 "$CORES" "$PIPED"
cat >"$T/helper.sh" <<SH
#!/bin/sh
cat >"$PIPED/core.\$1"
SH
chmod 0755 "$T/helper.sh"
ulimit -H -c unlimited

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "$KW_BILLING", "selectors": { "exe": "$WORKLOAD", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "$DUMPOK", "selectors": { "exe": "$ALLOWED", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "allow_core_dumps": true } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [7399], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
start_agent "$T/policy.json"

# Starts EXE (sleep 300) as the workload, its core limit raised to LIMIT before the exec;
# its pid in $PID, and its identity checked.
start_sleeper() { # EXE LIMIT ID
    rm -f "$T/sleeper.pid"
    KW_TIMEOUT=300 kw_bg as_workload --pidfile "$T/sleeper.pid" bash -c 'ulimit -S -c "$1"; exec "$2" 300' _ "$2" "$1"
    wait_until 30 "the sleeper to exec $1" sleeper_is "$1"
    PID=$(cat "$T/sleeper.pid")
    expect_ok kwarden_cli identity "$PID"
    assert_eq "identity of $1" "$3" "$KW_OUT"
}
sleeper_is() { [[ -s $T/sleeper.pid && $(readlink "/proc/$(cat "$T/sleeper.pid")/exe") == "$1" ]]; }
gone() { [[ ! -e /proc/$1 ]] || [[ $(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) == Z ]]; }
crash() { # PID
    kill -SEGV "$1"
    wait_until 20 "process $1 to die of SIGSEGV" gone "$1"
}
is_core() { [[ -s $1 && $(head -c 4 "$1" | od -An -c | tr -d ' ') == 177ELF ]]; }

# One crash with the pattern PATTERN: a core at FILE (within 20 s) or, when ID is given
# and refused, none and one core_dump event.
dump_case() { # EXE ID WANT(core|none) KIND(file|pipe)
    local exe=$1 id=$2 want=$3 kind=$4 file
    start_sleeper "$exe" unlimited "$id"
    file=$CORES/core.$PID
    [[ $kind == pipe ]] && file=$PIPED/core.$PID
    ev_mark
    crash "$PID"
    if [[ $want == core ]]; then
        wait_until 20 "a core of $exe ($kind) at $file" is_core "$file"
        expect_no_event "a dump that is allowed" '.type == "guard"'
    else
        sleep 2 # a dump, or the helper, would have written by now
        [[ ! -e $file ]] || fail "a core of the attested $exe was written ($kind): $(ls -l "$file")"
        expect_one_event "the refused dump of $PID" '.type == "guard" and .action == "core_dump"'
        assert_event decision=deny errno=null "tgid=$PID" "spiffe_id=$id" "uid=$KW_UID"
        [[ $(jq -r '.target.tgid' <<<"$KW_EVENT") == "$PID" ]] || fail "core_dump event names another target: $KW_EVENT"
    fi
    note "$kind core_pattern, $exe: $want"
}

kw_sysctl kernel.core_pattern "$CORES/core.%p"
dump_case "$PLAIN" unattested core file
dump_case "$ALLOWED" "$DUMPOK" core file
dump_case "$WORKLOAD" "$KW_BILLING" none file
# Not kw_sysctl again: cleanup restores in order, so the first (original) value must be the only one tracked.
sysctl -q -w "kernel.core_pattern=|$T/helper.sh %p" >/dev/null || fail "cannot set a pipe core_pattern"
dump_case "$PLAIN" unattested core pipe
dump_case "$ALLOWED" "$DUMPOK" core pipe
dump_case "$WORKLOAD" "$KW_BILLING" none pipe
ls -l "$CORES" "$PIPED" >&2

# ---- prlimit from another process of the same uid ------------------------------------------
core_limit() { awk '/^Max core file size/ { print $5 }' "/proc/$1/limits"; }
start_sleeper "$PLAIN" 0 unattested
ev_mark
expect_ok as_workload prlimit --pid "$PID" --core=unlimited
assert_eq "core limit of the unprotected process after prlimit" unlimited "$(core_limit "$PID")"
expect_no_event "prlimit on an unprotected process" '.type == "guard"'
kill "$PID"

start_sleeper "$WORKLOAD" 0 "$KW_BILLING"
ev_mark
expect_status 1 as_workload --pidfile "$T/prlimit.pid" prlimit --pid "$PID" --core=unlimited
assert_match "prlimit's error" "Operation not permitted" "$KW_OUT"
assert_eq "core limit of the workload after prlimit" 0 "$(core_limit "$PID")"
expect_one_event "the refused prlimit" '.type == "guard" and .action == "rlimit"'
assert_event decision=deny errno=EPERM "tgid=$(cat "$T/prlimit.pid")" spiffe_id=unattested
[[ $(jq -r '"\(.target.tgid) \(.target.spiffe_id)"' <<<"$KW_EVENT") == "$PID $KW_BILLING" ]] ||
    fail "rlimit event names another target: $KW_EVENT"
# Lowering stays open, and so does the workload raising its own limit (not tested here).
expect_ok as_workload prlimit --pid "$PID" --core=0
kill "$PID"

stop_agent
