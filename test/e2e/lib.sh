# shellcheck shell=bash
# Shared by the VM end-to-end tests (test/e2e/t_*.sh) and their runner (run.sh).
#
# A test sources this file, gets `set -Eeuo pipefail`, a scratch directory $T (given by
# run.sh, or made here), and an EXIT trap that cleans up whatever the test started:
# the agent, background processes, test cgroups, network namespaces, pinned BPF state.
# Every wait here is bounded. Failures print "FAIL: what was expected, what was seen";
# run.sh shows the first such line as the test's reason.
#
# Never run outside the VM: tests deny traffic and change sysctls.

if [[ -z ${KWARDEN_VM_KERNEL:-} ]]; then
    echo "FAIL: test/e2e must run inside the VM (vmtest/run -- test/e2e/run.sh): KWARDEN_VM_KERNEL is not set" >&2
    exit 2
fi

KW_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=${TOP:-$(cd "$KW_E2E_DIR/../.." && pwd)}
KW_BUILD=${KW_BUILD:-$TOP/build}
KW_TOOLS=${KW_TOOLS:-$KW_BUILD/e2e-tools}
KWARDEN=${KWARDEN:-$KW_BUILD/kwarden}
KW_PY=/usr/bin/python3
KW_SCRATCH_ROOT=/tmp/kwe2e
# The unprivileged identity the workloads run as, and their SPIFFE ID (used by tests).
KW_UID=1000
KW_GID=1000
KW_TD=example.org
KW_BILLING=spiffe://$KW_TD/billing
export TOP KW_BUILD KW_TOOLS KWARDEN KW_UID KW_GID KW_TD KW_BILLING

# ---- failing and logging ---------------------------------------------------------------

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

KW_T0=${EPOCHREALTIME:-0}
note() { # logs with the time since the test started, to see where a slow run spends it
    # In tenths of a second, in bash: a process per note costs tens of milliseconds
    # under emulation, and tests write hundreds. EPOCHREALTIME has six decimals.
    local now=${EPOCHREALTIME:-0} d
    d=$(((10#${now/./} - 10#${KW_T0/./}) / 100000))
    printf '# [%6ss] %s\n' "$((d / 10)).$((d % 10))" "$*" >&2
}

# ERR trap: only the test's own shell reports. In a command substitution a failure is
# not fatal by itself (the command using it decides), so it must not print a reason.
kw_on_err() {
    local rc=$1 line=$2 cmd=$3
    ((BASH_SUBSHELL == 0)) || return 0
    echo "FAIL: line $line of ${KW_TEST_NAME:-test}: '$cmd' exited $rc" >&2
}

# ---- resources and cleanup ----------------------------------------------------------------

kw_track() { # KIND VALUE: remember a resource for kw_cleanup (pids, cgroups, netns, sysctl)
    echo "$2" >>"$T/.kw_$1"
}

# Only a real pid: kill 0, -1 or -PGID would reach the runner and the guest's init
# script with it (a guest that then never reports its status).
kw_pid_alive() {
    [[ $1 =~ ^[1-9][0-9]*$ && $1 -gt 1 ]] && kill -0 "$1" 2>/dev/null
}

# Ends one process by pid: TERM, up to 5 s, then KILL.
kw_kill_pid() {
    local pid=$1 i
    kw_pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kw_pid_alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kw_pid_alive "$pid" || return 0
        sleep 0.1
    done
}

# Idempotent; called by the test's EXIT trap and again by run.sh.
kw_cleanup() {
    local t=$1 pid cg ns kv i
    [[ -d $t ]] || return 0
    if [[ -f $t/.kw_agent_pid ]]; then
        kw_kill_pid "$(cat "$t/.kw_agent_pid")"
    fi
    if [[ -f $t/.kw_pids ]]; then
        while read -r pid; do kw_kill_pid "$pid"; done <"$t/.kw_pids"
    fi
    if [[ -f $t/.kw_cgroups ]]; then
        while read -r cg; do
            [[ -d $cg ]] || continue
            echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                rmdir "$cg" 2>/dev/null && break
                sleep 0.1
            done
            [[ -d $cg ]] && echo "cleanup: could not remove cgroup $cg" >&2
        done <"$t/.kw_cgroups"
    fi
    if [[ -f $t/.kw_containers ]]; then
        while read -r i; do
            crun --root "$t/crun" delete --force "$i" >/dev/null 2>&1 ||
                runc --root "$t/runc" delete --force "$i" >/dev/null 2>&1 || true
        done <"$t/.kw_containers"
    fi
    if [[ -f $t/.kw_container_cgroups ]]; then # children of a test cgroup: before it
        while read -r i; do
            [[ -d $i ]] || continue
            echo 1 >"$i/cgroup.kill" 2>/dev/null || true
            # A runtime's own sub-cgroups (a container's, below its pod's) first.
            find "$i" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
            rmdir "$i" 2>/dev/null || { sleep 0.5; rmdir "$i" 2>/dev/null; } || true
        done <"$t/.kw_container_cgroups"
    fi
    if [[ -f $t/.kw_mounts ]]; then
        while read -r i; do umount -l "$i" 2>/dev/null || true; done <"$t/.kw_mounts"
    fi
    # The listener holder ends by itself once its processes are gone; make sure.
    pkill -f -- "holder --socket $t/holder.sock" 2>/dev/null || true
    if [[ -f $t/.kw_netns ]]; then
        while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$t/.kw_netns"
    fi
    if [[ -f $t/.kw_sysctl ]]; then
        while read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done <"$t/.kw_sysctl"
    fi
    if [[ -e /sys/fs/bpf/kwarden ]]; then
        if [[ -x $KWARDEN ]]; then
            "$KWARDEN" teardown >>"$t/teardown.log" 2>&1 ||
                echo "cleanup: kwarden teardown failed: $(tail -n 3 "$t/teardown.log")" >&2
        fi
        [[ -e /sys/fs/bpf/kwarden ]] && echo "cleanup: /sys/fs/bpf/kwarden still exists after teardown" >&2
    fi
    rm -f "$t"/.kw_agent_pid "$t"/.kw_pids "$t"/.kw_cgroups "$t"/.kw_netns "$t"/.kw_sysctl "$t"/.kw_containers "$t"/.kw_container_cgroups "$t"/.kw_mounts
    return 0
}

# Sets a sysctl for this test and restores the old value at cleanup (VM only anyway).
kw_sysctl() { # NAME VALUE
    local old
    old=$(sysctl -n "$1") || fail "cannot read sysctl $1"
    kw_track sysctl "$1=$old"
    sysctl -q -w "$1=$2" >/dev/null || fail "cannot set sysctl $1=$2"
}

# Runs CMD in the background, tracked for cleanup; its pid is in $KW_BG_PID.
kw_bg() {
    "$@" &
    KW_BG_PID=$!
    kw_track pids "$KW_BG_PID"
}

# Waits (bounded) until CMD succeeds.
wait_until() { # SECONDS DESCRIPTION CMD...
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for: $what"
        sleep 0.1
    done
}

# ---- assertions ---------------------------------------------------------------------------

assert_eq() { # WHAT EXPECTED ACTUAL
    [[ $2 == "$3" ]] || fail "$1: expected '$2', saw '$3'"
}

assert_match() { # WHAT REGEX ACTUAL
    [[ $3 =~ $2 ]] || fail "$1: expected a match for /$2/, saw '$3'"
}

errno_number() { # NAME -> number
    # The ones tests expect, without starting Python (a second under emulation); Linux's
    # numbers on x86-64 and arm64 alike. Any other name is asked of Python's errno.
    case $1 in
        EPERM) echo 1 ;; EACCES) echo 13 ;; EBADMSG) echo 74 ;; ECONNREFUSED) echo 111 ;;
        ENOSYS) echo 38 ;; ETIMEDOUT) echo 110 ;;
        *) "$KW_PY" -c 'import errno, sys; print(getattr(errno, sys.argv[1]))' "$1" 2>/dev/null ||
            fail "unknown errno name '$1'" ;;
    esac
}

# Runs CMD; its exit status must be the errno number of NAME (the tools' convention).
# The output is kept in $KW_OUT.
expect_errno() { # NAME CMD...
    local name=$1 want rc=0
    shift
    want=$(errno_number "$name")
    KW_OUT=$("$@" 2>&1) || rc=$?
    note "$* -> status $rc: $KW_OUT"
    [[ $rc -eq $want ]] || fail "expected $name ($want) from '$*', got exit status $rc; output: $KW_OUT"
}

# Runs CMD; it must succeed. The output is kept in $KW_OUT.
expect_ok() {
    local rc=0
    KW_OUT=$("$@" 2>&1) || rc=$?
    note "$* -> status $rc: $KW_OUT"
    [[ $rc -eq 0 ]] || fail "expected success from '$*', got exit status $rc; output: $KW_OUT"
}

# Runs CMD; its exit status must be STATUS. The output is kept in $KW_OUT.
expect_status() { # STATUS CMD...
    local want=$1 rc=0
    shift
    KW_OUT=$("$@" 2>&1) || rc=$?
    note "$* -> status $rc: $KW_OUT"
    [[ $rc -eq $want ]] || fail "expected exit status $want from '$*', got $rc; output: $KW_OUT"
}

# ---- tools and binaries ---------------------------------------------------------------------

# Copies the tools into $T/bin: readable by the unprivileged uid, on the scratch tmpfs.
setup_tools() {
    local t
    mkdir -p "$T/bin"
    for t in kw_client kw_sink kw_tfo_sendto kw_udp_sendto kw_uring_connect; do
        [[ -x $KW_TOOLS/$t ]] || fail "tool $KW_TOOLS/$t is missing: build it first (cmake target $t)"
        install -m 0755 "$KW_TOOLS/$t" "$T/bin/$t"
    done
}

# A copy of kw_client that the policy attests: $KW_ATTESTED.
make_attested() {
    KW_ATTESTED=$T/bin/billing-client
    install -m 0755 "$KW_TOOLS/kw_client" "$KW_ATTESTED"
}

# A copy of FILE that differs in exactly one byte (the marker), at DEST.
make_patched_copy() { # FILE DEST
    cp "$1" "$2"
    sed -i 's/KWARDEN-BYTE-PATCH-A/KWARDEN-BYTE-PATCH-B/' "$2"
    chmod 0755 "$2"
    assert_eq "bytes differing between $1 and its patched copy" 1 "$({ cmp -l "$1" "$2" || true; } | wc -l)"
}

# Patches the marker of FILE in place (same inode), as an attacker editing the binary.
patch_in_place() { # FILE
    local off
    off=$(grep -obUa KWARDEN-BYTE-PATCH-A "$1" | head -n1 | cut -d: -f1)
    [[ -n $off ]] || fail "marker KWARDEN-BYTE-PATCH-A not found in $1"
    printf 'Z' | dd of="$1" bs=1 seek=$((off + 19)) conv=notrunc status=none
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# ---- cgroup, uid, network namespace -------------------------------------------------------

# Creates the test cgroup: $KW_CG_DIR (cgroupfs path), $KW_CG (policy selector path),
# $KW_CG_ID (its cgroup id, the directory's inode).
make_cgroup() {
    KW_CG=/kwtest-$$
    KW_CG_DIR=/sys/fs/cgroup$KW_CG
    mkdir "$KW_CG_DIR" || fail "cannot create cgroup $KW_CG_DIR"
    kw_track cgroups "$KW_CG_DIR"
    KW_CG_ID=$(stat -c %i "$KW_CG_DIR")
}

# Runs CMD in the test cgroup as uid/gid $KW_UID (or --uid N: uid and gid N; 0 for root) with no
# supplementary groups, bounded by $KW_TIMEOUT seconds (default 20). The pid that execs
# CMD is written to PIDFILE, so a test can match the events of exactly this process.
as_workload() { # [--pidfile FILE] [--uid N] CMD...
    local pidfile=/dev/null uid=$KW_UID gid=$KW_GID
    while [[ ${1:-} == --* ]]; do
        case $1 in
            --pidfile) pidfile=$2 ;;
            --uid) uid=$2 gid=$2 ;;
            *) fail "as_workload: unknown option $1" ;;
        esac
        shift 2
    done
    [[ -n ${KW_CG_DIR:-} ]] || fail "as_workload needs make_cgroup first"
    timeout -k 2 "${KW_TIMEOUT:-20}" bash -c '
        echo $$ >"$1" || exit 201
        echo $$ >"$2/cgroup.procs" || exit 201
        uid=$3 gid=$4
        shift 4
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
    ' kw_workload "$pidfile" "$KW_CG_DIR" "$uid" "$gid" "$@"
}

# ---- containers: Debian's crun on an OCI bundle with an overlay root -----------------------

# Builds an image layer in DIR: each FILE (SRC=DEST, or SRC at its own path) with its
# shared libraries and loader (the ldd closure) at their guest paths, and the directories
# a runtime mounts over. It is an ordinary directory, as an unpacked image layer is.
make_image_layer() { # DIR SRC[=DEST]...
    local dir=$1 spec src dest lib
    shift
    mkdir -p "$dir"/{proc,dev,sys,tmp,etc}
    chmod 1777 "$dir/tmp"
    for spec in "$@"; do
        src=${spec%%=*} dest=${spec#*=}
        [[ $spec == *=* ]] || dest=$src
        mkdir -p "$dir/$(dirname "$dest")"
        cp -L "$src" "$dir/$dest"
        for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
            [[ -e $dir/$lib ]] && continue
            mkdir -p "$dir/$(dirname "$lib")"
            cp -L "$lib" "$dir/$lib"
        done
    done
}

# A bundle in $T/NAME whose root is an overlay: LAYER read-only below, a writable layer
# ($T/NAME/upper) above, as a runtime's image store sets it up. The container runs as
# $KW_UID in a child of the test cgroup, in the host's network namespace (so the sinks
# on 127.0.0.1 are its destinations), with crun's state under $T/crun.
make_bundle() { # NAME LAYER
    local b=$T/$1
    mkdir -p "$b"/{upper,work,rootfs}
    mount -t overlay overlay -o "lowerdir=$2,upperdir=$b/upper,workdir=$b/work" "$b/rootfs" ||
        fail "cannot mount an overlay root for bundle $1"
    kw_track mounts "$b/rootfs"
    kw_track container_cgroups "$KW_CG_DIR/$1"
    (cd "$b" && crun spec) || fail "crun spec failed in $b"
    jq --arg cg "$KW_CG/$1" --argjson uid "$KW_UID" --argjson gid "$KW_GID" '
        .root = {path: "rootfs", readonly: false}
        | .process.terminal = false
        | .process.user = {uid: $uid, gid: $gid}
        | .linux.cgroupsPath = $cg
        | .linux.namespaces |= map(select(.type != "network"))
        | .mounts |= map(select(.destination | startswith("/sys") | not))
        | .linux.maskedPaths |= map(select(startswith("/sys") | not))' \
        "$b/config.json" >"$b/config.json.new" && mv "$b/config.json.new" "$b/config.json" ||
        fail "cannot edit $b/config.json"
}

KW_CONTAINER_SEQ=0

# Runs CMD in a new container of bundle NAME ($KW_RUNTIME run, crun by default, in the
# foreground), bounded by
# $KW_TIMEOUT seconds (default 20); its exit status is CMD's. The bundle's writable layer
# persists from one container to the next; no argument may hold a newline. The
# container's pid on the host (the process crun execs CMD in) is written to PIDFILE.
run_container() { # [--pidfile FILE] NAME CMD...
    local pidfile=/dev/null
    if [[ $1 == --pidfile ]]; then
        pidfile=$2
        shift 2
    fi
    local b=$T/$1 id="kw$$-$1-$((KW_CONTAINER_SEQ += 1))"
    shift
    # One argument a line (jq 1.6 takes no "--" before --args that look like options).
    printf '%s\n' "$@" | jq -R -s --slurpfile c "$b/config.json" \
        '. as $raw | $c[0] | .process.args = ($raw | rtrimstr("\n") | split("\n"))' >"$b/config.json.new" &&
        mv "$b/config.json.new" "$b/config.json" || fail "cannot set the container's command"
    kw_track containers "$id"
    rm -f "$b/pid"
    local rc=0
    local runtime=${KW_RUNTIME:-crun}
    timeout -k 2 "${KW_TIMEOUT:-20}" "$runtime" --root "$T/$runtime" run --bundle "$b" --pid-file "$b/pid" "$id" || rc=$?
    cp "$b/pid" "$pidfile" 2>/dev/null || true
    return $rc
}

# ---- a workload holding a connection (kw_guard_probe hold) ---------------------------------

declare -A KW_HOLD_CTL=()

# Runs PROBE (a copy of kw_guard_probe) "hold HOST PORT" as the workload, in the background,
# enrolled through $T/enroll.sock with --enrolled: output in $T/NAME.log, pid in
# $T/NAME.pid, commands through the FIFO $T/NAME.ctl (holder_cmd). Returns once it is
# connected: its pid in $KW_HOLD_PID, the connection's descriptor number in $KW_HOLD_FD.
start_holder() { # NAME [--enrolled] PROBE HOST PORT
    local name=$1 ctl=$T/$1.ctl fd
    local -a exec=()
    shift
    if [[ $1 == --enrolled ]]; then
        exec=("$KWARDEN" exec --enroll-socket "$T/enroll.sock" --)
        shift
    fi
    mkfifo -m 0666 "$ctl"
    exec {fd}<>"$ctl"
    KW_HOLD_CTL[$name]=$fd
    KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/$name.pid" "${exec[@]}" "$1" hold "$2" "$3" "$ctl" >"$T/$name.log" 2>&1
    wait_until 30 "$name to connect to $2:$3" kw_holder_connected "$name" "$KW_BG_PID"
    # shellcheck disable=SC2034 # for the test
    KW_HOLD_FD=$(sed -n 's/^connected fd \([0-9]*\) .*/\1/p' "$T/$name.log")
    KW_HOLD_PID=$(cat "$T/$name.pid")
}

kw_holder_connected() { # NAME PID
    grep -q '^connected fd ' "$T/$1.log" && return 0
    kw_pid_alive "$2" || fail "$1 exited before it was connected: $(cat "$T/$1.log")"
    return 1
}

holder_cmd() { # NAME COMMAND: one command line to the holder (see kw_guard_probe hold)
    echo "$2" >&"${KW_HOLD_CTL[$1]}"
}

# The enrolled workload of the guard tests: PROBE as NAME, holding its mTLS connection to
# 127.0.0.1:PORT (openssl s_server -rev holding PEER_ID's SVID), after exactly one
# successful handshake as ID; a first line goes through. Its pid in $KW_HOLD_PID.
start_mtls_holder() { # NAME PROBE ID PEER_ID PORT
    ev_mark
    start_holder "$1" --enrolled "$2" 127.0.0.1 "$5"
    expect_one_event "the handshake of $1" '.type == "tls" and .result == "ok"'
    assert_event role=client "spiffe_id=$3" "peer_id=$4" "tgid=$KW_HOLD_PID" "dst_port=$5"
    holder_round_trip "$1"
}

# NAME sends a fresh line through its connection and gets it back reversed (the peer is
# openssl s_server -rev): the connection still works, both ways.
holder_round_trip() { # NAME
    local line="kw-hold-$RANDOM$RANDOM"
    holder_cmd "$1" "send $line"
    wait_until 20 "$1 to get '$line' back reversed (log: $(tail -n 3 "$T/$1.log"))" \
        grep -qxF "received: $(rev <<<"$line")" "$T/$1.log"
}

# A network namespace joined by a veth pair: 10.203.0.1/30 here, 10.203.0.2/30 inside.
# Sets $KW_NS.
make_netns() {
    KW_NS=kwns-$$
    local host_if=kwv$$ peer_if=kwp$$
    ip netns add "$KW_NS" || fail "cannot create netns $KW_NS"
    kw_track netns "$KW_NS"
    ip link add "$host_if" type veth peer name "$peer_if" || fail "cannot create veth pair"
    ip link set "$peer_if" netns "$KW_NS"
    ip addr add 10.203.0.1/30 dev "$host_if"
    ip link set "$host_if" up
    ip -n "$KW_NS" addr add 10.203.0.2/30 dev "$peer_if"
    ip -n "$KW_NS" link set "$peer_if" up
    ip -n "$KW_NS" link set lo up
}

# ---- sinks ---------------------------------------------------------------------------------

# Starts a kw_sink named NAME: received bytes in $T/sink-NAME, connections in
# $T/sink-NAME.conns. Options are kw_sink's; --netns NS runs it inside NS.
start_sink() { # NAME [--netns NS] [kw_sink options] PORT
    local name=$1 ns=""
    shift
    if [[ ${1:-} == --netns ]]; then
        ns=$2
        shift 2
    fi
    local out=$T/sink-$name
    rm -f "$out.ready"
    if [[ -n $ns ]]; then
        kw_bg ip netns exec "$ns" "$T/bin/kw_sink" "$@" "$out" >>"$T/sink-$name.log" 2>&1
    else
        kw_bg "$T/bin/kw_sink" "$@" "$out" >>"$T/sink-$name.log" 2>&1
    fi
    local pid=$KW_BG_PID
    wait_until 10 "sink $name to listen ($(cat "$T/sink-$name.log" 2>/dev/null))" \
        kw_sink_ready "$out" "$pid"
}

kw_sink_ready() {
    [[ -e $1.ready ]] && return 0
    kw_pid_alive "$2" || fail "sink exited before listening: $(cat "$1.log" 2>/dev/null)"
    return 1
}

kw_size() {
    stat -c %s "$1" 2>/dev/null || echo 0
}

# Records how much sink NAME has received, for assert_sink_unchanged.
sink_snapshot() { # NAME
    local out=$T/sink-$1
    echo "$(kw_size "$out") $(kw_size "$out.conns")" >"$out.snap"
}

# The sink received nothing (no connection, no byte) since its snapshot (or ever).
# Waits a little first: a refused attempt must not arrive late either.
assert_sink_unchanged() { # NAME
    local out=$T/sink-$1 want="0 0" now
    [[ -f $out.snap ]] && want=$(cat "$out.snap")
    sleep 0.5
    now="$(kw_size "$out") $(kw_size "$out.conns")"
    [[ $now == "$want" ]] ||
        fail "sink $1 received something: (bytes, connection-log bytes) expected '$want', saw '$now'; data tail: $(tail -c 200 "$out" | tr -c '[:print:]' '.')"
}

# Waits (bounded) until sink NAME has received TEXT.
wait_sink_data() { # NAME TEXT
    local out=$T/sink-$1
    wait_until 10 "sink $1 to receive '$2' (has: $(tail -c 200 "$out" 2>/dev/null | tr -c '[:print:]' '.'))" \
        grep -qF -- "$2" "$out"
}

sink_conns() { # NAME -> number of connections (or datagrams) seen
    local out=$T/sink-$1.conns
    [[ -f $out ]] || { echo 0; return; }
    wc -l <"$out"
}

# A python3 http.server on PORT, enrolled with the agent at $T/enroll.sock (the policy's
# mutual-TLS server ID), serving $T/www/file.txt, which holds $marker (set here). Its
# requests are logged in $T/http.log, its pid in $T/server.pid.
start_enrolled_http_server() { # PORT ID
    local port=$1
    marker="kwarden-marker-$$-$RANDOM"
    mkdir -p "$T/www"
    printf '%s\n' "$marker" >"$T/www/file.txt"
    chmod -R a+rX "$T/www"
    KW_TIMEOUT=280 kw_bg as_workload --pidfile "$T/server.pid" \
        "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- python3 -m http.server "$port" --bind 0.0.0.0 \
        --directory "$T/www" >"$T/http.log" 2>&1
    wait_until 30 "python3 http.server on port $port" kw_listening "$port"
    expect_ok kwarden_cli identity "$(cat "$T/server.pid")"
    assert_eq "identity of the enrolled python3 server" "$2" "$KW_OUT"
}

kw_listening() { # PORT
    ss -Htln "sport = :$1" | grep -q .
}

# ---- an unattested connect loop -----------------------------------------------------------

# Starts an unattested kw_client to 127.0.0.1:PORT every ~20 ms, for at most SECONDS,
# counting outcomes (successes, EPERM, anything else) in $T/loop; waits until it has seen
# 5 refusals. A window of non-enforcement shows as a success.
start_connect_loop() { # PORT SECONDS
    mkdir -m 0777 "$T/loop"
    cat >"$T/loop.sh" <<'LOOP'
#!/bin/bash
dir=$1 client=$2 port=$3 seconds=$4
ok=0 eperm=0 other=0
end=$((SECONDS + seconds))
while ((SECONDS < end)) && [[ ! -e $dir/stop ]]; do
    "$client" 127.0.0.1 "$port" >/dev/null 2>&1
    rc=$?
    case $rc in
        0) ok=$((ok + 1)); date +%s.%N >>"$dir/successes" ;;
        1) eperm=$((eperm + 1)) ;;
        *) other=$((other + 1)); echo "status $rc" >>"$dir/others" ;;
    esac
    echo "$ok $eperm $other" >"$dir/counts.tmp" && mv -f "$dir/counts.tmp" "$dir/counts"
    sleep 0.02
done
echo "$ok $eperm $other" >"$dir/final"
LOOP
    chmod 0755 "$T/loop.sh"
    KW_TIMEOUT=$(($2 + 20)) kw_bg as_workload "$T/loop.sh" "$T/loop" "$T/bin/kw_client" "$1" "$2"
    KW_LOOP_PID=$KW_BG_PID
    wait_until 30 "the loop to see 5 refusals (counts: $(cat "$T/loop/counts" 2>/dev/null))" loop_eperm_at_least 5
}

loop_eperm() { [[ -f $T/loop/counts ]] && cut -d' ' -f2 "$T/loop/counts" || echo 0; }
loop_eperm_at_least() { (($(loop_eperm) >= $1)); }

# Waits (bounded) for N more refusals than the loop has seen so far.
loop_more_refusals() { # N WHEN
    local n
    n=$(loop_eperm)
    wait_until 30 "the loop to see $1 more refusals $2" loop_eperm_at_least $((n + $1))
}

# Stops the loop; fails on any success or outcome other than EPERM, or fewer than
# MIN_EPERM refusals in all.
finish_connect_loop() { # MIN_EPERM WHAT
    local ok eperm other
    touch "$T/loop/stop"
    wait_until 20 "the connect loop to stop" test -f "$T/loop/final"
    wait "$KW_LOOP_PID" 2>/dev/null || true
    read -r ok eperm other <"$T/loop/final"
    note "loop final: $ok successes, $eperm EPERM, $other other"
    assert_eq "successful unattested connects $2 (at: $(tr '\n' ' ' 2>/dev/null <"$T/loop/successes"))" 0 "$ok"
    assert_eq "connect outcomes other than EPERM ($(sort "$T/loop/others" 2>/dev/null | uniq -c | tr '\n' ' '))" 0 \
        "$other"
    ((eperm >= $1)) || fail "the loop made only $eperm refused attempts: too few to cover $2"
}

# ---- policies -----------------------------------------------------------------------------

# The policy most tests use: $KW_ATTESTED, as uid $KW_UID in the test cgroup, is
# $KW_BILLING, the only identity allowed to reach db (127.0.0.1:PORT, tcp).
write_billing_policy() { # FILE PORT [MODE]
    [[ -n ${KW_ATTESTED:-} && -n ${KW_CG:-} ]] || fail "write_billing_policy needs make_attested and make_cgroup first"
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "${3:-enforce}",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$2], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
}

# ---- agent ------------------------------------------------------------------------------------

KW_ADMIN=${KW_ADMIN:-}
KW_EVENTS=${KW_EVENTS:-}
KW_AGENT_WRAP=()
KW_AGENT_ARGS=()

# Starts the agent in the background with POLICY; events go to EVENTS (default
# $T/events.jsonl); waits until `kwarden status` answers.
start_agent() { # POLICY [EVENTS]
    local policy=$1
    KW_EVENTS=${2:-$T/events.jsonl}
    [[ -x $KWARDEN ]] || fail "agent binary $KWARDEN is missing: build it first"
    mkdir -p "$T/state"
    note "starting agent: policy $policy, events $KW_EVENTS"
    # KW_AGENT_WRAP: a command prefix (setpriv ...); KW_AGENT_ARGS: more agent options.
    # The listener holder the agent starts (or finds) is this test's own.
    "${KW_AGENT_WRAP[@]}" "$KWARDEN" agent --policy "$policy" --state-dir "$T/state" --events "$KW_EVENTS" \
        --admin-socket "$KW_ADMIN" --holder-socket "$T/holder.sock" "${KW_AGENT_ARGS[@]}" >>"$T/agent.log" 2>&1 &
    KW_AGENT_PID=$!
    echo "$KW_AGENT_PID" >"$T/.kw_agent_pid"
    wait_agent_ready 120
}

kw_agent_ready() {
    kw_pid_alive "$KW_AGENT_PID" ||
        fail "agent (pid $KW_AGENT_PID) exited before it was ready; log tail: $(tail -n 20 "$T/agent.log")"
    "$KWARDEN" status --json --admin-socket "$KW_ADMIN" >"$T/status.json" 2>>"$T/status.err"
}

wait_agent_ready() { # SECONDS
    wait_until "$1" "agent to answer 'kwarden status' on $KW_ADMIN" kw_agent_ready
    note "agent ready (pid $KW_AGENT_PID)"
}

# SIGTERM, bounded wait, then SIGKILL.
stop_agent() {
    [[ -n ${KW_AGENT_PID:-} ]] || return 0
    kw_kill_pid "$KW_AGENT_PID"
    wait "$KW_AGENT_PID" 2>/dev/null || true
    KW_AGENT_PID=""
    rm -f "$T/.kw_agent_pid"
}

# `kwarden stop`, the operator's stop: the agent turns its guard off (a protection event)
# and exits, so that its state directory and pins may be changed (upgrade, CA change).
stop_agent_unguarded() {
    expect_ok kwarden_cli stop
    wait_until 30 "agent $KW_AGENT_PID to exit after 'kwarden stop'" kw_agent_gone
    wait "$KW_AGENT_PID" 2>/dev/null || true
    KW_AGENT_PID=""
    rm -f "$T/.kw_agent_pid"
}

kw_agent_gone() {
    ! kw_pid_alive "$KW_AGENT_PID"
}

# SIGKILL, as a crash: pinned programs must keep enforcing.
kill_agent() {
    local i
    kill -KILL "$KW_AGENT_PID" || fail "cannot SIGKILL agent $KW_AGENT_PID"
    for ((i = 0; i < 100; i++)); do
        kw_pid_alive "$KW_AGENT_PID" || break
        sleep 0.1
    done
    wait "$KW_AGENT_PID" 2>/dev/null || true
    kw_pid_alive "$KW_AGENT_PID" && fail "agent $KW_AGENT_PID survived SIGKILL"
    KW_AGENT_PID=""
    rm -f "$T/.kw_agent_pid"
}

kwarden_cli() { # ARGS...: the CLI against this test's agent
    "$KWARDEN" "$@" --admin-socket "$KW_ADMIN"
}

# Whether `kwarden status` says the file_permission guard is attached (true|false).
file_guard_is() { # true|false
    [[ $("$KWARDEN" status --json --admin-socket "$KW_ADMIN" 2>/dev/null | jq -r '.file_permission_guard') == "$1" ]]
}

# The policy revision `kwarden status --json` reports, or "" if it has none we know.
status_revision() {
    "$KWARDEN" status --json --admin-socket "$KW_ADMIN" 2>/dev/null |
        jq -r '[.. | objects | (.policy_revision? // .revision? // empty)] | first // empty | tostring' 2>/dev/null || true
}

# ---- identity -----------------------------------------------------------------------------------

# A trust domain made with the CA tooling, as an operator would: the root (and a first
# intermediate) in $T/root, offline; a node intermediate in $T/state/ca, where the agent
# started by start_agent reads it.
make_node_ca() {
    mkdir -p "$T/state"
    expect_ok "$KWARDEN" ca init --trust-domain "$KW_TD" --out "$T/root"
    expect_ok "$KWARDEN" ca sign-intermediate --root "$T/root" --out "$T/state/ca" --ttl 1d
}

# A mutual-TLS peer kwarden does not manage: make_node_ca, then an SVID for ID in $T/ledger.
make_mtls_peer() { # ID
    make_node_ca
    expect_ok "$KWARDEN" svid mint --ca "$T/root" --id "$1" --out "$T/ledger" --ttl 1h
}

# `openssl s_server` on 127.0.0.1:PORT holding the SVID of make_mtls_peer: TLS 1.3 only, a
# client certificate required and verified against $T/root; -rev answers each line
# reversed. No tickets and AES-128-GCM, unless --stock: OpenSSL's own defaults (two session
# tickets after the handshake, the client's suite order), then any more s_server options.
# Logs to $T/s_server.log (--stock: $T/s_server-PORT.log); returns once listening.
start_s_server() { # PORT [--stock [OPTION...]]
    local opts=(-num_tickets 0 -ciphersuites TLS_AES_128_GCM_SHA256) log=$T/s_server.log
    if [[ ${2:-} == --stock ]]; then opts=("${@:3}") log=$T/s_server-$1.log; fi
    openssl s_server -accept "127.0.0.1:$1" -tls1_3 "${opts[@]}" \
        -cert "$T/ledger/svid.pem" -cert_chain "$T/ledger/svid.pem" -key "$T/ledger/svid_key.pem" \
        -CAfile "$T/root/root.pem" -Verify 1 -verify_return_error -rev >"$log" 2>&1 </dev/null &
    kw_track pids $!
    wait_until 20 "openssl s_server on port $1" kw_tcp_listening "$1"
}

kw_tcp_listening() { # PORT
    ss -Htln "sport = :$1" | grep -q .
}

# Writes the X.509 authorities of a SPIFFE bundle (JSON on stdin) as PEM to FILE.
bundle_to_pem() { # FILE
    "$KW_PY" -c '
import base64, json, sys, textwrap
doc = json.load(sys.stdin)
with open(sys.argv[1], "w") as out:
    for key in doc["keys"]:
        if key.get("use") != "x509-svid":
            continue
        b64 = key["x5c"][0]
        base64.b64decode(b64, validate=True)
        out.write("-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(b64, 64)) + "\n-----END CERTIFICATE-----\n")
' "$1"
}

# OpenSSL, as an independent verifier, must accept every SVID that `kwarden svid list`
# shows, for client and server use, against ROOT_PEM, at the time it was issued (an SVID
# with a TTL of seconds may expire while a slow VM runs openssl). Prints the number checked.
verify_agent_svids() { # ROOT_PEM
    local root=$1 dir=$T/svids n i purpose issued
    mkdir -p "$dir"
    kwarden_cli svid list --json >"$dir/list.json" || fail "kwarden svid list --json failed"
    n=$(jq '.svids | length' "$dir/list.json")
    ((n > 0)) || fail "the agent holds no SVIDs"
    for ((i = 0; i < n; i++)); do
        jq -r ".svids[$i].certificate_pem" "$dir/list.json" >"$dir/leaf-$i.pem"
        jq -r ".svids[$i].intermediates_pem" "$dir/list.json" >"$dir/inter-$i.pem"
        issued=$(date -d "$(jq -r ".svids[$i].issued_at" "$dir/list.json")" +%s)
        for purpose in sslclient sslserver; do
            openssl verify -x509_strict -attime "$issued" -purpose "$purpose" -CAfile "$root" -untrusted "$dir/inter-$i.pem" \
                "$dir/leaf-$i.pem" >"$dir/verify.out" 2>&1 ||
                fail "openssl rejects the SVID of $(jq -r ".svids[$i].spiffe_id" "$dir/list.json") ($purpose): $(cat "$dir/verify.out")"
        done
    done
    echo "$n"
}

# ---- events -------------------------------------------------------------------------------------

KW_EV_MARK=0

# From now on, event helpers only look at events written after this point.
ev_mark() {
    KW_EV_MARK=$(wc -l <"$KW_EVENTS" 2>/dev/null || echo 0)
}

# Prints the events (one compact JSON per line) after the mark that satisfy FILTER, a
# jq boolean expression; extra jq arguments (--arg ...) follow.
ev_select() { # FILTER [jq args...]
    local filter=$1
    shift
    [[ -f $KW_EVENTS ]] || return 0
    tail -n "+$((KW_EV_MARK + 1))" "$KW_EVENTS" |
        jq -c -R "$@" "fromjson? // empty | select($filter)"
}

ev_count() {
    ev_select "$@" | wc -l
}

# Waits (bounded) for events matching FILTER, then requires exactly one, and keeps it in
# $KW_EVENT.
expect_one_event() { # DESCRIPTION FILTER [jq args...]
    local what=$1 deadline n
    shift
    deadline=$((SECONDS + 10))
    while n=$(ev_count "$@"); ((n < 1)); do
        ((SECONDS < deadline)) ||
            fail "no event for $what after 10s; last events: $(tail -n 5 "$KW_EVENTS" 2>/dev/null)"
        sleep 0.1
    done
    sleep 0.5 # a duplicate would arrive right behind the first
    n=$(ev_count "$@")
    [[ $n -eq 1 ]] || fail "expected exactly one event for $what, saw $n: $(ev_select "$@" | head -n 5)"
    KW_EVENT=$(ev_select "$@")
    note "event for $what: $KW_EVENT"
}

# Requires no event matching FILTER (after a short settle).
expect_no_event() { # DESCRIPTION FILTER [jq args...]
    local what=$1 n
    shift
    sleep 0.5
    n=$(ev_count "$@")
    [[ $n -eq 0 ]] || fail "expected no event for $what, saw $n: $(ev_select "$@" | head -n 3)"
}

# Checks fields of $KW_EVENT, all in one jq run (jq is slow to start under emulation).
# Each CHECK is KEY=VALUE (the field, as a string, equals VALUE), KEY@=VALUE (the field
# is an array containing VALUE), KEY~=REGEX, has:KEY (present, not null, not ""), or
# cgroup:PATH:ID (the field "cgroup" is the cgroup PATH, or its id ID). Every failed
# check is reported, not only the first.
assert_event() { # CHECK...
    local problems
    problems=$(jq -r '
        . as $e
        | def shown($k): if ($e | has($k)) then ($e[$k] | tojson) else "<missing>" end;
          $ARGS.positional[]
        | if startswith("has:") then
              .[4:] as $k
              | if ($e | has($k)) and $e[$k] != null and $e[$k] != "" then empty
                else "field \($k) missing or empty (\(shown($k)))" end
          elif startswith("cgroup:") then
              (.[7:] | capture("^(?<path>.*):(?<id>[0-9]*)$")) as $m
              | ($e.cgroup | tostring) as $c
              | if $c == $m.id or $c == $m.path or ($c | endswith($m.path)) then empty
                else "field cgroup: expected \($m.path) (id \($m.id)), saw \(shown("cgroup"))" end
          elif test("^[A-Za-z0-9_]+@=") then
              capture("^(?<k>[A-Za-z0-9_]+)@=(?<v>.*)$"; "s") as $m
              | if ($e[$m.k] | type) == "array" and ($e[$m.k] | index($m.v)) != null then empty
                else "field \($m.k): expected an array containing \($m.v | tojson), saw \(shown($m.k))" end
          elif test("^[A-Za-z0-9_]+~=") then
              capture("^(?<k>[A-Za-z0-9_]+)~=(?<v>.*)$"; "s") as $m
              | if ($e | has($m.k)) and ($e[$m.k] | tostring | test($m.v)) then empty
                else "field \($m.k): expected a match for /\($m.v)/, saw \(shown($m.k))" end
          else
              capture("^(?<k>[A-Za-z0-9_]+)=(?<v>.*)$"; "s") as $m
              | if ($e | has($m.k)) and ($e[$m.k] | tostring) == $m.v then empty
                else "field \($m.k): expected \($m.v | tojson), saw \(shown($m.k))" end
          end' --args "$@" <<<"$KW_EVENT" 2>&1) || fail "cannot check event $KW_EVENT: $problems"
    [[ -z $problems ]] || fail "event: $(echo "$problems" | paste -sd ';' | sed 's/;/; /g'); event: $KW_EVENT"
}

# Every field a connect event must carry.
KW_CONNECT_FIELDS=(type time decision mode pid tgid exe sha256 uid gid cgroup spiffe_id
    dst_addr dst_port protocol path destinations decided_by policy_revision)

assert_event_has() { # FIELD...
    assert_event "${@/#/has:}"
}

# Exactly one connect event of DECISION by process PID to PORT, with every required
# field, the workload's uid, gid and cgroup, and the CHECKs (see assert_event).
expect_connect_event() { # DECISION PID PORT CHECK...
    local decision=$1 pid=$2 port=$3
    shift 3
    expect_one_event "$decision of tgid $pid to port $port" \
        '.type == "connect" and .decision == $d and (.tgid | tostring) == $pid and (.dst_port | tostring) == $port' \
        --arg d "$decision" --arg pid "$pid" --arg port "$port"
    assert_event "${KW_CONNECT_FIELDS[@]/#/has:}" type=connect "decision=$decision" "tgid=$pid" \
        "dst_port=$port" "uid=$KW_UID" "gid=$KW_GID" "cgroup:$KW_CG:$KW_CG_ID" "$@"
}

# The usual deny: enforce mode, unattested, by EXE (a path; compared resolved).
expect_deny_event() { # PID PORT EXE CHECK...
    local pid=$1 port=$2 exe
    exe=$(readlink -f "$3")
    shift 3
    expect_connect_event deny "$pid" "$port" "exe=$exe" "sha256=$(sha256_of "$exe")" "$@"
}

# ---- test entry -------------------------------------------------------------------------------

# When sourced by a test (not by run.sh): strict mode, scratch dir, cleanup trap.
if [[ -z ${KW_LIB_RUNNER:-} ]]; then
    set -Eeuo pipefail
    KW_TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
    if [[ -z ${T:-} ]]; then
        mkdir -p "$KW_SCRATCH_ROOT"
        T=$(mktemp -d "$KW_SCRATCH_ROOT/$KW_TEST_NAME.XXXXXX")
        chmod 0755 "$T"
    fi
    export T
    KW_ADMIN=${KW_ADMIN:-$T/admin.sock}
    trap 'kw_on_err $? $LINENO "$BASH_COMMAND"' ERR
    trap 'kw_cleanup "$T"' EXIT
    cd "$T"
fi
