#!/usr/bin/env bash
# Ordinary argv and environments are read right at exec. The
# attested binary execed with an empty argument, empty variable values, arguments at the
# 255-byte step of the kernel's scan, an argument of 100 KiB, 3000 arguments, non-ASCII
# bytes, or 70,000 variables (past the old scan's bound) gets its identity and reaches its
# destination. argv selectors match with an empty argument inside or at the end of the
# compared words, and still compare whole arguments. A loader variable is still found
# behind thousands of variables, behind thousands of empty arguments and behind 70,000
# variables: refused, with a guard event naming it (not "environment unreadable").
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7191
setup_tools
make_attested
make_cgroup
start_sink db "$PORT"
install -m 0755 "$KW_TOOLS/kw_preload.so" "$T/bin/x.so"
# `with_env [-i] NAME=VALUE|@FILE... -- CMD...`: env(1) in linear time (env's setenv()
# per variable is quadratic in their number), keeping the variables in the order given;
# @FILE adds FILE's lines, so that tens of thousands need not pass through every exec
# on the way.
cat >"$T/bin/with_env" <<'PY'
import os, sys
args = sys.argv[1:]
env = {} if args[0] == "-i" else dict(os.environ)
args = args[1:] if args[0] == "-i" else args
sep = args.index("--")
for a in args[:sep]:
    for kv in open(a[1:]).read().splitlines() if a.startswith("@") else [a]:
        k, v = kv.split("=", 1)
        env.pop(k, None)
        env[k] = v
os.execve(args[sep + 1], args[sep + 1:], env)
PY
chmod 0755 "$T/bin/with_env"
# Seconds per workload command: tens of thousands of strings take their time to build
# and to copy at each exec under emulation.
KW_TIMEOUT=120

KW_EMPTY_IN=spiffe://$KW_TD/empty-inside
KW_EMPTY_END=spiffe://$KW_TD/empty-at-end
KW_EXACT=spiffe://$KW_TD/empty-exact
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [
    { "id": "$KW_EMPTY_IN", "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID,
        "argv_prefix": ["$KW_ATTESTED", "--note", "", "--note", "x"] } },
    { "id": "$KW_EMPTY_END", "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID,
        "argv_prefix": ["$KW_ATTESTED", "--note", "y", "--note", ""] } },
    { "id": "$KW_EXACT", "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID,
        "argv": ["$KW_ATTESTED", "--note", "", "--send", "exact-$$", "127.0.0.1", "$PORT"] } },
    { "id": "$KW_BILLING", "selectors": { "exe": "$KW_ATTESTED", "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_EMPTY_IN", "to": "db" }, { "from": "$KW_EMPTY_END", "to": "db" },
             { "from": "$KW_EXACT", "to": "db" }, { "from": "$KW_BILLING", "to": "db" } ] }
JSON
start_agent "$T/policy.json"

# The attested binary, run as the workload as `[env VARS...] KW_ATTESTED ARGS... --send TAG
# 127.0.0.1 PORT`, reaches db: the data arrives. Unattested, it would not. Which identity
# it had is checked for all cases at once at the end (jq is slow under emulation).
n_case=0
declare -A want_of=() # pid -> "identity case"
reaches() { # WANT TAG [env VARS... --] ARGS...
    local want=$1 tag=$2-$$ envs=()
    shift 2
    if [[ ${1:-} == env ]]; then
        envs=("$KW_PY" "$T/bin/with_env")
        shift
        while [[ $1 != -- ]]; do envs+=("$1"); shift; done
        envs+=(--)
        shift
    fi
    n_case=$((n_case + 1))
    expect_ok as_workload --pidfile "$T/c$n_case.pid" "${envs[@]}" "$KW_ATTESTED" "$@" --send "$tag" 127.0.0.1 "$PORT"
    wait_sink_data db "$tag"
    want_of[$(cat "$T/c$n_case.pid")]="$want $tag"
}
# Each case's connect was allowed once, to the identity it expected.
kw_all_logged() {
    (($(ev_count '.type == "connect" and .decision == "allow"') >= ${#want_of[@]}))
}
check_identities() {
    local pid got
    declare -A got_of=()
    KW_EV_MARK=0
    wait_until 20 "an allow event for each of ${#want_of[@]} cases" kw_all_logged
    while read -r pid got; do
        got_of[$pid]+="$got "
    done < <(ev_select '.type == "connect" and .decision == "allow"' | jq -r '"\(.tgid) \(.spiffe_id)"')
    for pid in "${!want_of[@]}"; do
        assert_eq "identity of case ${want_of[$pid]#* } (pid $pid)" "${want_of[$pid]%% *} " "${got_of[$pid]:-none}"
    done
    note "identities of ${#want_of[@]} cases as expected"
}

# Positive control: the plain case.
reaches "$KW_BILLING" plain

# Empty strings: an empty argument (first, between, several), empty variable values,
# and an environment of nothing but an empty value.
reaches "$KW_BILLING" empty-arg --note ''
reaches "$KW_BILLING" empty-args --note '' --note a --note '' --note ''
reaches "$KW_BILLING" empty-values env EMPTY= ALSO_EMPTY= -- --note ''
reaches "$KW_BILLING" only-empty-value env -i EMPTY= -- --note ''

# Strings that end at, just before and just after the scan's 255-byte step and a page.
edges=()
for n in 254 255 256 509 510 511 4095 4096 4097; do
    edges+=(--note "$(head -c "$n" /dev/zero | tr '\0' s)")
done
reaches "$KW_BILLING" step-edges env "EDGE=$(head -c 255 /dev/zero | tr '\0' e)" -- "${edges[@]}" --note ''

# One argument of 100 KiB, longer than any read and than a page, then an empty one.
BIG=$(head -c 102400 /dev/zero | tr '\0' b)
reaches "$KW_BILLING" big-arg --note "$BIG" --note ''

# 3000 arguments, every third one empty.
many=()
for ((i = 0; i < 1500; i++)); do
    if ((i % 3 == 0)); then many+=(--note ''); else many+=(--note "a$i"); fi
done
reaches "$KW_BILLING" many-args "${many[@]}"

# Non-ASCII bytes: UTF-8, bytes that are no UTF-8 at all, control bytes.
reaches "$KW_BILLING" non-ascii env $'NAME=caf\xc3\xa9' $'RAW=\xff\xfe\x80' -- \
    --note $'caf\xc3\xa9 \xe2\x80\x9cquoted\xe2\x80\x9d' --note $'\xff\xfe\x01\x7f' --note ''

# 70,000 variables: far more strings than the scan used to allow itself (65,536 steps).
seq -f 'V%.0f=' 0 69999 >"$T/lots.env"
reaches "$KW_BILLING" lots-of-vars env "@$T/lots.env" --

# 3000 variables, the control for the loader variable behind them (below).
mapfile -t thousands < <(seq -f 'VAR_%.0f=value' 0 2999)
reaches "$KW_BILLING" thousands-of-vars env "${thousands[@]}" --

# argv selectors: an empty argument inside the compared words, at their end, and in an
# exact argv; whole arguments are still compared ("xx" is not "x", "y " is not "y").
reaches "$KW_EMPTY_IN" sel-in --note '' --note x --note more
reaches "$KW_EMPTY_END" sel-end --note y --note '' --note ''
reaches "$KW_EMPTY_END" sel-end-then --note y --note '' --note z
reaches "$KW_BILLING" sel-not-in --note '' --note xx
reaches "$KW_BILLING" sel-not-end --note 'y ' --note ''
reaches "$KW_BILLING" sel-not-end-nonempty --note y --note z
n_case=$((n_case + 1))
expect_ok as_workload --pidfile "$T/c$n_case.pid" "$KW_ATTESTED" --note '' --send "exact-$$" 127.0.0.1 "$PORT"
wait_sink_data db "exact-$$"
want_of[$(cat "$T/c$n_case.pid")]="$KW_EXACT exact"
check_identities

# A loader variable behind thousands of others is found: refused as unattested, with a
# guard event that names it (the same environments without it reached db above).
refused() { # WHAT ENV_ARGS... -- ARGS...
    local what=$1 envs=()
    shift
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    ev_mark
    sink_snapshot db
    expect_errno EPERM as_workload --pidfile "$T/inj.pid" "$KW_PY" "$T/bin/with_env" "${envs[@]}" -- "$KW_ATTESTED" "$@" \
        --send "inj-$$" 127.0.0.1 "$PORT"
    assert_sink_unchanged db
    expect_one_event "the guard withholding $KW_BILLING for LD_PRELOAD $what" \
        '.type == "guard" and .action == "exec" and (.tgid | tostring) == $pid' --arg pid "$(cat "$T/inj.pid")"
    assert_event decision=deny "workload=$KW_BILLING" spiffe_id=unattested 'withheld_because=["LD_PRELOAD"]'
}
refused "after 3000 variables" "${thousands[@]}" "LD_PRELOAD=$T/bin/x.so" --
refused "after 3000 empty arguments and 3000 empty values" "${thousands[@]/%value/}" "LD_PRELOAD=$T/bin/x.so" -- \
    "${many[@]//a*/}" "${many[@]//a*/}"
refused "after 70,000 variables" "@$T/lots.env" "LD_PRELOAD=$T/bin/x.so" --

stop_agent
