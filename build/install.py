"""``make install``: put dist/bin into DESTDIR, never clobbering someone else's plugin.

dist/bin holds one self-contained executable per plugin (build/standalone.py); each is
installed as a file of its own: copied to a temporary name in DESTDIR, then renamed over
the plugin's name, so a runtime exec'ing a plugin meanwhile runs the old file or the new
one, never a half-copied one. Every installed file stands alone: copied elsewhere (``cp``,
``cp -L``) it still runs. (A link in the source directory is installed as the file it
points at.)

A manifest (``.cni-py-manifest`` in DESTDIR) records what we installed: the SHA-256 of each
file. An entry already in DESTDIR is replaced only if the manifest says we put it there and
it is unchanged since, or with FORCE=1. What an earlier layout left (a ``cni-py-<hash>/``
bundle directory with links to it, recorded as ``dir`` and ``link:...``) is replaced the
same way: the links by files, then the bundle is removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

MANIFEST = ".cni-py-manifest"


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state(path: str) -> str:
    """What the manifest would say about ``path`` as it is now ("" when absent)."""
    if os.path.islink(path):
        return "link:" + os.readlink(path)
    if os.path.isdir(path):
        return "dir"
    if os.path.isfile(path):
        return _sha(path)
    return ""


def _load(dest: str) -> dict[str, str]:
    try:
        with open(os.path.join(dest, MANIFEST)) as f:
            return dict(line.split() for line in f if line.strip())  # type: ignore[misc]
    except FileNotFoundError:
        return {}


def install(src: str, dest: str, force: bool) -> int:
    """Install every plugin file of ``src`` into ``dest``; return the exit status."""
    plugins = sorted(n for n in os.listdir(src)
                     if not n.startswith(".") and os.path.isfile(os.path.join(src, n)))
    if not plugins:
        print(f"install: nothing in {src}; run `make bin` first", file=sys.stderr)
        return 1
    os.makedirs(dest, exist_ok=True)
    manifest = _load(dest)
    refused = [n for n in plugins
               if os.path.lexists(os.path.join(dest, n)) and not force
               and manifest.get(n) != _state(os.path.join(dest, n))]
    if refused:
        print(f"install: refusing to overwrite {', '.join(refused)} in {dest}: not installed by "
              "cni-py (or changed since); use FORCE=1 to replace", file=sys.stderr)
        return 1
    for n in plugins:
        target = os.path.join(dest, n)
        tmp = os.path.join(dest, f".{n}.cni-py-tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        shutil.copyfile(os.path.join(src, n), tmp)  # follows a link: the file itself
        os.chmod(tmp, 0o755)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)  # FORCE=1 over a directory of that name
        os.replace(tmp, target)
        manifest[n] = _sha(target)
        print(f"  {target}")
    # An earlier layout's bundle directories: no installed plugin points into them any more.
    for old in [n for n, v in manifest.items() if v == "dir"]:
        shutil.rmtree(os.path.join(dest, old), ignore_errors=True)
        manifest.pop(old)
    tmp = os.path.join(dest, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(f"{k} {v}\n" for k, v in sorted(manifest.items()))
    os.replace(tmp, os.path.join(dest, MANIFEST))
    return 0


UNIT_MARK = "# cni-py: installed by `make install`"


def install_units(src: str, unit_dir: str, bindir: str, force: bool) -> int:
    """Install the systemd units of ``src`` (build/systemd) into ``unit_dir`` with ``@BINDIR@``
    replaced by ``bindir``; a unit there that is not ours (no UNIT_MARK line) is replaced only
    with FORCE=1. Nothing is started or enabled (PID 1 need not be systemd): the hint says how."""
    units = sorted(n for n in os.listdir(src) if n.endswith((".service", ".socket")))
    os.makedirs(unit_dir, exist_ok=True)
    refused = []
    for n in units:
        target = os.path.join(unit_dir, n)
        if os.path.lexists(target) and not force:
            try:
                with open(target) as f:
                    ours = f.readline().startswith(UNIT_MARK)
            except OSError:
                ours = False
            if not ours:
                refused.append(n)
    if refused:
        print(f"install: refusing to overwrite {', '.join(refused)} in {unit_dir}: not installed by cni-py; "
              "use FORCE=1 to replace", file=sys.stderr)
        return 1
    for n in units:
        with open(os.path.join(src, n)) as f:
            text = f.read().replace("@BINDIR@", os.path.abspath(bindir))
        target = os.path.join(unit_dir, n)
        tmp = os.path.join(unit_dir, f".{n}.cni-py-tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        print(f"  {target}")
    print("  (to use the dhcp daemon: systemctl daemon-reload && systemctl enable --now cni-dhcp.socket)")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--units":  # install.py --units SRC UNIT_DIR BINDIR
        sys.exit(install_units(sys.argv[2], sys.argv[3], sys.argv[4], os.environ.get("FORCE") == "1"))
    sys.exit(install(sys.argv[1], sys.argv[2], os.environ.get("FORCE") == "1"))
