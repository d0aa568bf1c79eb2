"""``make install``: put dist/bin into DESTDIR, never clobbering someone else's plugin.

dist/bin holds either plain executables (copied as they are) or the frozen build: the
bundle directory ``cni-py/`` and one symlink per plugin into it (see build/freeze.py).
The bundle is installed as ``cni-py-<hash>/`` (a hash of its content) and each plugin link
is repointed with an atomic rename, so a runtime exec'ing a plugin meanwhile runs the old
or the new build, never a half-copied one; the previous bundle is removed afterwards.

A manifest (``.cni-py-manifest`` in DESTDIR) records what we installed: the SHA-256 of each
file, ``link:<target>`` for each link, ``dir`` for our bundle. An entry already in DESTDIR
is replaced only if the manifest says we put it there and it is unchanged since, or with
FORCE=1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

MANIFEST = ".cni-py-manifest"
BUNDLE = "cni-py"


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


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


def _tree_hash(root: str) -> str:
    h = hashlib.sha256()
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(d, name)
            h.update(os.path.relpath(p, root).encode() + b"\0")
            h.update(os.readlink(p).encode() if os.path.islink(p) else _sha(p).encode())
    return h.hexdigest()[:12]


def _replace_link(dest: str, name: str, target: str) -> None:
    tmp = os.path.join(dest, f".{name}.cni-py-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(dest, name))


def install(src: str, dest: str, force: bool) -> int:
    """Install every plugin of ``src`` into ``dest``; return the exit status."""
    entries = sorted(n for n in os.listdir(src) if not n.startswith("."))
    bundle = os.path.join(src, BUNDLE)
    has_bundle = os.path.isdir(bundle)
    plugins = [n for n in entries if n != BUNDLE and (os.path.isfile(os.path.join(src, n)) or
                                                      os.path.islink(os.path.join(src, n)))]
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
    old_bundles = [n for n, v in manifest.items() if v == "dir"]
    new_bundle = ""
    if has_bundle:
        new_bundle = f"{BUNDLE}-{_tree_hash(bundle)}"
        target_dir = os.path.join(dest, new_bundle)
        if not os.path.isdir(target_dir):
            tmp_dir = os.path.join(dest, f".{new_bundle}.cni-py-tmp")
            shutil.rmtree(tmp_dir, ignore_errors=True)
            shutil.copytree(bundle, tmp_dir, symlinks=True)
            os.replace(tmp_dir, target_dir)
        manifest[new_bundle] = "dir"
        print(f"  {target_dir}/")
    for n in plugins:
        s = os.path.join(src, n)
        target = os.path.join(dest, n)
        if os.path.islink(s):
            link = os.readlink(s)
            if has_bundle and link.startswith(BUNDLE + "/"):
                link = new_bundle + link[len(BUNDLE):]
            _replace_link(dest, n, link)
            manifest[n] = "link:" + link
            print(f"  {target} -> {link}")
            continue
        tmp = os.path.join(dest, f".{n}.cni-py-tmp")
        shutil.copy2(s, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        manifest[n] = _sha(target)
        print(f"  {target}")
    for old in old_bundles:  # every link now points at the new bundle
        if old != new_bundle:
            shutil.rmtree(os.path.join(dest, old), ignore_errors=True)
            manifest.pop(old, None)
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
