#!/usr/bin/env bash
# kw-timeout: 600
# Containers enrolled through the runtime's seccomp-agent socket get their identity from
# what the runtime started. crun runs bundles whose config.json carries the annotations
# containerd's CRI writes (container name, pod namespace and name, image) and a seccomp
# section whose listenerPath is the agent's socket. The policy selects the container
# "cart" of pod shop/cart-0 together with the layer's binary:
#   - cart's binary reaches the sink under the identity; the enroll event names the
#     container and the workload it meets, and so does the connect event;
#   - "vault" (kw_sink, selected as a mutual-TLS server) and cart talk through the
#     agent's mTLS with kTLS: the text arrives, a capture on lo shows TLS records and
#     never the text, while cart's plaintext to the undeclared-TLS sink shows (control);
#   - "sidecar", a second container of the same pod running the same binary, is
#     refused (EPERM) and the sink is unchanged; before the agent ran, it reached the sink;
#   - runc 1.1 cannot set SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: the agent reads from the
#     filter in the kernel that it is missing and refuses the hand-over by name (a signal
#     would end the wait of a call held mid-handshake); the container's trapped connect
#     then fails with ENOSYS (fail closed), where before the agent ran it reached the sink;
#   - the bundles use the profile kwarden ships (deploy/seccomp/kwarden.json): io_uring,
#     which connected to the sink before, fails with ENOSYS;
#   - the same binary as root with CAP_NET_RAW (a runtime's default) in a sidecar sends a
#     UDP datagram through a raw socket: it reaches a sink before the agent runs, and
#     socket() is refused (EPERM, a raw_socket guard event naming the container) once the
#     container is enrolled: the profile traps raw socket() calls, so that one made before
#     the agent knew the container waits for it, like a connect;
#   - a process started in the running cart container later gets the identity when it
#     is the layer's binary, and not when it is a copy made in the writable layer;
#   - a process exec'd into the running container by crun exec (which does not say which
#     process it hands over) is found under the listener's filter: the layer's binary
#     gets the identity, a copy in the writable layer exec'd the same way does not;
#   - the agent restarted while the container runs: the holder gives the listener and
#     the facts back, and an exec after the restart gets the identity;
#   - a library preloaded from the writable layer before late facts: the identity is
#     refused (the mappings are read), the held connect refused;
#   - facts that arrive after the exec (the agent stopped while crun runs the container,
#     whose connect is then trapped and held): the process is attested from /proc once
#     they are known, its held connect goes through, and the event reports the window.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7311
RAWPORT=7312
VPORT=7313
SHOP=spiffe://$KW_TD/shop/cart
VAULT=spiffe://$KW_TD/shop/vault
setup_tools
make_cgroup
start_sink db "$PORT"
start_sink raw --udp "$RAWPORT"

LAYER=$T/layer
make_image_layer "$LAYER" "$KW_TOOLS/kw_client=/app/cart" "$KW_TOOLS/kw_uring_connect=/app/uring" \
    "$KW_TOOLS/kw_sink=/app/sink" /bin/sh /bin/cp /bin/sleep
make_bundle cart "$LAYER"
make_bundle sidecar "$LAYER"
make_bundle late "$LAYER"
make_bundle preload "$LAYER"
make_bundle rootside "$LAYER"
make_bundle runc "$LAYER"
make_bundle vault "$LAYER"
jq '.process.user = {uid: 0, gid: 0}
    | .process.capabilities |= with_entries(.value += ["CAP_NET_RAW"])' "$T/rootside/config.json" \
    >"$T/rootside/config.json.new" && mv "$T/rootside/config.json.new" "$T/rootside/config.json" ||
    fail "cannot make the rootside bundle root with CAP_NET_RAW"
# The preload bundle's writable layer holds a library and names it in the loader's
# /etc/ld.so.preload, as code written into a running container could.
mkdir -p "$T/preload/upper/etc" "$T/preload/upper/tmp"
cp "$KW_TOOLS/kw_preload.so" "$T/preload/upper/tmp/evil.so"
echo /tmp/evil.so >"$T/preload/upper/etc/ld.so.preload"

# The CRI annotations of container NAME of pod shop/cart-0, and the profile kwarden ships
# (deploy/seccomp/kwarden.json: the runtime's default, connect and raw socket() trapped,
# io_uring refused) with its listenerPath set to this agent's socket. The filter waits
# killably for the agent (crun's flag), unless --no-flag (runc 1.1 refuses any flag).
enrol_bundle() { # [--no-flag] BUNDLE NAME
    local flags='["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]'
    if [[ $1 == --no-flag ]]; then
        flags='[]'
        shift
    fi
    jq --arg name "$2" --arg sock "$T/oci.sock" --argjson flags "$flags" \
        --slurpfile profile "$TOP/deploy/seccomp/kwarden.json" '
        .annotations = {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": $name,
            "io.kubernetes.cri.image-name": "example.org/shop/cart:1.4",
            "io.kubernetes.cri.sandbox-id": "aa11",
            "io.kubernetes.cri.sandbox-name": "cart-0",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-uid": "0b8c7e7a-9f0e-4a6e-8b2a-1c2d3e4f5a6b" }
        | .linux.seccomp = ($profile[0] | .listenerPath = $sock | .flags = $flags)' \
        "$T/$1/config.json" >"$T/$1/config.json.new" && mv "$T/$1/config.json.new" "$T/$1/config.json" ||
        fail "cannot enrol bundle $1"
}

# Runs /app/cart --send TAG-$$ in a container of BUNDLE while the agent is stopped: the
# entrypoint execs before anyone knows the facts (unattested) and its connect is trapped
# and waits; the agent runs again once the exec happened (and a second more, for the
# connect to be trapped). The container's exit status is in $KW_LATE_RC, its output in
# $T/BUNDLE.out, its pid in $T/BUNDLE.pid.
run_while_agent_stopped() { # BUNDLE TAG
    local b=$1 bg
    kill -STOP "$KW_AGENT_PID" || fail "cannot stop the agent"
    KW_TIMEOUT=90 run_container --pidfile "$T/$b.pid" "$b" /app/cart --send "$2-$$" 127.0.0.1 "$PORT" \
        >"$T/$b.out" 2>&1 &
    bg=$!
    kw_track pids "$bg"
    cart_execd() { [[ -s $T/$1/pid ]] && [[ $(readlink "/proc/$(cat "$T/$1/pid")/exe" 2>/dev/null) == */app/cart ]]; }
    wait_until 60 "the $b container's entrypoint to exec" cart_execd "$b"
    sleep 1
    kill -CONT "$KW_AGENT_PID"
    KW_LATE_RC=0
    wait "$bg" || KW_LATE_RC=$?
}

# Positive controls, without the agent: the sidecar's binary reaches the sink, and so
# does the layer's binary with the library preloaded.
expect_ok run_container sidecar /app/cart --send "pre-sidecar-$$" 127.0.0.1 "$PORT"
wait_sink_data db "pre-sidecar-$$"
expect_ok run_container preload /app/cart --send "pre-preload-$$" 127.0.0.1 "$PORT"
wait_sink_data db "pre-preload-$$"
expect_ok run_container rootside /app/cart --raw "pre-raw-$$" 127.0.0.1 "$RAWPORT"
wait_sink_data raw "pre-raw-$$"
KW_RUNTIME=runc expect_ok run_container runc /app/cart --send "pre-runc-$$" 127.0.0.1 "$PORT"
wait_sink_data db "pre-runc-$$"
expect_ok run_container sidecar /app/uring 127.0.0.1 "$PORT" "pre-uring-$$"
wait_sink_data db "pre-uring-$$"

enrol_bundle cart cart
enrol_bundle sidecar sidecar
enrol_bundle late cart
enrol_bundle preload cart
enrol_bundle rootside sidecar
enrol_bundle --no-flag runc cart
enrol_bundle vault vault
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [ { "id": "$SHOP",
                   "selectors": { "exe": "$LAYER/app/cart", "uid": $KW_UID,
                                  "container": { "name": "cart", "pod_namespace": "shop", "pod_name": "cart-0" } },
                   "allow_code": ["$LAYER/lib/x86_64-linux-gnu", "$LAYER/lib64"] },
                 { "id": "$VAULT",
                   "selectors": { "exe": "$LAYER/app/sink", "uid": $KW_UID, "container": { "name": "vault" } },
                   "allow_code": ["$LAYER/lib/x86_64-linux-gnu", "$LAYER/lib64"],
                   "listen": [ { "port": $VPORT, "tls": "mutual" } ] } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" },
                    { "name": "vault", "cidrs": ["127.0.0.1/32"], "ports": [$VPORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$VAULT" } ],
  "rules": [ { "from": "$SHOP", "to": "db" }, { "from": "$SHOP", "to": "vault" } ] }
JSON
KW_AGENT_ARGS=(--oci-socket "$T/oci.sock")
start_agent "$T/policy.json"

# cart: enrolled, named by its pod, its binary attested (at exec, or late if the exec
# beat the hand-over: either way the connect is decided with the facts).
ev_mark
expect_ok run_container --pidfile "$T/cart.pid" cart /app/cart --send "cart-$$" 127.0.0.1 "$PORT"
wait_sink_data db "cart-$$"
expect_one_event "cart's enrolment" '.type == "enroll" and .container.name == "cart"'
assert_event "pid=$(cat "$T/cart.pid")"
[[ $(jq -r '.container | "\(.pod_namespace)/\(.pod_name) \(.image) \(.workloads | join(","))"' <<<"$KW_EVENT") == \
    "shop/cart-0 example.org/shop/cart:1.4 $SHOP" ]] || fail "the enroll event names the container wrongly: $KW_EVENT"
expect_one_event "cart's connect" '.type == "connect" and (.tgid | tostring) == $pid' --arg pid "$(cat "$T/cart.pid")"
assert_event decision=allow "spiffe_id=$SHOP"
jq -e '.container.name == "cart" and .container.pod_namespace == "shop" and .container.pod_name == "cart-0"' \
    <<<"$KW_EVENT" >/dev/null || fail "the connect event does not name the container: $KW_EVENT"

# vault serves mutual TLS on its port; cart reaches it through the agent's handshakes,
# kTLS on both containers' sockets. Cart's plaintext to db is the capture's control.
tcpdump -i lo -U -w "$T/lo.pcap" "tcp port $VPORT or tcp port $PORT" >"$T/tcpdump.log" 2>&1 &
dump=$!
kw_track pids "$dump"
wait_until 10 "tcpdump to start" grep -q "listening on" "$T/tcpdump.log"
KW_TIMEOUT=120 run_container vault /app/sink "$VPORT" /tmp/sink >"$T/vault.out" 2>&1 &
kw_track pids "$!"
vault_listens() { [[ -s $T/vault/pid ]] && [[ -e /proc/$(cat "$T/vault/pid")/root/tmp/sink.ready ]]; }
wait_until 60 "the vault container to listen" vault_listens
VAULT_PID=$(cat "$T/vault/pid")
ev_mark
expect_ok run_container cart /app/cart --send "vault-$$" 127.0.0.1 "$VPORT"
wait_until 20 "the vault to receive cart's text" grep -qF "vault-$$" "/proc/$VAULT_PID/root/tmp/sink"
expect_one_event "cart's handshake" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$SHOP" "peer_id=$VAULT"
jq -e '.container.name == "cart"' <<<"$KW_EVENT" >/dev/null || fail "cart's tls event does not name it: $KW_EVENT"
expect_one_event "the vault's handshake" '.type == "tls" and .role == "server" and .result == "ok"'
assert_event "spiffe_id=$VAULT" "peer_id=$SHOP"
expect_ok run_container cart /app/cart --send "clear-$$" 127.0.0.1 "$PORT"
wait_sink_data db "clear-$$"
sleep 1
kill -INT "$dump" 2>/dev/null || true
wait "$dump" 2>/dev/null || true
kill -KILL "$VAULT_PID" 2>/dev/null || true
grep -aqF "clear-$$" "$T/lo.pcap" || fail "control: cart's plaintext to db is not in the capture"
grep -aqF "vault-$$" "$T/lo.pcap" && fail "cart's text to the vault is on the wire in plaintext (capture $T/lo.pcap)"
records=$(tcpdump -r "$T/lo.pcap" -X "tcp port $VPORT" 2>/dev/null | grep -c "1703 03" || true)
((records > 0)) || fail "no TLS application data records on port $VPORT in the capture"

# sidecar: same pod, same binary, another container: no identity.
sink_snapshot db
ev_mark
expect_errno EPERM run_container --pidfile "$T/sidecar.pid" sidecar /app/cart --send "sidecar-$$" 127.0.0.1 "$PORT"
assert_sink_unchanged db
expect_one_event "the sidecar's enrolment" '.type == "enroll" and .container.name == "sidecar"'
[[ $(jq -c '.container.workloads' <<<"$KW_EVENT") == "[]" ]] || fail "the sidecar meets a workload: $KW_EVENT"
expect_one_event "the sidecar's connect" '.type == "connect" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/sidecar.pid")"
assert_event decision=deny spiffe_id=unattested
jq -e '.container.name == "sidecar"' <<<"$KW_EVENT" >/dev/null || fail "the deny event does not name the sidecar: $KW_EVENT"

# io_uring: its connects would never reach the listener; the profile refuses the ring.
sink_snapshot db
expect_errno ENOSYS run_container sidecar /app/uring 127.0.0.1 "$PORT" "uring-$$"
assert_match "the refused call" "^io_uring_queue_init: ENOSYS" "$KW_OUT"
assert_sink_unchanged db

# runc 1.1: the filter waits interruptibly; the hand-over is refused by name and the
# container's trapped connect fails (ENOSYS), nothing reaches the sink.
sink_snapshot db
ev_mark
KW_RUNTIME=runc expect_errno ENOSYS run_container runc /app/cart --send "runc-$$" 127.0.0.1 "$PORT"
assert_sink_unchanged db
expect_one_event "runc's refused hand-over" '.type == "enroll" and (.error // "" | contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"))'

# Root with CAP_NET_RAW in the sidecar: its raw socket is refused at socket(), and its
# datagram does not reach the sink.
sink_snapshot raw
ev_mark
expect_errno EPERM run_container --pidfile "$T/rootside.pid" rootside /app/cart --raw "raw-$$" 127.0.0.1 "$RAWPORT"
assert_match "the refused call" "^socket\(AF_INET, SOCK_RAW, IPPROTO_UDP\): EPERM " "$KW_OUT"
assert_sink_unchanged raw
expect_one_event "the sidecar's raw socket" '.type == "guard" and .action == "raw_socket" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/rootside.pid")"
assert_event decision=deny errno=EPERM family=AF_INET socket_type=SOCK_RAW spiffe_id=unattested uid=0
jq -e '.container.name == "sidecar"' <<<"$KW_EVENT" >/dev/null || fail "the raw_socket event does not name the sidecar: $KW_EVENT"

# Started in the running container later (by its shell, after the hand-over): the
# layer's binary gets the identity at its exec, a copy made in the writable layer does not.
sink_snapshot db
expect_errno EPERM run_container cart /bin/sh -c \
    "sleep 2; /app/cart --send later-$$ 127.0.0.1 $PORT && cp /app/cart /tmp/copy && exec /tmp/copy --send copy-$$ 127.0.0.1 $PORT"
wait_sink_data db "later-$$"
grep -qF "copy-$$" "$T/sink-db" && fail "the copy in the writable layer reached the sink"

# Exec'd into the running container by its runtime (crun exec: kubectl exec's path). crun
# 1.8 hands the new process's listener over without saying which process it serves
# (pid 0): the agent finds it in the kernel, under the listener's filter, and checks it
# runs in the container's cgroup. The layer's binary gets the identity at its exec; a
# copy in the writable layer, exec'd the same way, does not (refused, EPERM). crun exec
# runs as root unless told the user (containerd's exec passes the container's).
KW_TIMEOUT=120 run_container cart /bin/sleep 100 >/dev/null 2>&1 &
kw_track pids "$!"
running_cart() { crun --root "$T/crun" list 2>/dev/null | awk -v p="kw$$-cart-" 'index($1, p) == 1 && $3 == "running" { print $1 }'; }
cart_runs() { [[ -n $(running_cart) ]]; }
wait_until 60 "the cart container to run" cart_runs
CID=$(running_cart)
ev_mark
expect_ok timeout -k 2 60 crun --root "$T/crun" exec --user "$KW_UID:$KW_GID" "$CID" /app/cart --send "exec-$$" 127.0.0.1 "$PORT"
wait_sink_data db "exec-$$"
expect_one_event "the exec's hand-over" '.type == "enroll" and .command == "container cart (exec)"'
EXEC_PID=$(jq -r .pid <<<"$KW_EVENT")
[[ $EXEC_PID =~ ^[0-9]+$ && $EXEC_PID -ne $(cat "$T/cart/pid") ]] ||
    fail "the exec's hand-over names no process of its own: $KW_EVENT"
[[ $(jq -r '.container.workloads | join(",")' <<<"$KW_EVENT") == "$SHOP" ]] ||
    fail "the exec's hand-over does not name the container's workload: $KW_EVENT"
expect_one_event "the exec'd process's connect" '.type == "connect" and (.tgid | tostring) == $pid' --arg pid "$EXEC_PID"
assert_event decision=allow "spiffe_id=$SHOP"
expect_ok timeout -k 2 60 crun --root "$T/crun" exec --user "$KW_UID:$KW_GID" "$CID" /bin/cp /app/cart /tmp/execcopy
sink_snapshot db
expect_errno EPERM timeout -k 2 60 crun --root "$T/crun" exec --user "$KW_UID:$KW_GID" "$CID" /tmp/execcopy --send "execcopy-$$" 127.0.0.1 "$PORT"
assert_sink_unchanged db
crun --root "$T/crun" kill "$CID" KILL 2>/dev/null || true

# The agent restarted while the container runs: the holder keeps its listener and what
# its runtime said of it; the restarted agent finds its cgroup again and writes its
# entries, so that the layer's binary exec'd after the restart gets the identity.
ev_mark
KW_TIMEOUT=120 run_container --pidfile "$T/restart.pid" cart /bin/sh -c \
    "sleep 25; exec /app/cart --send restart-$$ 127.0.0.1 $PORT" >"$T/restart.out" 2>&1 &
RESTART=$!
kw_track pids "$RESTART"
expect_one_event "the running container's enrolment" '.type == "enroll" and .container.name == "cart"'
stop_agent
ev_mark
start_agent "$T/policy.json"
expect_one_event "the container adopted by the restarted agent" '.type == "enroll" and .adopted == true'
[[ $(jq -r '.container | "\(.name) \(.workloads | join(","))"' <<<"$KW_EVENT") == "cart $SHOP" ]] ||
    fail "the restarted agent does not know the container's facts: $KW_EVENT"
wait "$RESTART" || fail "the container's client failed after the agent restart: $(cat "$T/restart.out")"
wait_sink_data db "restart-$$"

# Late facts: the agent stopped while crun starts the container; once it runs again it
# enrols the container, attests the process from /proc, then serves the held connect,
# which the gate now allows.
ev_mark
run_while_agent_stopped late late
[[ $KW_LATE_RC -eq 0 ]] || fail "the late container's client failed: $(cat "$T/late.out")"
wait_sink_data db "late-$$"
expect_one_event "the late container's enrolment" '.type == "enroll" and .container.name == "cart"'
jq -e '.container.attested_late.processes == 1 and .container.attested_late.window_ms >= 1000' <<<"$KW_EVENT" >/dev/null ||
    fail "the late enrolment does not report one process attested late after >= 1 s: $KW_EVENT"
note "late facts: window $(jq -r '.container.attested_late.window_ms' <<<"$KW_EVENT") ms"
expect_one_event "the late container's connect" '.type == "connect" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/late.pid")"
assert_event decision=allow "spiffe_id=$SHOP" attested_from_proc=true

# Late facts again, with the library preloaded: the loader mapped it while nobody knew
# the process, so the kernel could not refuse the mapping. Attesting late, the agent
# reads the process's executable mappings and refuses the identity: the held connect
# is then refused.
sink_snapshot db
run_while_agent_stopped preload preload
rc=$KW_LATE_RC
[[ $rc -eq $(errno_number EPERM) ]] || fail "expected EPERM from the preloading container, got $rc: $(cat "$T/preload.out")"
assert_sink_unchanged db
assert_match "the agent's refusal names the library" "not attested late as workload 0: it maps .*evil.so" \
    "$(cat "$T/agent.log")"

