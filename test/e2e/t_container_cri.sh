#!/usr/bin/env bash
# kw-timeout: 480
# Containers created through containerd's CRI, as the kubelet creates them: Debian's
# containerd 1.6 with its CRI plugin and crun as the runtime (cgroupfs driver, the pods'
# cgroups below a kubelet-style parent with the pod UID, host network), driven over its
# gRPC socket by kw_cri.py, a small CRI client (no kubelet installs here; kw_cri.py sends
# the RunPodSandbox/CreateContainer/StartContainer requests a kubelet would, with the
# pod's metadata, labels and annotations). The images are OCI archives written by
# kw_oci_image.py and imported with ctr; the pause image runs busybox. Enrolled pods run
# under the shipped profile (deploy/seccomp/kwarden.json) as a Localhost seccomp
# profile, its listenerPath this agent's socket.
#   - server "db" (pod shop/db-0, its image pinned by digest in the policy) listens; client "cart" (pod shop/cart-0) connects:
#     both get their container-derived SPIFFE IDs, the agent handshakes mTLS on both
#     sockets and installs kTLS, the server receives the text, and a capture on lo shows
#     TLS application records and never the text; events name the containers and pods;
#   - "sidecar", a second container of pod cart-0 running the same image, is refused
#     (EPERM) and the server receives nothing from it;
#   - kubectl exec's path: ExecSync runs the layer's client in a running cart container
#     (crun exec, which does not name the process it hands over): it gets cart's identity
#     and talks mTLS to db; a copy in the writable layer exec'd the same way is refused;
#   - control: a pod that is not enrolled (the runtime's default profile) sends a marker
#     in plaintext to a port the policy does not declare, and the capture shows it (the
#     capture check can fail); its connect to the server's port is refused (EPERM).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7321
PLAIN=7322
DB=spiffe://$KW_TD/shop/db
CART=spiffe://$KW_TD/shop/cart
CRI=("$KW_PY" "$KW_E2E_DIR/tools/kw_cri.py" --address "unix://$T/ctd/containerd.sock" --timeout 120)
setup_tools
make_cgroup
make_node_ca
start_sink plain "$PLAIN"

# ---- images, containerd ---------------------------------------------------------------------
mkdir -p "$T/images/pause/bin"
cp /bin/busybox "$T/images/pause/bin/busybox"
make_image_layer "$T/images/shop" "$KW_TOOLS/kw_client=/app/cart" "$KW_TOOLS/kw_sink=/app/sink" /bin/cp
expect_ok "$KW_PY" "$KW_E2E_DIR/tools/kw_oci_image.py" kwarden.local/pause:1 "$T/images/pause" "$T/pause.tar" \
    --entrypoint /bin/busybox --entrypoint sleep --entrypoint 2147483647
expect_ok "$KW_PY" "$KW_E2E_DIR/tools/kw_oci_image.py" kwarden.local/shop:1 "$T/images/shop" "$T/shop.tar"
# The server's image: the same files, its own config, named by its manifest digest alone
# (as an image pulled by digest is): the policy pins it by that digest.
expect_ok "$KW_PY" "$KW_E2E_DIR/tools/kw_oci_image.py" kwarden.local/db "$T/images/shop" "$T/db.tar" \
    --env ROLE=db --by-digest
DB_IMAGE=$(jq -r .name <<<"$KW_OUT")

mkdir -p "$T/ctd/cni/net.d" "$T/ctd/cni/bin" "$KW_CG_DIR/containerd"
kw_track container_cgroups "$KW_CG_DIR/containerd"
cat >"$T/ctd/config.toml" <<TOML
version = 2
root = "$T/ctd/root"
state = "$T/ctd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$T/ctd/containerd.sock"
[ttrpc]
  address = "$T/ctd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kwarden.local/pause:1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "crun"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
        BinaryName = "/usr/bin/crun"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$T/ctd/cni/bin"
    conf_dir = "$T/ctd/cni/net.d"
TOML
# containerd and its shims in a leaf cgroup of their own: the pods' cgroups are its
# siblings, and the test cgroup's cgroup.kill at cleanup takes all of them.
kw_bg bash -c 'echo $$ >"$1/cgroup.procs" && exec containerd --config "$2"' containerd "$KW_CG_DIR/containerd" \
    "$T/ctd/config.toml" >"$T/containerd.log" 2>&1
wait_until 60 "containerd's CRI to answer ($(tail -n 2 "$T/containerd.log" 2>/dev/null))" "${CRI[@]}" version
for image in pause shop db; do
    expect_ok ctr -a "$T/ctd/containerd.sock" -n k8s.io images import "$T/$image.tar"
done
# The image's files as the snapshotter unpacked them: what the policy pins.
SNAP=$(dirname "$(dirname "$(find "$T/ctd/root" -path '*/fs/app/cart' -print -quit)")")
[[ -x $SNAP/app/cart && -x $SNAP/app/sink ]] || fail "the unpacked image has no /app/cart and /app/sink under $T/ctd/root"
note "shop image unpacked at $SNAP"

# ---- policy, agent ----------------------------------------------------------------------------
jq --arg sock "$T/oci.sock" '.listenerPath = $sock' "$TOP/deploy/seccomp/kwarden.json" >"$T/profile.json"
cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [
    { "id": "$DB", "selectors": { "exe": "$SNAP/app/sink", "uid": $KW_UID,
                                  "container": { "image": "$DB_IMAGE", "name": "db",
                                                 "pod_namespace": "shop", "pod_name": "db-0" } },
      "allow_code": ["$SNAP/lib/x86_64-linux-gnu", "$SNAP/lib64"],
      "listen": [ { "port": $PORT, "tls": "mutual" } ] },
    { "id": "$CART", "selectors": { "exe": "$SNAP/app/cart", "uid": $KW_UID,
                                    "container": { "name": "cart", "pod_namespace": "shop", "pod_name": "cart-0" } },
      "allow_code": ["$SNAP/lib/x86_64-linux-gnu", "$SNAP/lib64"] } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp",
                      "tls": "mutual", "identity": "$DB" } ],
  "rules": [ { "from": "$CART", "to": "db" } ] }
JSON
KW_AGENT_ARGS=(--oci-socket "$T/oci.sock")
start_agent "$T/policy.json"

# ---- pods and containers, as the kubelet asks for them ----------------------------------------
# The pod's sandbox config: kubelet's cgroup parent for a burstable pod, host network
# (no hostname: a host-network pod has no UTS namespace of its own, and crun refuses one).
pod_json() { # NAME UID
    local parent=$KW_CG/kubepods/burstable/pod$2
    # Removed children first: each pod's, then what its parents hold by then.
    kw_track container_cgroups "/sys/fs/cgroup$parent"
    kw_track container_cgroups "$KW_CG_DIR/kubepods/burstable"
    kw_track container_cgroups "$KW_CG_DIR/kubepods"
    jq -n --arg name "$1" --arg uid "$2" --arg parent "$parent" --arg logs "$T/logs/$1" '
        { metadata: { name: $name, namespace: "shop", uid: $uid, attempt: 0 },
          log_directory: $logs, labels: { app: $name }, annotations: {},
          linux: { cgroup_parent: $parent,
                   security_context: { namespace_options: { network: 2, pid: 1, ipc: 0 } } } }' >"$T/pod-$1.json"
}
# A container of image $CTR_IMAGE (the shop image by default) running ARGS as $KW_UID,
# enrolled (the shipped profile) or not.
container_json() { # FILE NAME enrolled|default ARGS...
    local file=$1 name=$2 profile=$3
    shift 3
    printf '%s\n' "$@" | jq -R -s --arg name "$name" --arg profile "$T/profile.json" --arg how "$profile" \
        --argjson uid "$KW_UID" --arg image "${CTR_IMAGE:-kwarden.local/shop:1}" '
        { metadata: { name: $name, attempt: 0 }, image: { image: $image },
          command: (rtrimstr("\n") | split("\n")), log_path: ($name + ".log"), labels: {}, annotations: {},
          linux: { security_context: {
              run_as_user: { value: $uid }, run_as_group: { value: $uid },
              namespace_options: { network: 2, pid: 1, ipc: 0 },
              seccomp: (if $how == "enrolled" then { profile_type: 2, localhost_ref: $profile }
                        else { profile_type: 0 } end) } } }' >"$file"
}
# Starts pod NAME (UID) and prints its sandbox id.
run_pod() { # NAME UID
    mkdir -p "$T/logs/$1"
    pod_json "$1" "$2"
    "${CRI[@]}" runp "$T/pod-$1.json" | jq -r .pod_sandbox_id
}
# Creates and starts container NAME in POD; prints its id.
run_in_pod() { # POD_NAME POD_ID NAME enrolled|default ARGS...
    local pod=$1 id=$2 name=$3 cid
    shift 3
    container_json "$T/ctr-$name.json" "$name" "$@"
    cid=$("${CRI[@]}" create "$id" "$T/ctr-$name.json" "$T/pod-$pod.json" | jq -r .container_id) ||
        fail "CreateContainer $name failed"
    "${CRI[@]}" start "$cid" >/dev/null || fail "StartContainer $name failed"
    echo "$cid"
}
# The exit code of container CID once it exited (bounded).
exit_code() { # CID
    "${CRI[@]}" wait "$1" 60 | jq -r .exit_code
}

tcpdump -i lo -U -w "$T/lo.pcap" "tcp port $PORT or tcp port $PLAIN" >"$T/tcpdump.log" 2>&1 &
dump=$!
kw_track pids "$dump"
wait_until 10 "tcpdump to start" grep -q "listening on" "$T/tcpdump.log"

# Control: not enrolled, plaintext on the wire to an undeclared port; the server's port
# is a mutual-TLS destination only the agent may connect to.
ev_mark
PLAIN_POD=$(run_pod plain 5d1e0000-0000-4000-8000-000000000003) || fail "RunPodSandbox plain failed"
cid=$(run_in_pod plain "$PLAIN_POD" plain default /app/cart --send "plain-$$" 127.0.0.1 "$PLAIN")
assert_eq "the unenrolled container's exit code (plaintext)" 0 "$(exit_code "$cid")"
wait_sink_data plain "plain-$$"

# The server, then the client in a pod of its own.
ev_mark
DB_POD=$(run_pod db-0 5d1e0000-0000-4000-8000-000000000001) || fail "RunPodSandbox db-0 failed"
CTR_IMAGE=$DB_IMAGE run_in_pod db-0 "$DB_POD" db enrolled /app/sink "$PORT" /tmp/sink >/dev/null
expect_one_event "the server container's enrolment" '.type == "enroll" and .container.name == "db"'
DB_PID=$(jq -r .pid <<<"$KW_EVENT")
[[ $(jq -r '.container | "\(.pod_namespace)/\(.pod_name) \(.image) \(.workloads | join(","))"' <<<"$KW_EVENT") == \
    "shop/db-0 $DB_IMAGE $DB" ]] || fail "the enroll event names the server container wrongly: $KW_EVENT"
wait_until 30 "the server to listen (its log: $(cat "$T/logs/db-0/db.log" 2>/dev/null))" \
    test -e "/proc/$DB_PID/root/tmp/sink.ready"

CART_POD=$(run_pod cart-0 5d1e0000-0000-4000-8000-000000000002) || fail "RunPodSandbox cart-0 failed"
cid=$(run_in_pod cart-0 "$CART_POD" cart enrolled /app/cart --send "hello-$$" 127.0.0.1 "$PORT")
assert_eq "the client container's exit code" 0 "$(exit_code "$cid")"
wait_until 20 "the server to receive the client's text" grep -qF "hello-$$" "/proc/$DB_PID/root/tmp/sink"
expect_one_event "the client handshake" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$CART" "peer_id=$DB"
jq -e '.container.name == "cart" and .container.pod_name == "cart-0"' <<<"$KW_EVENT" >/dev/null ||
    fail "the client's tls event does not name its container: $KW_EVENT"
expect_one_event "the server handshake" '.type == "tls" and .role == "server" and .result == "ok"'
assert_event "spiffe_id=$DB" "peer_id=$CART"

# The sidecar of pod cart-0: same image, another container: no identity.
ev_mark
cid=$(run_in_pod cart-0 "$CART_POD" sidecar enrolled /app/cart --send "sidecar-$$" 127.0.0.1 "$PORT")
assert_eq "the sidecar's exit code (EPERM)" "$(errno_number EPERM)" "$(exit_code "$cid")"
expect_one_event "the sidecar's refused handshake" '.type == "tls" and .container.name == "sidecar"'
assert_event result=failed errno=1 spiffe_id=unattested "error~=is unattested"
# kubectl exec's path: ExecSync into container cart of pod cart-0 (its attempt 1, a
# restart, idling as a sink on a port no one declares). The shim runs crun exec, which
# hands the new process's listener over without naming the process; the agent finds it
# under the filter. The layer's binary gets cart's identity and talks mTLS to db; a copy
# in the writable layer, exec'd the same way, is refused (EPERM).
ev_mark
container_json "$T/ctr-cart1.json" cart enrolled /app/sink 7324 /tmp/idle
jq '.metadata.attempt = 1' "$T/ctr-cart1.json" >"$T/ctr-cart1.json.new" && mv "$T/ctr-cart1.json.new" "$T/ctr-cart1.json"
cid=$("${CRI[@]}" create "$CART_POD" "$T/ctr-cart1.json" "$T/pod-cart-0.json" | jq -r .container_id) ||
    fail "CreateContainer cart (attempt 1) failed"
"${CRI[@]}" start "$cid" >/dev/null || fail "StartContainer cart (attempt 1) failed"
expect_one_event "cart's restarted container" '.type == "enroll" and .container.name == "cart"'
IDLE_PID=$(jq -r .pid <<<"$KW_EVENT")
wait_until 30 "cart's restarted container to idle" test -e "/proc/$IDLE_PID/root/tmp/idle.ready"
ev_mark
expect_ok "${CRI[@]}" exec --seconds 90 "$cid" /app/cart --send "exec-$$" 127.0.0.1 "$PORT"
assert_eq "the exec'd client's exit code" 0 "$(jq -r .exit_code <<<"$KW_OUT")"
wait_until 20 "the server to receive the exec'd client's text" grep -qF "exec-$$" "/proc/$DB_PID/root/tmp/sink"
expect_one_event "the exec's hand-over" '.type == "enroll" and .command == "container cart (exec)"'
[[ $(jq -r .pid <<<"$KW_EVENT") != "$IDLE_PID" ]] || fail "the exec's hand-over names the container's init: $KW_EVENT"
expect_one_event "the exec'd client's handshake" '.type == "tls" and .role == "client" and .result == "ok"'
assert_event "spiffe_id=$CART" "peer_id=$DB"
expect_ok "${CRI[@]}" exec "$cid" /bin/cp /app/cart /tmp/copy
assert_eq "cp's exit code" 0 "$(jq -r .exit_code <<<"$KW_OUT")"
expect_ok "${CRI[@]}" exec --seconds 90 "$cid" /tmp/copy --send "execcopy-$$" 127.0.0.1 "$PORT"
assert_eq "the exec'd copy's exit code (EPERM)" "$(errno_number EPERM)" "$(jq -r .exit_code <<<"$KW_OUT")"

# The unenrolled pod cannot reach the server's port either.
cid=$(run_in_pod plain "$PLAIN_POD" plain2 default /app/cart --send "plain2-$$" 127.0.0.1 "$PORT")
assert_eq "the unenrolled container's exit code to the server (EPERM)" "$(errno_number EPERM)" "$(exit_code "$cid")"

sleep 1
kill -INT "$dump" 2>/dev/null || true
wait "$dump" 2>/dev/null || true
grep -aqF "plain-$$" "$T/lo.pcap" || fail "control: the plaintext marker is not in the capture"
grep -aqF "hello-$$" "$T/lo.pcap" && fail "the client's text is on the wire in plaintext (capture $T/lo.pcap)"
grep -qF "sidecar-$$" "/proc/$DB_PID/root/tmp/sink" && fail "the server received the sidecar's text"
grep -qF "plain2-$$" "/proc/$DB_PID/root/tmp/sink" && fail "the server received the unenrolled pod's text"
grep -qF "execcopy-$$" "/proc/$DB_PID/root/tmp/sink" && fail "the server received the exec'd copy's text"
records=$(tcpdump -r "$T/lo.pcap" -X "tcp port $PORT" 2>/dev/null | grep -c "1703 03" || true)
((records > 0)) || fail "no TLS application data records on port $PORT in the capture"
note "capture: $records lines with TLS application records on port $PORT, plaintext only on the control's port"

for pod in "$CART_POD" "$DB_POD" "$PLAIN_POD"; do
    "${CRI[@]}" stopp "$pod" >/dev/null || fail "StopPodSandbox $pod failed"
    "${CRI[@]}" rmp "$pod" >/dev/null || fail "RemovePodSandbox $pod failed"
done
stop_agent
