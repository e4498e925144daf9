#!/usr/bin/env bash
# kTLS key installation on this kernel: for each TLS 1.3 suite, records the
# kernel encrypts open with BoringSSL's AEAD under the expected key and iv (RFC 8448's
# for AES-128-GCM), kTLS talks to kTLS and to plain BoringSSL in both roles, 8 MiB each
# way, getsockopt(SOL_TLS) reports the cipher and /proc/net/tls_stat counts the sockets.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

modprobe tls || fail "cannot load the tls module"
[[ -x $KW_TOOLS/kw_ktls_selftest ]] || fail "tool $KW_TOOLS/kw_ktls_selftest is missing: build it first"
expect_ok "$KW_TOOLS/kw_ktls_selftest"
n=$(grep -c ': ok: ' <<<"$KW_OUT")
assert_eq "suites that passed" 3 "$n"
grep -q 'handshakes skipped' <<<"$KW_OUT" && fail "some handshakes were skipped (no AES in the guest CPU?): $KW_OUT"
exit 0
