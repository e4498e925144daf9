# shellcheck shell=bash
# Shared by t_code_env_refused.sh and t_code_env_allowed.sh (one test would outlast the
# per-test timeout under emulation): pinned #! jobs of bash, python, perl and node, the
# attacker's code that connects to the sink from inside each interpreter, the policy
# (one workload per job), and the helpers that run a job with an injection.

PORT=7163
# node starts in seconds under emulation, more when the host is busy.
KW_TIMEOUT=60
setup_tools
make_cgroup
start_sink db "$PORT"

HAVE_NODE=0
[[ -x /usr/bin/node ]] && HAVE_NODE=1

# The pinned jobs: with PORT and TEXT they send TEXT to the sink themselves; without,
# they only say that they ran.
cat >"$T/bin/job.sh" <<'EOF'
#!/bin/bash
if (($# < 2)); then printf 'job ran\n'; exit 0; fi
exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s\n' "$2" >&3
EOF
cat >"$T/bin/job.py" <<'EOF'
#!/usr/bin/python3
import socket, sys
if len(sys.argv) < 3:
    print("job ran")
    sys.exit(0)
socket.create_connection(("127.0.0.1", int(sys.argv[1]))).sendall(sys.argv[2].encode() + b"\n")
EOF
# IO::Socket::INET loads two XS modules (IO.so, Socket.so): plugins of perl, opened for
# the job with allow_code, as an attested process maps only pinned code.
PERL_XS=/usr/lib/x86_64-linux-gnu/perl-base/auto
cat >"$T/bin/job.pl" <<'EOF'
#!/usr/bin/perl
use IO::Socket::INET;
if (@ARGV < 2) { print "job ran\n"; exit 0; }
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ARGV[0], Proto => "tcp") or die "connect: $!\n";
print $s "$ARGV[1]\n";
EOF
cat >"$T/bin/job.js" <<'EOF'
#!/usr/bin/node
const net = require("net");
if (process.argv.length < 4) { console.log("job ran"); return; }
const s = net.connect(Number(process.argv[2]), "127.0.0.1", () => s.end(process.argv[3] + "\n"));
s.on("error", (e) => { console.log("connect: " + e.code); process.exitCode = 1; });
EOF
chmod 0755 "$T"/bin/job.*

# The attacker's code: connects to the sink from inside the interpreter, says how it went.
E=$T/evil
mkdir -p "$E/py" "$E/pl"
cat >"$E/x.sh" <<EOF
if exec 3<>/dev/tcp/127.0.0.1/$PORT; then echo "evil-\$EVIL_TAG" >&3; echo "evil: sent"; fi
EOF
cat >"$E/py/sitecustomize.py" <<EOF
import os, socket
try:
    socket.create_connection(("127.0.0.1", $PORT)).sendall(("evil-" + os.environ["EVIL_TAG"] + "\n").encode())
    print("evil: sent")
except OSError as e:
    print("evil: errno", e.errno)
EOF
cat >"$E/pl/kwevil.pm" <<EOF
package kwevil;
use IO::Socket::INET;
my \$s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $PORT, Proto => "tcp");
if (\$s) { print \$s "evil-\$ENV{EVIL_TAG}\n"; close \$s; print "evil: sent\n"; }
else { print "evil: errno ", \$! + 0, "\n"; }
1;
EOF
cat >"$E/x.js" <<EOF
const s = require("net").connect($PORT, "127.0.0.1", () => { s.end("evil-" + process.env.EVIL_TAG + "\n"); console.log("evil: sent"); });
s.on("error", (e) => console.log("evil: error " + e.code));
EOF
chmod -R a+rX "$E"

# One workload per interpreter, selected by its pinned script, uid and cgroup.
write_policy() { # FILE BASH_ALLOW PY_ALLOW PL_ALLOW JS_ALLOW (JSON arrays)
    local node_wl="" node_rule=""
    if ((HAVE_NODE)); then
        node_wl=", { \"id\": \"spiffe://$KW_TD/job-js\", \"allow_env\": $5,
                   \"selectors\": { \"script\": \"$T/bin/job.js\", \"uid\": $KW_UID, \"cgroup\": \"$KW_CG\" } }"
        node_rule=", { \"from\": \"spiffe://$KW_TD/job-js\", \"to\": \"db\" }"
    fi
    cat >"$1" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [
    { "id": "spiffe://$KW_TD/job-sh", "allow_env": $2,
      "selectors": { "script": "$T/bin/job.sh", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "spiffe://$KW_TD/job-py", "allow_env": $3,
      "selectors": { "script": "$T/bin/job.py", "uid": $KW_UID, "cgroup": "$KW_CG" } },
    { "id": "spiffe://$KW_TD/job-pl", "allow_env": $4,
      "selectors": { "script": "$T/bin/job.pl", "uid": $KW_UID, "cgroup": "$KW_CG" },
      "allow_code": ["$PERL_XS/IO", "$PERL_XS/Socket"] } $node_wl ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "spiffe://$KW_TD/job-sh", "to": "db" }, { "from": "spiffe://$KW_TD/job-py", "to": "db" },
             { "from": "spiffe://$KW_TD/job-pl", "to": "db" } $node_rule ] }
JSON
}
write_policy "$T/policy.json" '[]' '[]' '[]' '[]'
start_agent "$T/policy.json"

JOBS=(sh py pl)
((HAVE_NODE)) && JOBS+=(js)
((HAVE_NODE)) || note "no /usr/bin/node in the guest: node is not tried"

# Runs job J with the injection VAR=VALUE (and EXTRA assignments); output in $KW_OUT,
# exit status in $KW_RC, pid in $T/inj.pid.
inject() { # J TAG VAR=VALUE [VAR=VALUE...]
    local j=$1 tag=$2
    shift 2
    KW_RC=0
    KW_OUT=$(as_workload --pidfile "$T/inj.pid" env "EVIL_TAG=$tag" "$@" "$T/bin/job.$j" 2>&1) || KW_RC=$?
    note "job.$j with $*: status $KW_RC: $KW_OUT"
}

# The injection is refused: the attacker's code ran (it says how its connect failed:
# EPERM), the sink got nothing, one connect refusal as unattested and one guard event
# naming the workload and the variable.
refused() { # J NAME-IN-EVENT ERRNO-REGEX VAR=VALUE...
    local j=$1 name=$2 errno_re=$3
    shift 3
    ev_mark
    sink_snapshot db
    inject "$j" "$name-$j-$$" "$@"
    assert_match "the attacker's code in job.$j ran, and its connect got EPERM" "$errno_re" "$KW_OUT"
    assert_match "job.$j itself ran" "job ran" "$KW_OUT"
    assert_sink_unchanged db
    local pid
    pid=$(cat "$T/inj.pid")
    # grep, not jq: under emulation one jq pass over the events can outlast
    # expect_one_event's 10 s; node's connect event once reached the file more than
    # 30 s after node had exited (6.12, busy host; not understood yet).
    wait_until 90 "the refused connect of job.$j (tgid $pid) as unattested" grep -qE \
        "\"decision\":\"deny\".*\"dst_port\":$PORT,.*\"spiffe_id\":\"unattested\",\"tgid\":$pid,.*\"type\":\"connect\"" \
        "$KW_EVENTS"
    local name_re=${name//\*/\\*}
    wait_until 30 "the guard event withholding job-$j from tgid $pid for $name" grep -qE \
        "\"action\":\"exec\".*\"decision\":\"deny\".*\"spiffe_id\":\"unattested\",\"tgid\":$pid,.*\"type\":\"guard\".*\"withheld_because\":\[[^]]*\"$name_re\"[^]]*\],\"workload\":\"spiffe://$KW_TD/job-$j\"" \
        "$KW_EVENTS"
    sleep 0.5 # a duplicate would arrive right behind the first
    assert_eq "guard events for tgid $pid" 1 "$(grep -cE "\"tgid\":$pid,.*\"type\":\"guard\"" "$KW_EVENTS")"
}

EPERM_SH='connect: Operation not permitted'
EPERM_NUM="evil: errno $(errno_number EPERM)"
