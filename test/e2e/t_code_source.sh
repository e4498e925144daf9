#!/usr/bin/env bash
# The files an argv selector names are pinned by content: a python
# job selected by ["python3", "/…/src/job.py"] runs under its identity, and reaches its
# destination, only while the kernel sees the pinned job.py at that path.
#   - a private mount namespace (unshare -rm, as the workload's own uid) binding another
#     script over the path: no identity at exec ("mount namespace or root"), connect EPERM.
#     Positive control: the same attack before the agent starts delivers the other
#     script's bytes to the sink, so the substitution itself works;
#   - the file rewritten in place, then replaced by rename (root, in the host namespace):
#     the interpreter's open is refused (EPERM, a "source" event) before a byte is read;
#   - after `policy apply` re-pins it, the job runs again;
#   - a path the workload's uid could change (it owns the directory) cannot be pinned:
#     `policy apply` says so, and the entry matches nothing until that is fixed.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7163
setup_tools
make_cgroup
start_sink db "$PORT"
mkdir -m 0755 "$T/src"
job_script() { # PREFIX
    cat <<PY
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(("$1-" + sys.argv[2]).encode())
    s.close()
except OSError as e:
    print("connect:", e)
    sys.exit(e.errno or 99)
PY
}
job_script job >"$T/src/job.py"
job_script evil >"$T/evil.py"
chmod 0644 "$T/src/job.py" "$T/evil.py"
cp "$T/src/job.py" "$T/job.orig"

KW_JOB=spiffe://$KW_TD/job
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce",
  "workloads": [ { "id": "$KW_JOB", "selectors": { "exe": "$KW_PY", "argv_prefix": ["$KW_PY", "$T/src/job.py"],
                                                   "uid": $KW_UID, "cgroup": "$KW_CG" } } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_JOB", "to": "db" } ] }
JSON

# The workload's uid makes a mount namespace of its own, binds the other script over the
# pinned path, and runs the selected command line there.
ns_attack() { # TAG
    as_workload --pidfile "$T/ns.pid" unshare -rm sh -c '
        mount --bind "$1" "$2" || exit 90
        exec "$3" "$2" "$4" "$5"
    ' sh "$T/evil.py" "$T/src/job.py" "$KW_PY" "$PORT" "$1"
}

# Positive control, before the agent: the bound script is what runs.
expect_ok ns_attack "ctl-$$"
wait_sink_data db "evil-ctl-$$"

start_agent "$T/policy.json"
expect_ok as_workload "$KW_PY" "$T/src/job.py" "$PORT" "legit-$$"
wait_sink_data db "job-legit-$$"

ev_mark
sink_snapshot db
expect_errno EPERM ns_attack "ns-$$"
assert_sink_unchanged db
expect_one_event "the exec in a private mount namespace, kept from its identity" \
    '.type == "guard" and .action == "exec" and (.withheld_because | index("mount namespace or root")) != null'
assert_event decision=deny "workload=$KW_JOB" "tgid=$(cat "$T/ns.pid")"

# Root changes the file after it was pinned: in place (another ctime), then by rename
# (another inode). The interpreter cannot open it.
SOURCE_EVENT='.type == "guard" and .action == "source" and .file == "job.py"'
source_refused() { (($(ev_count "$SOURCE_EVENT") >= 1)); }
refused_open() { # WHAT TAG
    ev_mark
    sink_snapshot db
    expect_status 2 as_workload --pidfile "$T/job.pid" "$KW_PY" "$T/src/job.py" "$PORT" "$2"
    assert_match "$1: python's error" "job.py.*Operation not permitted" "$KW_OUT"
    assert_sink_unchanged db
    # python opens the script twice (its zip-importer probe, then the run): each is refused.
    wait_until 10 "$1: a refused open of job.py" source_refused
    KW_EVENT=$(ev_select "$SOURCE_EVENT" | head -n 1)
    assert_event decision=deny errno=EPERM "spiffe_id=$KW_JOB" "tgid=$(cat "$T/job.pid")" audit=false
}
echo "# edited" >>"$T/src/job.py"
refused_open "rewritten in place" "edit-$$"
cp "$T/evil.py" "$T/src/new.py"
mv -f "$T/src/new.py" "$T/src/job.py"
refused_open "replaced by rename" "swap-$$"

# The operator's apply re-pins what is there now.
cp "$T/job.orig" "$T/src/new.py"
mv -f "$T/src/new.py" "$T/src/job.py"
expect_ok kwarden_cli policy apply "$T/policy.json"
expect_ok as_workload "$KW_PY" "$T/src/job.py" "$PORT" "again-$$"
wait_sink_data db "job-again-$$"

# The workload's uid owns the directory: it could swap the file, so nothing is pinned.
chown "$KW_UID" "$T/src"
expect_ok kwarden_cli policy apply "$T/policy.json"
assert_match "the apply's warning" "cannot be pinned: uid $KW_UID owns the directory '$T/src'" "$KW_OUT"
sink_snapshot db
expect_errno EPERM as_workload "$KW_PY" "$T/src/job.py" "$PORT" "owned-$$"
assert_sink_unchanged db
chown 0 "$T/src"

stop_agent
