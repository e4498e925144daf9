#!/usr/bin/env bash
# kw-timeout: 420
# No identity for code an interpreter is told to load by its environment. Pinned #!
# scripts of bash, python, perl and node are workloads; each is run
# with the variable its interpreter documents for loading code (BASH_ENV, an exported
# bash function, PYTHONPATH with a sitecustomize, PERL5OPT -M, NODE_OPTIONS --require)
# pointing at attacker code that connects to the protected sink from inside the
# interpreter. The attacker code runs, but without the identity: its connect gets EPERM,
# the sink receives nothing, and one guard event names the workload and the variable.
# The positive control (the same injections reaching the sink once allow_env lists the
# variable) and the ordinary environments are t_code_env_allowed.sh.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=code_env.sh
source "$(dirname "$0")/code_env.sh"

refused sh BASH_ENV "$EPERM_SH" "BASH_ENV=$E/x.sh"
refused sh 'BASH_FUNC_*' "$EPERM_SH" \
    "BASH_FUNC_printf%%=() { exec 3<>/dev/tcp/127.0.0.1/$PORT && builtin printf 'evil-func\n' >&3; builtin printf \"\$@\"; }"
refused py 'PYTHON*' "$EPERM_NUM" "PYTHONPATH=$E/py"
refused pl 'PERL*' "$EPERM_NUM" "PERL5OPT=-I$E/pl -Mkwevil"
((HAVE_NODE)) && refused js 'NODE_*' 'evil: error EPERM' "NODE_OPTIONS=--require $E/x.js"

# A code-loading variable among others, and the same injection with an empty value for
# another: still refused, the event names both.
ev_mark
inject py "two-$$" "PYTHONPATH=$E/py" "BASH_ENV=" PYTHONUNBUFFERED=1
assert_match "the sitecustomize ran unattested" "$EPERM_NUM" "$KW_OUT"
wait_until 30 "the guard event of job.py" grep -qE "\"tgid\":$(cat "$T/inj.pid"),.*\"type\":\"guard\"" "$KW_EVENTS"
expect_one_event "the guard naming PYTHON* and BASH_ENV" \
    '.type == "guard" and .action == "exec" and (.tgid | tostring) == $pid' --arg pid "$(cat "$T/inj.pid")"
assert_event "withheld_because@=PYTHON*" "withheld_because@=BASH_ENV"

stop_agent
