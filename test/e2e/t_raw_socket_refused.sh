#!/usr/bin/env bash
# kw-timeout: 480
# raw and packet sockets reach a declared destination without
# connect(). With CAP_NET_RAW (root here) a process hand-crafts a UDP datagram to the
# protected UDP sink db (127.0.0.1:PORT, declared, no rule for anyone): through
# SOCK_RAW with its own IP header, and as a whole frame on "lo" through AF_PACKET.
# The control shows the attack is real: root outside every governed cgroup (the host's
# tools) gets both datagrams into the sink, although its plain sendto() to db is refused
# by the gate. Governed processes get EPERM from socket() (no packet reaches the sink,
# one raw_socket guard event each): the attested workload (a pinned script), an
# unattested process in the workload's cgroup, and one in a cgroup below it; the legacy
# socket(AF_INET, SOCK_PACKET) too. A raw socket created outside and carried into the
# governed cgroup is refused at sendto(). A workload with "allow_raw_sockets" keeps
# them; ICMP "ping" sockets stay open to the attested workload. Audit mode reports
# (mode audit, errno null) and lets the datagram through.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7311
RAWOK=spiffe://$KW_TD/raw-tool
setup_tools
make_cgroup
ATTESTED=$T/bin/raw-billing.py # pinned: the workload
ALLOWED=$T/bin/raw-allowed.py  # pinned: a workload with allow_raw_sockets
ATTACKER=$T/bin/raw-send.py    # the same code, not pinned
for f in "$ATTESTED" "$ALLOWED" "$ATTACKER"; do install -m 0755 "$KW_E2E_DIR/tools/kw_raw_send.py" "$f"; done
CHILD_DIR=$KW_CG_DIR/below
mkdir "$CHILD_DIR" # removed at the end: cleanup removes cgroups in the order they were made
start_sink db --udp "$PORT"
# Ping sockets for every group, so that what refuses below is not the sysctl.
kw_sysctl net.ipv4.ping_group_range "0 2147483647"
# A frame injected on lo (AF_PACKET) carries no route: the input route lookup would drop
# it as a martian (destination 127.0.0.1, and a source that is a local address). Against
# a service on any other address, from another, neither switch is needed.
kw_sysctl net.ipv4.conf.lo.route_localnet 1
kw_sysctl net.ipv4.conf.lo.accept_local 1

write_policy() { # MODE
    cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "$1",
  "workloads": [
    { "id": "$KW_BILLING", "selectors": { "script": "$ATTESTED", "uid": 0, "cgroup": "$KW_CG" } },
    { "id": "$RAWOK", "selectors": { "script": "$ALLOWED", "uid": 0, "cgroup": "$KW_CG" }, "allow_raw_sockets": true } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "udp" } ],
  "rules": [] }
JSON
}
write_policy enforce
start_agent "$T/policy.json"

# Root outside the governed cgroups (this shell's cgroup), as the host's tools run.
outside() { # CMD...
    KW_TIMEOUT=20 timeout -k 2 20 "$@"
}
# Root in cgroup DIR, writing its pid to $T/who.pid.
in_cgroup() { # DIR CMD...
    local dir=$1
    shift
    timeout -k 2 20 bash -c 'echo $$ >"$1"; echo $$ >"$2/cgroup.procs" || exit 201; shift 2; exec "$@"' \
        in_cgroup "$T/who.pid" "$dir" "$@"
}

# ---- control: the attack works from outside the governed cgroups -----------------------
ev_mark
expect_errno EPERM outside "$T/bin/kw_udp_sendto" 127.0.0.1 "$PORT" "plain-$$"
sink_snapshot db
assert_sink_unchanged db
for mode in hdrincl packet; do
    expect_ok outside "$ATTACKER" "$mode" "$PORT" "control-$mode-$$"
    wait_sink_data db "control-$mode-$$"
done
expect_ok outside "$ATTACKER" legacy "$PORT" x
expect_no_event "raw sockets outside the governed cgroups" '.type == "guard"'

# ---- governed processes: EPERM at socket(), nothing reaches the sink --------------------
# One refused attempt: the errno, the call, the sink untouched, exactly one event.
refused() { # MODE FAMILY TYPE SPIFFE_ID CGROUP_DIR EXE...
    local mode=$1 family=$2 type=$3 id=$4 dir=$5
    shift 5
    ev_mark
    sink_snapshot db
    expect_errno EPERM in_cgroup "$dir" "$@" "$mode" "$PORT" "refused-$mode-$$"
    assert_match "the refused call ($mode)" "^socket\(.*\): EPERM " "$KW_OUT"
    assert_sink_unchanged db
    expect_one_event "raw socket ($mode) of $(cat "$T/who.pid")" \
        '.type == "guard" and .action == "raw_socket" and (.tgid | tostring) == $pid' --arg pid "$(cat "$T/who.pid")"
    assert_event decision=deny errno=EPERM mode=enforce "family=$family" "socket_type=$type" "spiffe_id=$id" uid=0 \
        "cgroup_id=$(stat -c %i "$dir")"
}
# Each case takes a while under emulation: every (kind of process, socket) pair once.
refused hdrincl AF_INET SOCK_RAW "$KW_BILLING" "$KW_CG_DIR" "$ATTESTED"
refused packet AF_PACKET SOCK_RAW unattested "$KW_CG_DIR" "$ATTACKER"
refused hdrincl AF_INET SOCK_RAW unattested "$CHILD_DIR" "$ATTACKER"
# The kernel turns socket(AF_INET, SOCK_PACKET) into AF_PACKET before asking the LSM.
refused legacy AF_PACKET SOCK_PACKET unattested "$KW_CG_DIR" "$ATTACKER"

# A raw socket made outside, then carried into the governed cgroup: refused at sendto().
ev_mark
sink_snapshot db
expect_errno EPERM outside "$ATTACKER" passed "$PORT" "passed-$$" "$KW_CG_DIR/cgroup.procs"
assert_match "the refused send" "^sendto: EPERM " "$KW_OUT"
assert_sink_unchanged db
expect_one_event "the carried raw socket" '.type == "guard" and .action == "raw_socket"'
assert_event decision=deny errno=EPERM family=AF_INET socket_type=SOCK_RAW spiffe_id=unattested \
    "cgroup_id=$KW_CG_ID"

# ---- what stays open -----------------------------------------------------------------------
ev_mark
expect_ok in_cgroup "$KW_CG_DIR" "$ALLOWED" hdrincl "$PORT" "allowed-$$"
wait_sink_data db "allowed-$$"
expect_ok in_cgroup "$KW_CG_DIR" "$ATTESTED" ping 0 "ping-$$"
expect_no_event "allow_raw_sockets, ping sockets" '.type == "guard"'

# ---- audit mode reports and lets it through -------------------------------------------------
write_policy audit
expect_ok kwarden_cli policy apply "$T/policy.json"
ev_mark
expect_ok in_cgroup "$KW_CG_DIR" "$ATTACKER" hdrincl "$PORT" "audited-$$"
wait_sink_data db "audited-$$"
expect_one_event "the audited raw socket" '.type == "guard" and .action == "raw_socket"'
assert_event decision=deny errno=null mode=audit family=AF_INET socket_type=SOCK_RAW spiffe_id=unattested \
    "tgid=$(cat "$T/who.pid")"

rmdir "$CHILD_DIR"
stop_agent
