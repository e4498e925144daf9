#!/usr/bin/python3
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
"""kw_oci_image: an OCI image archive of one layer, for `ctr images import`, without a registry.

  kw_oci_image.py NAME LAYER_DIR OUT.tar [--entrypoint ARG]... [--env K=V]... [--by-digest]

Writes OUT.tar, an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding
one uncompressed layer with LAYER_DIR's files (owned by root, modes kept), an image
config for linux/amd64 with the entrypoint and environment given, and a manifest the
index names NAME (annotation io.containerd.image.name, which `ctr images import` uses).
Everything is written in a fixed order with fixed times, so the same input gives the
same digests. With --by-digest, NAME is a repository and the image is named by it and
its manifest's digest alone (REPO@sha256:HEX, no tag), as an image pulled by digest is.
"""
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_tar(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def blob(blobs, media_type, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    name, root, out = argv[1], argv[2], argv[3]
    entrypoint, env, rest = [], [], argv[4:]
    by_digest = "--by-digest" in rest
    rest = [arg for arg in rest if arg != "--by-digest"]
    while rest:
        if len(rest) < 2 or rest[0] not in ("--entrypoint", "--env"):
            sys.exit(__doc__)
        (entrypoint if rest[0] == "--entrypoint" else env).append(rest[1])
        rest = rest[2:]
    blobs = {}
    layer = layer_tar(root)
    layer_desc = blob(blobs, "application/vnd.oci.image.layer.v1.tar", layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = blob(blobs, "application/vnd.oci.image.config.v1+json", json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(blobs, "application/vnd.oci.image.manifest.v1+json", json.dumps(manifest, sort_keys=True).encode())
    if by_digest:
        name = name + "@" + manifest_desc["digest"]
        manifest_desc["annotations"] = {"io.containerd.image.name": name}
    else:
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        manifest_desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", json.dumps(index, sort_keys=True).encode())]
    files += [("blobs/sha256/" + d.split(":", 1)[1], data) for d, data in sorted(blobs.items())]
    with tarfile.open(out, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    print(json.dumps({"name": name, "manifest": manifest_desc["digest"], "layer": layer_desc["digest"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
