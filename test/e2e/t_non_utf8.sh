#!/usr/bin/env bash
# No byte sequence a client sends may stop the agent. Admin requests carrying invalid
# UTF-8 (inside a JSON string, and as a bare line), a policy whose text uses typographic
# quotes for JSON's, and a policy with "é" and "’" in its string fields: each gets an
# answer (ok or a named error) and the agent keeps serving. Valid UTF-8 comes back
# unchanged; invalid bytes come back replaced (U+FFFD), never as a broken reply line.
# The same for an enrolment hello naming a command in invalid UTF-8, and for an event
# about a process whose executable's name is not UTF-8.
# The typographic quotes below are the test's input:
# shellcheck disable=SC1112
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

setup_tools
make_attested
make_cgroup
write_billing_policy "$T/policy.json" 7181
KW_AGENT_ARGS=(--enroll-socket "$T/enroll.sock")
start_agent "$T/policy.json"

# Sends BYTES as a request to the admin socket (tools/kw_unix_request.py); the agent's
# answer goes to $T/NAME.answer.
raw_request() { # NAME BYTES(printf format)
    # shellcheck disable=SC2059
    printf "$2" | timeout -k 1 15 "$KW_PY" "$KW_E2E_DIR/tools/kw_unix_request.py" "$KW_ADMIN" >"$T/$1.out" 2>"$T/$1.err" ||
        fail "$1: no answer from the agent: $(cat "$T/$1.err"); agent log: $(tail -n 5 "$T/agent.log")"
    cut -d' ' -f2- "$T/$1.out" >"$T/$1.answer"
    jq -e 'has("ok")' "$T/$1.answer" >/dev/null ||
        fail "$1: the answer is not a JSON reply: $(head -c 300 "$T/$1.answer" | od -c | head -n 5)"
    kw_agent_ready || fail "$1: the agent stopped serving; log tail: $(tail -n 5 "$T/agent.log")"
    note "$1: $(head -c 300 "$T/$1.answer")"
}

raw_request bad_string '{"op":"st\xff\xfeatus"}\n'
assert_eq "bad_string answer" false "$(jq -r .ok "$T/bad_string.answer")"
raw_request bad_line '\xc3\x28\xa0\xa1 not json\n'
raw_request bad_op '{"op":"caf\xc3\xa9 \xe2\x80\x99 \xe9"}\n'
raw_request truncated '{"op":"\xe2\x80"}\n'
# Valid UTF-8 comes back as it was sent.
raw_request valid_op '{"op":"caf\xc3\xa9 \xe2\x80\x99"}\n'
assert_match "the unknown op, echoed" "unknown op 'café ’'" "$(jq -r .error "$T/valid_op.answer")"

# A policy written with typographic quotes, or a bare é: refused with a named error
# (the parser quotes the first byte of the character, invalid UTF-8 alone), agent alive.
sed 's/"mode"/“mode”/' "$T/policy.json" >"$T/curly.json"
sed 's/"enforce"/é/' "$T/policy.json" >"$T/bare.json"
for f in curly bare; do
    expect_status 1 kwarden_cli policy apply "$T/$f.json"
    assert_match "the refusal of $f.json" "not valid JSON" "$KW_OUT"
    kw_agent_ready || fail "agent gone after policy $f.json"
done

# é and ’ in string fields: a destination's name (free text) and a path; valid UTF-8.
sed -e 's/"name": "db"/"name": "café’s db"/' -e "s|\"exe\": \"$KW_ATTESTED\"|\"exe\": \"$T/bin/é’\"|" \
    "$T/policy.json" >"$T/accents.json"
grep -q 'café’s db' "$T/accents.json" || fail "test bug: the destination was not renamed"
kwarden_cli policy apply "$T/accents.json" >"$T/accents.out" 2>&1 || true
note "policy with é and ’: $(head -c 400 "$T/accents.out")"
kw_agent_ready || fail "agent gone after a policy with é and ’"
# A field named with é and ’: the error names it, the text intact.
sed -e 's/"protocol": "tcp"/"protocol": "tcp", "café’s": 1/' "$T/policy.json" >"$T/accents_bad.json"
expect_status 1 kwarden_cli policy apply "$T/accents_bad.json"
assert_match "the refusal names the field, é and ’ intact" "unknown field 'café’s'" "$KW_OUT"
kw_agent_ready || fail "agent gone after a refused policy with é and ’"

# An enrolment hello whose command is not UTF-8: the agent answers and keeps serving.
ln -s /bin/true "$T/bin/$(printf 'tru\xe9')"
KW_TIMEOUT=10 as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- "$T/bin/$(printf 'tru\xe9')" \
    >"$T/exec.out" 2>&1 || note "exec of a non-UTF-8 name: $(cat "$T/exec.out")"
kw_agent_ready || fail "agent gone after an enrolment naming a non-UTF-8 command"
KW_TIMEOUT=10 expect_ok as_workload "$KWARDEN" exec --enroll-socket "$T/enroll.sock" -- /bin/true

# A process whose name is not UTF-8 (any user can name a binary so) is denied a declared
# destination: its event names it with U+FFFD, and the agent keeps serving.
odd="$T/bin/$(printf 'cli\xe9\xff')"
install -m 0755 "$T/bin/kw_client" "$odd"
ev_mark
expect_errno EPERM as_workload "$odd" --send "odd-$$" 127.0.0.1 7181
expect_one_event "the non-UTF-8 process's denial" '.type == "connect" and .decision == "deny" and (tostring | contains("/bin/cli"))'
grep -q $'cli\xef\xbf\xbd' <<<"$KW_EVENT" || fail "the event does not name the process with U+FFFD: $KW_EVENT"
kw_agent_ready || fail "agent gone after an event for a process named in invalid UTF-8"

# Every event line written meanwhile is valid UTF-8 JSON.
iconv -f UTF-8 -t UTF-8 "$KW_EVENTS" >/dev/null || fail "the events file holds invalid UTF-8"
kw_agent_ready || fail "agent gone at the end"
