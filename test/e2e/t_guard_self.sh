#!/usr/bin/env bash
# Nobody tampers with kwarden, root included. With the agent running,
# a root shell that is not the agent tries, each time getting EPERM ("Operation not
# permitted"), changing nothing, and causing exactly one guard event:
#   - bpftool map update on a pinned map (the guard's own settings), by pin and by id;
#   - bpftool link detach of the gate's link, by id, and opening its pin;
#   - rm of a pin, and a rename of the pin directory;
#   - cat, overwrite and hard link of the node CA's private key;
#   - `kwarden policy apply` as a non-root user (refused by the agent: root only).
# After each, the gate still refuses an unattested connect and the policy revision is
# the same. Then the operator's way out: `kwarden stop` turns the guard off (a
# protection event) and the same bpftool read works, and the key is the one it was.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7161
PIN=/sys/fs/bpf/kwarden
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
make_node_ca
KEY=$T/state/ca/intermediate.key
KEY_SHA=$(sha256_of "$KEY")
write_billing_policy "$T/policy.json" "$PORT"
start_agent "$T/policy.json"
expect_one_event "the guard turned on at start" '.type == "protection" and .guard == "on"'
assert_event "by=agent start"
assert_eq "guard in status" on "$(jq -r .guard "$T/status.json")"
REV=$(status_revision)

# The gate still refuses, and the policy is the one in force.
gate_holds() {
    expect_errno EPERM as_workload "$T/bin/kw_client" --send "probe-$$" 127.0.0.1 "$PORT"
    assert_eq "policy revision" "$REV" "$(status_revision)"
}
gate_holds

# The ids an attacker reads from the agent's fdinfo (PTRACE_MODE_READ stays open).
fdinfo_ids() { # KEY: map_id, prog_id or link_id
    grep -h "^$1:" /proc/"$KW_AGENT_PID"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un
}
MAP_ID=$(fdinfo_ids map_id | head -n1)
LINK_ID=$(fdinfo_ids link_id | head -n1)
[[ -n $MAP_ID && -n $LINK_ID ]] || fail "no map or link ids in the agent's fdinfo (maps: '$MAP_ID', links: '$LINK_ID')"

# Runs CMD as root, expecting a refusal with "Operation not permitted", and one guard
# event of ACTION matching the extra jq FILTER.
attack() { # WHAT ACTION FILTER CMD...
    local what=$1 action=$2 filter=$3 rc=0
    shift 3
    ev_mark
    KW_OUT=$("$@" 2>&1) || rc=$?
    note "$what: $* -> status $rc: $KW_OUT"
    [[ $rc -ne 0 ]] || fail "$what succeeded: $*"
    assert_match "$what: the error" "Operation not permitted" "$KW_OUT"
    expect_one_event "$what" ".type == \"guard\" and .action == \"$action\" and ($filter)"
    assert_event decision=deny errno=EPERM uid=0 spiffe_id=unattested
    gate_holds
}

attack "bpftool map update by pin" pin '.operation == "open"' \
    bpftool map update pinned "$PIN/maps/kw_guard" key hex 00 00 00 00 value hex $(printf '00 %.0s' {1..56})
attack "bpftool map update by id" bpf_object ".bpf_command == \"BPF_MAP_GET_FD_BY_ID\" and .object_id == $MAP_ID" \
    bpftool map update id "$MAP_ID" key hex 00 00 00 00 value hex 00 00 00 00
attack "bpftool link detach by id" bpf_object ".bpf_command == \"BPF_LINK_GET_FD_BY_ID\" and .object_id == $LINK_ID" \
    bpftool link detach id "$LINK_ID"
attack "bpftool link detach by pin" pin '.operation == "open"' \
    bpftool link detach pinned "$PIN/links/kw_connect"
attack "rm of a pin" pin '.operation == "unlink" and .file == "kw_connect"' \
    rm -f "$PIN/links/kw_connect"
[[ -e $PIN/links/kw_connect ]] || fail "the pin $PIN/links/kw_connect is gone"
attack "rename of the pin directory" pin '.operation == "rename" and .file == "links"' \
    mv "$PIN/links" "$PIN/linksold" # (bpffs refuses names with a dot by itself)

attack "cat of the CA key" state_dir '.operation == "open" and .file == "intermediate.key"' \
    cat "$KEY"
attack "overwrite of the CA key" state_dir '.operation == "open" and .file == "intermediate.key"' \
    cp "$T/root/root.key" "$KEY"
attack "hard link of the CA key" state_dir '.operation == "link" and .file == "intermediate.key"' \
    ln "$KEY" "$T/stolen.key"

# Not root: the admin socket refuses (the agent, by SO_PEERCRED), whatever the request.
ev_mark
expect_status 1 setpriv --reuid="$KW_UID" --regid="$KW_GID" --clear-groups -- \
    "$KWARDEN" policy apply "$T/policy.json" --admin-socket "$KW_ADMIN"
assert_match "non-root policy apply: the error" "permission denied: the admin socket answers root only" "$KW_OUT"
expect_one_event "a non-root admin request" '.type == "guard" and .action == "admin_socket"'
assert_event decision=deny errno=EPERM "uid=$KW_UID"
gate_holds

# The way out: `kwarden stop` turns the guard off, as an event, and the agent exits.
ev_mark
stop_agent_unguarded
expect_one_event "the guard turned off" '.type == "protection" and .guard == "off"'
assert_event "by=kwarden stop (admin socket)"
expect_ok bpftool map show pinned "$PIN/maps/kw_guard"
assert_eq "the CA key after all attempts" "$KEY_SHA" "$(sha256_of "$KEY")"
[[ ! -e $T/stolen.key ]] || fail "a hard link to the CA key was made"
# The programs keep enforcing after the stop, unguarded.
expect_errno EPERM as_workload "$T/bin/kw_client" --send "after-$$" 127.0.0.1 "$PORT"
