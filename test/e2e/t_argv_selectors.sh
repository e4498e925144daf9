#!/usr/bin/env bash
# argv and argv_prefix selectors in the kernel: at bprm_committed_creds the
# new image's argv is read where exec left it (mm->arg_start is not set yet then), so
# an interpreter's workload can be told apart by its arguments. Exact argv matches only
# the whole list; argv_prefix matches whole leading arguments; a different argument, a
# shorter list or an argument that merely starts the same gets no identity.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

setup_tools
make_cgroup
echo '{ "version": 1, "trust_domain": "example.org" }' >"$T/empty.json"
start_agent "$T/empty.json"

identity_of() { # SELECTORS_JSON CMD...: the identity CMD gets under a policy with SELECTORS
    local sel=$1 pid
    shift
    cat >"$T/p.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "workloads": [ { "id": "spiffe://$KW_TD/x", "selectors": $sel } ] }
JSON
    kwarden_cli policy apply "$T/p.json" >/dev/null || fail "policy apply failed for $sel"
    rm -f "$T/pid"
    as_workload --pidfile "$T/pid" "$@" >/dev/null 2>&1 &
    local bg=$!
    wait_until 10 "the workload to start" test -s "$T/pid"
    sleep 0.3  # the pid file is written before exec: let the exec happen
    pid=$(cat "$T/pid")
    kwarden_cli identity "$pid"
    kill "$pid" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
}
expect_identity() { # WANT SELECTORS_JSON CMD...
    local want=$1 got
    shift
    got=$(identity_of "$@")
    note "$2 ... under $1: $got"
    assert_eq "identity of '${*:2}' under selectors $1" "$want" "$got"
}
X=spiffe://$KW_TD/x
expect_identity "$X" '{"argv": ["sleep", "30"]}' sleep 30
expect_identity unattested '{"argv": ["sleep", "30"]}' sleep 31
expect_identity unattested '{"argv": ["sleep"]}' sleep 30
expect_identity "$X" '{"argv_prefix": ["python3", "-m", "http.server"]}' python3 -m http.server 7181 --bind 127.0.0.1
expect_identity unattested '{"argv_prefix": ["python3", "-m", "http.serv"]}' python3 -m http.server 7182 --bind 127.0.0.1
expect_identity "$X" '{"exe": "/usr/bin/python3", "argv_prefix": ["python3", "-c"], "uid": 1000}' \
    python3 -c 'import time; time.sleep(30)'
expect_identity unattested '{"exe": "/usr/bin/python3", "argv_prefix": ["python3", "-c"], "uid": 1000}' \
    python3 -u -c 'import time; time.sleep(30)'
# An empty environment: argv sits right below the filename at the top of the new stack.
expect_identity "$X" '{"argv": ["sleep", "29"]}' env -i sleep 29
stop_agent
