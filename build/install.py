"""``make install``: copy dist/bin/* into DESTDIR, never clobbering someone else's plugin.

A manifest (``.cni-py-manifest`` in DESTDIR) records the SHA-256 of each file we install.
A file already in DESTDIR is replaced only if the manifest says we put it there and it is
unchanged since, or with FORCE=1. Each file is written to a temporary name and renamed, so
a runtime exec'ing a plugin meanwhile sees the old or the new file, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

MANIFEST = ".cni-py-manifest"


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _load(dest: str) -> dict[str, str]:
    try:
        with open(os.path.join(dest, MANIFEST)) as f:
            return dict(line.split() for line in f if line.strip())  # type: ignore[misc]
    except FileNotFoundError:
        return {}


def install(src: str, dest: str, force: bool) -> int:
    """Install every file of ``src`` into ``dest``; return the exit status."""
    names = sorted(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n)))
    if not names:
        print(f"install: nothing in {src}; run `make bin` first", file=sys.stderr)
        return 1
    os.makedirs(dest, exist_ok=True)
    manifest = _load(dest)
    refused = []
    for n in names:
        target = os.path.join(dest, n)
        if os.path.exists(target) and not force and manifest.get(n) != _sha(target):
            refused.append(n)
    if refused:
        print(f"install: refusing to overwrite {', '.join(refused)} in {dest}: not installed by "
              "cni-py (or changed since); use FORCE=1 to replace", file=sys.stderr)
        return 1
    for n in names:
        target = os.path.join(dest, n)
        tmp = os.path.join(dest, f".{n}.cni-py-tmp")
        shutil.copy2(os.path.join(src, n), tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        manifest[n] = _sha(target)
        print(f"  {target}")
    tmp = os.path.join(dest, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(f"{k} {v}\n" for k, v in sorted(manifest.items()))
    os.replace(tmp, os.path.join(dest, MANIFEST))
    return 0


if __name__ == "__main__":
    sys.exit(install(sys.argv[1], sys.argv[2], os.environ.get("FORCE") == "1"))
