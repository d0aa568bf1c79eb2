"""Container images made offline from Debian's busybox-static (no registry is reachable).

``rootfs_tar`` writes a root filesystem tarball (busybox and its applets as symlinks), which
podman imports; ``oci_archive`` wraps it into an OCI image archive with a config (entrypoint,
environment), which ``ctr images import`` takes: the CRI lane's sandbox ("pause") image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shlex
import tarfile

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
APPLETS = ("sh", "httpd", "nc", "ip", "ping", "sleep", "cat", "ls", "mkdir", "echo", "printf",
           "wget", "hostname", "true", "env", "ps", "kill")
# busybox httpd runs /www/cgi-bin/index.cgi for "/" when /www has no index.html: a page that
# names the container's host name, on a read-only root filesystem (as CRI's sandboxes have).
HOSTNAME_CGI = b'#!/bin/sh\necho "Content-Type: text/plain"\necho\nhostname\n'
IMAGE_PATH_ENV = "PATH=/bin"


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def rootfs_tar(path: str) -> None:
    """A root filesystem tarball: Debian's static busybox and its applets as symlinks, an
    ``/etc`` with the files runtimes bind-mount over, and the host-name page in ``/www``."""
    if not os.path.isfile(BUSYBOX):
        raise AssertionError(f"{BUSYBOX} missing: install busybox-static (build/setup.sh)")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp", "www", "www/cgi-bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for a in APPLETS:
            info = tarfile.TarInfo(f"bin/{a}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        for f in ("etc/resolv.conf", "etc/hosts", "etc/hostname"):
            _add_file(tar, f, b"")
        _add_file(tar, "www/cgi-bin/index.cgi", HOSTNAME_CGI, 0o755)


def httpd_command(text: str) -> list[str]:
    """A web server on port 80 answering with ``text`` (needs a writable root filesystem)."""
    return ["sh", "-c", f"echo {shlex.quote(text)} > /www/index.html && exec httpd -f -p 80 -h /www"]


def hostname_server(port: int) -> list[str]:
    """A web server on ``port`` answering with the container's host name (``HOSTNAME_CGI``)."""
    return ["/bin/httpd", "-f", "-p", str(port), "-h", "/www"]


def nc_get(ip: str, port: int = 80) -> list[str]:
    """An HTTP GET with busybox nc (busybox-static 1.35's wget dies of SIGSEGV in ctr's
    containers here; nc works under both runtimes)."""
    return ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"]


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def oci_archive(path: str, name: str, entrypoint: list[str], workdir: str) -> None:
    """An OCI image archive at ``path`` (one uncompressed layer: ``rootfs_tar``), named
    ``name`` (``io.containerd.image.name``, which ``ctr images import`` uses as is), whose
    config runs ``entrypoint``. ``workdir`` holds the intermediate layer file."""
    layer_path = os.path.join(workdir, "layer.tar")
    rootfs_tar(layer_path)
    with open(layer_path, "rb") as f:
        layer = f.read()
    os.unlink(layer_path)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": _arch(), "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": [IMAGE_PATH_ENV], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }, sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }, sort_keys=True).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": len(manifest),
                       "platform": {"architecture": _arch(), "os": "linux"},
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}],
    }, sort_keys=True).encode()
    with tarfile.open(path, "w") as tar:
        _add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_file(tar, "index.json", index)
        for digest, blob in ((layer_digest, layer), (config_digest, config), (manifest_digest, manifest)):
            _add_file(tar, f"blobs/sha256/{digest.split(':')[1]}", blob)
