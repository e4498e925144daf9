#!/usr/bin/env bash
# SIGKILL of the agent leaves enforcement in place, and a restart (same policy, same
# state dir) takes over with no window: an unattested connect loop running across the
# kill and the restart sees zero successes. The attested binary still gets through after.
# Who restarts matters: the agent's binary started with LD_LIBRARY_PATH is not the agent
# (the kernel refuses it the state directory, and it exits saying why), while one started
# with OPENSSL_ia32cap (the bench's way to hide AES-NI from BoringSSL) is.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7108
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"

write_billing_policy "$T/policy.json" "$PORT"
start_agent "$T/policy.json"

# The loop: an unattested kw_client every ~20 ms, for at most 150 s (told to stop long before).
start_connect_loop "$PORT" 150

# Crash the agent: pins stay, enforcement stays.
kill_agent
[[ -d /sys/fs/bpf/kwarden ]] || fail "/sys/fs/bpf/kwarden is gone after SIGKILL of the agent"
loop_more_refusals 10 "with the agent dead"
note "agent dead; loop counts: $(cat "$T/loop/counts")"

# Restart: same policy, same state dir.
start_agent "$T/policy.json" "$T/events-restarted.jsonl"
loop_more_refusals 10 "after the restart"

finish_connect_loop 25 "across the kill and the restart"
assert_sink_unchanged db

# The restarted agent still reports denies.
ev_mark
expect_errno EPERM as_workload --pidfile "$T/after.pid" "$T/bin/kw_client" 127.0.0.1 "$PORT"
expect_deny_event "$(cat "$T/after.pid")" "$PORT" "$T/bin/kw_client" spiffe_id=unattested mode=enforce

# The attested binary still reaches the service after the restart.
expect_ok as_workload "$KW_ATTESTED" --send "after-restart-$$" 127.0.0.1 "$PORT"
wait_sink_data db "after-restart-$$"

# A loader variable: the same binary is not the agent. The gate holds meanwhile.
kill_agent
expect_status 1 env LD_LIBRARY_PATH=/nonexistent "$KWARDEN" agent --policy "$T/policy.json" \
    --state-dir "$T/state" --events "$T/events-refused.jsonl" --admin-socket "$KW_ADMIN" --holder-socket "$T/holder.sock"
assert_match "the refused agent's reason" "refuses this process its state directory.*LD_\\*, GLIBC_TUNABLES or GCONV_PATH" \
    "$KW_OUT"
expect_errno EPERM as_workload "$T/bin/kw_client" 127.0.0.1 "$PORT"
# OPENSSL_ia32cap loads no code into BoringSSL: that agent takes over.
KW_AGENT_WRAP=(env "OPENSSL_ia32cap=~0x200000000000000")
start_agent "$T/policy.json" "$T/events-openssl.jsonl"
KW_AGENT_WRAP=()
expect_errno EPERM as_workload "$T/bin/kw_client" 127.0.0.1 "$PORT"
expect_ok as_workload "$KW_ATTESTED" --send "openssl-env-$$" 127.0.0.1 "$PORT"
wait_sink_data db "openssl-env-$$"

stop_agent
