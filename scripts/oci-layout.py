#!/usr/bin/env python3
"""Writes a small OCI image layout (one image with one gzipped tar layer, tagged `latest`)
into DIR, for trying a registry with skopeo without pulling anything from the network.

    python3 scripts/oci-layout.py ./my-image-layout
    skopeo copy --dest-tls-verify=false oci:./my-image-layout:latest \
        docker://127.0.0.1:5000/demo/app:latest

Standard library only. The image is deterministic: the same DIR content on every run.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def write_blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def layer_tar():
    content = b"hello from marina-distribution\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mtime = 1577836800  # 2020-01-01, for a reproducible layer
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: oci-layout.py DIR")
    root = sys.argv[1]
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    tar = layer_tar()
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(blobs, config),
            "size": len(config),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": write_blob(blobs, layer),
            "size": len(layer),
        }],
    }).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(blobs, manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(index["manifests"][0]["digest"])


if __name__ == "__main__":
    main()
