#!/usr/bin/env bash
# kw-timeout: 420
# A container's code is pinned by its image layer, not by its overlay: a process started
# by crun on an OCI bundle whose root is an overlay (image layer below, writable layer
# above) gets the workload's identity when it runs the layer's binary, which the policy
# names by its host path in the layer directory. The same bytes written into the
# writable layer, by cp or by opening the image's file for writing (a copy-up), are
# code nobody pinned: no identity, connect refused with EPERM, the sink unchanged, one
# deny event. A library written into the container and preloaded through the
# container's own /etc/ld.so.preload is refused its executable mapping under the
# identity (the binary runs without it). Before the agent starts, the layer's binary, a
# copy and the preloaded library all reach the sink, so the refusals are kwarden's.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=7301
setup_tools
make_cgroup
start_sink db "$PORT"

# The image: the client as /app/billing-client, owned by the workload's uid as an
# application's files often are (so the container can open it for writing), and a
# shell and cp to act inside the container with.
LAYER=$T/layer
make_image_layer "$LAYER" "$KW_TOOLS/kw_client=/app/billing-client" /bin/sh /bin/cp \
    "$KW_TOOLS/kw_preload.so=/stage/evil.so"
chown "$KW_UID:$KW_GID" "$LAYER/app/billing-client"
# The image's /etc is the container user's to write, as it is where a container runs
# as root: the loader's /etc/ld.so.preload is then the container's to set.
chown "$KW_UID:$KW_GID" "$LAYER/etc"
make_bundle app "$LAYER"
make_bundle preload-control "$LAYER"
make_bundle preload "$LAYER"
# Inside the container: the library copied into the writable layer and named in the
# container's /etc/ld.so.preload, then the image's binary (TAG names the round).
preload_run() { # TAG
    echo "cp /stage/evil.so /tmp/evil.so && echo /tmp/evil.so >/etc/ld.so.preload &&" \
        "KW_PRELOAD_SEND=$PORT:evil-$1-$$ exec /app/billing-client --send preloaded-$1-$$ 127.0.0.1 $PORT"
}

# Controls without the agent, in one container (each costs seconds under emulation): the
# layer's binary and a copy of it in the writable layer both reach the sink.
expect_ok run_container app /bin/sh -c "/app/billing-client --send pre-layer-$$ 127.0.0.1 $PORT && cp /app/billing-client /tmp/copy && exec /tmp/copy --send pre-copy-$$ 127.0.0.1 $PORT"
wait_sink_data db "pre-layer-$$"
wait_sink_data db "pre-copy-$$"
[[ -f $T/app/upper/tmp/copy ]] || fail "the copy is not in the container's writable layer"
expect_ok run_container preload-control /bin/sh -c "$(preload_run pre)"
wait_sink_data db "evil-pre-$$"
wait_sink_data db "preloaded-pre-$$"

cat >"$T/policy.json" <<JSON
{ "version": 1, "trust_domain": "$KW_TD", "mode": "enforce", "log_allowed": true,
  "workloads": [ { "id": "$KW_BILLING",
                   "selectors": { "exe": "$LAYER/app/billing-client", "uid": $KW_UID, "cgroup": "$KW_CG" },
                   "allow_code": ["$LAYER/lib/x86_64-linux-gnu", "$LAYER/lib64"] } ],
  "destinations": [ { "name": "db", "cidrs": ["127.0.0.1/32"], "ports": [$PORT], "protocol": "tcp" } ],
  "rules": [ { "from": "$KW_BILLING", "to": "db" } ] }
JSON
start_agent "$T/policy.json"
# Not the cgroup's path: crun removes the container's cgroup when it exits, often before
# the agent names it in the event (then null); its id is always there.
CTR=(uid=$KW_UID mode=enforce protocol=tcp path=connect dst_addr=127.0.0.1 destinations@=db has:cgroup_id)

# The image layer's binary, exec'd from the overlay root: the workload's identity.
expect_ok run_container --pidfile "$T/layer.pid" app /app/billing-client --send "layer-$$" 127.0.0.1 "$PORT"
wait_sink_data db "layer-$$"
expect_one_event "the layer binary's connect" '.type == "connect" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/layer.pid")"
assert_event decision=allow "spiffe_id=$KW_BILLING" "${CTR[@]}"

# A copy made in the writable layer under the agent: no identity.
sink_snapshot db
expect_errno EPERM run_container --pidfile "$T/fresh.pid" app /bin/sh -c \
    "cp /app/billing-client /tmp/fresh && exec /tmp/fresh --send fresh-$$ 127.0.0.1 $PORT"
assert_sink_unchanged db
expect_one_event "the fresh copy's connect" '.type == "connect" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/fresh.pid")"
assert_event decision=deny spiffe_id=unattested "${CTR[@]}"

# The image's own file, opened for writing in the container: overlayfs copies it up into
# the writable layer, where the container could change it at will. Same path, same
# bytes, but no longer the layer's file: no identity.
expect_errno EPERM run_container --pidfile "$T/up.pid" app /bin/sh -c \
    ": >>/app/billing-client && exec /app/billing-client --send copied-up-$$ 127.0.0.1 $PORT"
assert_sink_unchanged db
[[ -f $T/app/upper/app/billing-client ]] || fail "the image's file was not copied up"
expect_one_event "the copied-up file's connect" '.type == "connect" and (.tgid | tostring) == $pid' \
    --arg pid "$(cat "$T/up.pid")"
assert_event decision=deny spiffe_id=unattested "${CTR[@]}"

# The preloaded library from the writable layer: the loader cannot map it under the
# identity, says so and goes on; the binary's own send arrives, the library's does not.
ev_mark
expect_ok run_container preload /bin/sh -c "$(preload_run agent)"
assert_match "the loader's refusal" "evil.so.*cannot be preloaded" "$KW_OUT"
wait_sink_data db "preloaded-agent-$$"
grep -qF "evil-agent-$$" "$T/sink-db" && fail "the preloaded library ran under the identity and reached the sink"
expect_one_event "the refused mapping of the preloaded library" \
    '.type == "guard" and .action == "exec_map" and .file == "evil.so" and .decision == "deny"'
