#!/usr/bin/env bash
# Host test of the CA tooling as a user runs it: `kwarden ca init`,
# `ca sign-intermediate`, `svid mint`, `bundle show --ca`, each checked by OpenSSL as an
# independent verifier, plus the refusals an operator can hit: overwrite without
# --force, a bad duration, a bad SPIFFE ID. Unprivileged; registered with ctest.
#   test/cli/identity_cli_test.sh KWARDEN
set -Eeuo pipefail
KWARDEN=$1
T=$(mktemp -d /tmp/kw-identity-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_fail() { # NEEDLE CMD...: CMD exits non-zero and its stderr contains NEEDLE
    local needle=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    ((rc != 0)) || fail "'$*' succeeded; expected a failure mentioning '$needle'"
    [[ $out == *"$needle"* ]] || fail "'$*' failed without mentioning '$needle': $out"
    echo "ok: refused: $*"
}
mode() { stat -c %a "$1"; }

"$KWARDEN" ca init --trust-domain example.org --out "$T/root" --root-ttl 30d --intermediate-ttl 7d
[[ $(mode "$T/root") == 700 ]] || fail "CA directory mode $(mode "$T/root")"
for f in root.pem root.key intermediate.pem intermediate.key; do
    [[ $(mode "$T/root/$f") == 600 ]] || fail "$f mode $(mode "$T/root/$f")"
done
# Validity as asked: root 30 days, intermediate 7 days.
root_days=$(( ($(date -d "$(openssl x509 -in "$T/root/root.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
[[ $root_days == 29 || $root_days == 30 ]] || fail "root valid for $root_days days, asked for 30"
openssl x509 -in "$T/root/root.pem" -noout -ext basicConstraints,keyUsage,subjectAltName >"$T/root.ext"
grep -q "CA:TRUE" "$T/root.ext" || fail "root is not a CA: $(cat "$T/root.ext")"
grep -q "URI:spiffe://example.org$" "$T/root.ext" || fail "root lacks its path-less SPIFFE ID: $(cat "$T/root.ext")"
openssl verify -x509_strict -CAfile "$T/root/root.pem" "$T/root/intermediate.pem" >/dev/null ||
    fail "OpenSSL rejects the intermediate"

expect_fail "refusing to overwrite (use --force)" "$KWARDEN" ca init --trust-domain example.org --out "$T/root"
"$KWARDEN" ca init --trust-domain example.org --out "$T/root" --force >/dev/null

"$KWARDEN" ca sign-intermediate --root "$T/root" --out "$T/node1" --ttl 2d >/dev/null
[[ ! -e $T/node1/root.key ]] || fail "sign-intermediate wrote the root key into the node directory"
"$KWARDEN" svid mint --ca "$T/node1" --id spiffe://example.org/ns/prod/sa/web --out "$T/web" --ttl 15m >/dev/null
[[ $(mode "$T/web/svid_key.pem") == 600 ]] || fail "minted key mode $(mode "$T/web/svid_key.pem")"
for purpose in sslclient sslserver; do
    openssl verify -x509_strict -purpose "$purpose" -CAfile "$T/root/root.pem" -untrusted "$T/web/svid.pem" \
        "$T/web/svid.pem" >/dev/null || fail "OpenSSL rejects the minted SVID for $purpose"
done
openssl x509 -in "$T/web/svid.pem" -noout -ext basicConstraints,keyUsage,extendedKeyUsage,subjectAltName >"$T/leaf.ext"
grep -q "CA:FALSE" "$T/leaf.ext" || fail "leaf is a CA: $(cat "$T/leaf.ext")"
grep -q "Digital Signature" "$T/leaf.ext" || fail "leaf lacks digitalSignature"
grep -q "Certificate Sign" "$T/leaf.ext" && fail "leaf has keyCertSign"
grep -q "TLS Web Server Authentication, TLS Web Client Authentication" "$T/leaf.ext" || fail "leaf EKU: $(cat "$T/leaf.ext")"
grep -q "URI:spiffe://example.org/ns/prod/sa/web$" "$T/leaf.ext" || fail "leaf SAN: $(cat "$T/leaf.ext")"
openssl x509 -in "$T/web/svid.pem" -noout -text | grep -A1 "X509v3 Key Usage" | grep -q critical ||
    fail "leaf keyUsage is not critical"
# The key is the certificate's.
[[ $(openssl pkey -in "$T/web/svid_key.pem" -pubout) == $(openssl x509 -in "$T/web/svid.pem" -noout -pubkey) ]] ||
    fail "minted key does not match the certificate"
# Another trust domain's root does not verify it.
"$KWARDEN" ca init --trust-domain partner.org --out "$T/partner" >/dev/null
openssl verify -CAfile "$T/partner/root.pem" -untrusted "$T/web/svid.pem" "$T/web/svid.pem" >/dev/null 2>&1 &&
    fail "the partner root verifies our SVID"

# bundle show --ca: a SPIFFE bundle of our root.
"$KWARDEN" bundle show --ca "$T/root" >"$T/bundle.json"
python3 - "$T/bundle.json" "$T/root/root.pem" <<'PY' || fail "bundle show --ca is not our root as a SPIFFE bundle"
import base64, json, ssl, sys
doc = json.load(open(sys.argv[1]))
keys = [k for k in doc["keys"] if k["use"] == "x509-svid"]
assert len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["crv"] == "P-256", doc
assert len(keys[0]["x5c"]) == 1
assert isinstance(doc["spiffe_sequence"], int) and isinstance(doc["spiffe_refresh_hint"], int)
der = ssl.PEM_cert_to_DER_cert(open(sys.argv[2]).read())
assert base64.b64decode(keys[0]["x5c"][0]) == der, "x5c is not root.pem"
PY

expect_fail "unknown unit 'w'" "$KWARDEN" svid mint --ca "$T/node1" --id spiffe://example.org/a --out "$T/x" --ttl 1w
expect_fail "'.' or '..' segment" "$KWARDEN" svid mint --ca "$T/node1" --id spiffe://example.org/a/.. --out "$T/x"
expect_fail "trust domain contains a port" "$KWARDEN" svid mint --ca "$T/node1" --id spiffe://example.org:8443/a --out "$T/x"
expect_fail "signs for trust domain 'example.org'" "$KWARDEN" svid mint --ca "$T/node1" --id spiffe://partner.org/a --out "$T/x"
expect_fail "missing --trust-domain" "$KWARDEN" ca init --out "$T/y"
expect_fail "trust domain contains a character outside" "$KWARDEN" ca init --trust-domain Example.org --out "$T/y"
expect_fail "cannot read $T/nothing/intermediate.pem" "$KWARDEN" svid mint --ca "$T/nothing" --id spiffe://example.org/a --out "$T/x"
[[ ! -e $T/x ]] || fail "a refused mint left $T/x behind"
echo "PASS identity CLI"
