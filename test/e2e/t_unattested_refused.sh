#!/usr/bin/env bash
# With the attested workload's uid and cgroup, other binaries are refused with EPERM:
# a copy of the attested binary with one byte changed, python3 opening a socket, and
# bash using /dev/tcp. The service receives nothing; each refusal is one deny event.
# The attested binary itself still gets through (positive control, last).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7102
setup_tools
make_attested
make_cgroup
make_patched_copy "$KW_ATTESTED" "$T/bin/billing-client-patched"
start_sink db "$PORT"

write_billing_policy "$T/policy.json" "$PORT"
start_agent "$T/policy.json"
DENY=(spiffe_id=unattested mode=enforce protocol=tcp path=connect dst_addr=127.0.0.1 "destinations@=db")

# 1. The attested binary with one byte changed.
expect_errno EPERM as_workload --pidfile "$T/patched.pid" \
    "$T/bin/billing-client-patched" --send "patched-$$" 127.0.0.1 "$PORT"
assert_match "patched copy output" 'connect: EPERM' "$KW_OUT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/patched.pid")" "$PORT" "$T/bin/billing-client-patched" "${DENY[@]}"

# 2. python3 opening a socket: the exception's errno must be EPERM (1).
cat >"$T/connect.py" <<'PY'
import errno, socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(b"python-was-here")
    s.close()
except OSError as e:
    print("connect: %s (%s) %s" % (errno.errorcode.get(e.errno, "?"), e.errno, e))
    sys.exit(e.errno if e.errno else 255)
print("connect: ok")
PY
chmod 0644 "$T/connect.py"
expect_errno EPERM as_workload --pidfile "$T/python.pid" "$KW_PY" "$T/connect.py" "$PORT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/python.pid")" "$PORT" "$KW_PY" "${DENY[@]}"

# 3. bash with /dev/tcp: bash exits 1 and says why.
expect_status 1 as_workload --pidfile "$T/bash.pid" /bin/bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
assert_match "bash /dev/tcp error" 'Operation not permitted' "$KW_OUT"
assert_sink_unchanged db
expect_deny_event "$(cat "$T/bash.pid")" "$PORT" /bin/bash "${DENY[@]}"

# Positive control: the attested binary, same uid and cgroup, gets through.
expect_ok as_workload "$KW_ATTESTED" --send "attested-$$" 127.0.0.1 "$PORT"
wait_sink_data db "attested-$$"

stop_agent
