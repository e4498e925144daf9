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

# The loop: an unattested kw_client every ~20 ms, counting outcomes, for at most 150 s
# (it is told to stop long before). Counters: successes, EPERM, anything else.
mkdir -m 0777 "$T/loop"
cat >"$T/loop.sh" <<'LOOP'
#!/bin/bash
dir=$1 client=$2 port=$3
ok=0 eperm=0 other=0
end=$((SECONDS + 150))
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

loop_eperm() { [[ -f $T/loop/counts ]] && cut -d' ' -f2 "$T/loop/counts" || echo 0; }
eperm_at_least() { (($(loop_eperm) >= $1)); }

KW_TIMEOUT=170 kw_bg as_workload "$T/loop.sh" "$T/loop" "$T/bin/kw_client" "$PORT"
LOOP_PID=$KW_BG_PID
wait_until 30 "the loop to see 5 refusals (counts: $(cat "$T/loop/counts" 2>/dev/null))" eperm_at_least 5

# Crash the agent: pins stay, enforcement stays.
kill_agent
[[ -d /sys/fs/bpf/kwarden ]] || fail "/sys/fs/bpf/kwarden is gone after SIGKILL of the agent"
n=$(loop_eperm)
wait_until 30 "the loop to see 10 more refusals with the agent dead" eperm_at_least $((n + 10))
note "agent dead; loop counts: $(cat "$T/loop/counts")"

# Restart: same policy, same state dir.
start_agent "$T/policy.json" "$T/events-restarted.jsonl"
n=$(loop_eperm)
wait_until 30 "the loop to see 10 more refusals after the restart" eperm_at_least $((n + 10))

touch "$T/loop/stop"
wait_until 20 "the connect loop to stop" test -f "$T/loop/final"
wait "$LOOP_PID" 2>/dev/null || true
read -r ok eperm other <"$T/loop/final"
note "loop final: $ok successes, $eperm EPERM, $other other"
assert_eq "successful unattested connects across kill and restart (at: $(tr '\n' ' ' 2>/dev/null <"$T/loop/successes"))" 0 "$ok"
assert_eq "connect outcomes other than EPERM ($(sort "$T/loop/others" 2>/dev/null | uniq -c | tr '\n' ' '))" 0 "$other"
(( eperm >= 25 )) || fail "the loop made only $eperm refused attempts: too few to cover the kill and the restart"
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
