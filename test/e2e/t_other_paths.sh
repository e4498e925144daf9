#!/usr/bin/env bash
# Paths that open a connection without a plain connect(2) are gated too, for an
# unattested process: TCP Fast Open sendto(MSG_FASTOPEN), unconnected UDP sendto,
# io_uring's IORING_OP_CONNECT, and an IPv6 socket reaching the IPv4 service through
# ::ffff:127.0.0.1. Each is EPERM exactly, the service receives nothing, and there is
# one deny event. A port the policy does not declare is untouched.
# Before the agent starts, each path is shown to deliver data, so "received nothing"
# means the gate stopped it.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7104   # tcp, declared
UPORT=7105  # udp, declared
FREE=7106   # tcp, undeclared
setup_tools
make_cgroup
kw_sysctl net.ipv4.tcp_fastopen 3
start_sink db "$PORT"
start_sink dns --udp "$UPORT"
start_sink free "$FREE"

# Controls without the agent, as the same uid and cgroup. TFO twice: the first gets a
# cookie (its data follows the handshake), the second, and the refused one later, would
# carry the data in the SYN itself.
expect_ok as_workload "$T/bin/kw_tfo_sendto" 127.0.0.1 "$PORT" "pre-tfo-$$"
wait_sink_data db "pre-tfo-$$"
expect_ok as_workload "$T/bin/kw_tfo_sendto" 127.0.0.1 "$PORT" "pre-tfo2-$$"
wait_sink_data db "pre-tfo2-$$"
expect_ok as_workload "$T/bin/kw_udp_sendto" 127.0.0.1 "$UPORT" "pre-udp-$$"
wait_sink_data dns "pre-udp-$$"
expect_ok as_workload "$T/bin/kw_uring_connect" 127.0.0.1 "$PORT" "pre-uring-$$"
wait_sink_data db "pre-uring-$$"
expect_ok as_workload "$T/bin/kw_client" --send "pre-v4mapped-$$" ::ffff:127.0.0.1 "$PORT"
wait_sink_data db "pre-v4mapped-$$"
sink_snapshot db
sink_snapshot dns

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$T/bin/billing-client", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [
    { "name": "db", "cidrs": ["127.0.0.1/32", "::1/128"], "ports": [$PORT], "protocol": "tcp" },
    { "name": "dns", "cidrs": ["127.0.0.1/32"], "ports": [$UPORT], "protocol": "udp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" }, { "from": "$KW_BILLING", "to": "dns" } ] }
JSON
make_attested
start_agent "$T/policy.json"
COMMON=(spiffe_id=unattested mode=enforce dst_addr=127.0.0.1)

# TCP Fast Open: sendto(MSG_FASTOPEN) without connect().
expect_errno EPERM as_workload --pidfile "$T/tfo.pid" "$T/bin/kw_tfo_sendto" 127.0.0.1 "$PORT" "tfo-$$"
assert_match "kw_tfo_sendto output" '^sendto: EPERM' "$KW_OUT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/tfo.pid")" "$PORT" "$T/bin/kw_tfo_sendto" "${COMMON[@]}" \
    protocol=tcp path=sendmsg destinations@=db

# UDP sendto on an unconnected socket.
expect_errno EPERM as_workload --pidfile "$T/udp.pid" "$T/bin/kw_udp_sendto" 127.0.0.1 "$UPORT" "udp-$$"
assert_match "kw_udp_sendto output" '^sendto: EPERM' "$KW_OUT"
assert_sink_unchanged dns
expect_deny_event "$(cat "$T/udp.pid")" "$UPORT" "$T/bin/kw_udp_sendto" "${COMMON[@]}" \
    protocol=udp path=sendmsg destinations@=dns

# io_uring connect: the completion carries EPERM (not io_uring being unavailable).
expect_errno EPERM as_workload --pidfile "$T/uring.pid" "$T/bin/kw_uring_connect" 127.0.0.1 "$PORT" "uring-$$"
assert_match "kw_uring_connect output" '^io_uring connect: EPERM' "$KW_OUT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/uring.pid")" "$PORT" "$T/bin/kw_uring_connect" "${COMMON[@]}" \
    protocol=tcp path=connect destinations@=db

# IPv6 socket, v4-mapped address of the IPv4 service.
expect_errno EPERM as_workload --pidfile "$T/mapped.pid" "$T/bin/kw_client" --send "mapped-$$" ::ffff:127.0.0.1 "$PORT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/mapped.pid")" "$PORT" "$T/bin/kw_client" spiffe_id=unattested mode=enforce \
    protocol=tcp path=connect destinations@=db 'dst_addr~=^(::ffff:)?127\.0\.0\.1$'

# An undeclared port is not touched, and leaves no event.
expect_ok as_workload "$T/bin/kw_client" --send "free-$$" 127.0.0.1 "$FREE"
wait_sink_data free "free-$$"
expect_no_event "connect to undeclared port $FREE" \
    '.type == "connect" and (.dst_port | tostring) == $p' --arg p "$FREE"

# The attested binary still reaches the service (the refusals above were about identity).
expect_ok as_workload "$KW_ATTESTED" --send "attested-$$" 127.0.0.1 "$PORT"
wait_sink_data db "attested-$$"

stop_agent
