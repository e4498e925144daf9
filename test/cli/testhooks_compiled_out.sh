#!/usr/bin/env bash
# Host test: the key dump of the test build exists only there.
# The release binary holds no trace of it (the option, the functions, the record
# labels), the kwarden-testhooks binary holds every one, so this test fails if the
# markers go stale; the release binary refuses the option and the test build accepts it
# and opens the file 0600 (the agent then stops at its first check, the kernel probe or
# the missing policy file, before it touches the kernel). Unprivileged; registered with
# ctest.
#   test/cli/testhooks_compiled_out.sh KWARDEN KWARDEN_TESTHOOKS
set -Eeuo pipefail
RELEASE=$1
HOOKED=$2
T=$(mktemp -d /tmp/kw-testhooks.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
count() { strings -a "$1" | grep -c -- "$2" || true; }

for marker in test-key-dump dump_traffic_keys dump_svid_keys open_key_dump "TEST BUILD: private keys"; do
    n=$(count "$RELEASE" "$marker")
    [[ $n == 0 ]] || fail "the release binary $RELEASE contains '$marker' ($n strings)"
    n=$(count "$HOOKED" "$marker")
    ((n > 0)) || fail "the test build $HOOKED lacks '$marker': the markers of this test are stale"
    echo "ok: '$marker': 0 in kwarden, $n in kwarden-testhooks"
done

out=$("$RELEASE" agent --test-key-dump "$T/keys" 2>&1) && fail "kwarden accepted --test-key-dump: $out"
[[ $out == *"unknown option"* ]] || fail "kwarden agent --test-key-dump: expected 'unknown option', got: $out"
[[ ! -e $T/keys ]] || fail "kwarden created the key dump file"
echo "ok: kwarden agent refuses --test-key-dump"

out=$("$HOOKED" agent --test-key-dump "$T/keys" --policy "$T/missing.json" --state-dir "$T/state" 2>&1) &&
    fail "kwarden-testhooks ran an agent without a policy file: $out"
[[ $out != *"unknown option"* ]] || fail "kwarden-testhooks does not know --test-key-dump: $out"
[[ -f $T/keys && $(stat -c %a "$T/keys") == 600 ]] || fail "the key dump file is not there with mode 0600: $(ls -l "$T")"
echo "ok: kwarden-testhooks agent takes --test-key-dump and opens the file 0600"
