"""A chroot holding standalone plugin files and nothing else of ours (tests/test_standalone.py).

``StandaloneRoot`` builds a root directory with:

- the plugin files under test, each copied alone with ``cp -L`` semantics (the file itself,
  whatever link points at it) under *another* name into ``/opt/cni/bin``;
- for plugins that delegate (an interface plugin calling its IPAM plugin), the delegate,
  also copied alone, under its type name in the directory that is ``CNI_PATH`` (the
  harness's or libcni's plugin directory, mirrored at the same path inside the root);
- the C libraries those files link (per ``ldd``: glibc) and ``nft`` with its libraries (a
  system tool the firewall plugins run, not ours);
- empty mount points. No Python, no standard library, no virtualenv, no file of ours.

A wrapper per plugin type (``wrappers/<type>``, a shell script on the host) is what the
harness or libcni execs: it enters a private mount namespace, bind-mounts into the root
what a plugin on a host sees (``/proc``, ``/sys``, ``/dev``, ``/run`` with the network
namespaces, ``/var/lib/cni``, and the harness's temporary directory at the same path) and
execs ``chroot ROOT /opt/cni/bin/<copied name>`` with its arguments (``dhcp daemon ...``):
environment and stdin pass through as libcni passes them. The mounts live only as long as that one plugin process (they are
made per call, inside the namespace ``ip netns exec`` gave it, so ``/sys`` is the right
one), so nothing outlives a call and nothing needs unmounting. The namespace is a slave of
the host's: a network namespace added later (``ip netns add`` bind-mounts it under
/run/netns) still appears inside, which a long-lived process (the dhcp daemon) needs, and
nothing mounted inside reaches the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess

# Host directories a plugin sees through the chroot (recursive binds: /run carries the
# network namespaces' bind mounts, /proc and /sys what the kernel shows this process).
BINDS = ("/proc", "/sys", "/dev", "/run")


def copy_alone(src: str, dest: str) -> None:
    """``cp -L src dest``: the file's content (a link is followed), executable."""
    shutil.copyfile(src, dest)  # follows symlinks, like cp -L
    os.chmod(dest, 0o755)


def _ldd(path: str) -> set[str]:
    """Absolute paths of the shared libraries ``path`` loads (and its interpreter)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    return {tok for line in out.splitlines() for tok in line.split() if tok.startswith("/") and os.path.exists(tok)}


def _copy_system_file(root: str, path: str) -> None:
    """A system file at the same path inside ``root`` (a link there: the link and its target)."""
    real = os.path.realpath(path)
    for name in {path, real}:
        dest = os.path.join(root, name.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            shutil.copy2(real, dest)


class StandaloneRoot:
    """A chroot at ``base/root`` with wrappers in ``base/wrappers`` (see the module docstring).

    ``plugins``: ``{type: path of our file}``; each is copied as ``/opt/cni/bin/<prefix><type>``.
    ``delegates``: ``{type: path}`` copied under their type name into the mirrored
    wrappers directory (what ``CNI_PATH`` names inside the root). ``shared``: host
    directories bind-mounted at the same path (data the caller reads back)."""

    def __init__(self, base: str, plugins: dict[str, str], delegates: dict[str, str] | None = None,
                 shared: tuple[str, ...] = (), prefix: str = "copied-") -> None:
        self.root = os.path.join(base, "root")
        self.wrappers = os.path.join(base, "wrappers")
        self.names = {t: f"{prefix}{t}" for t in plugins}
        os.makedirs(os.path.join(self.root, "opt", "cni", "bin"))
        os.makedirs(self.wrappers)
        for t, src in plugins.items():
            copy_alone(src, os.path.join(self.root, "opt", "cni", "bin", self.names[t]))
        inner = os.path.join(self.root, self.wrappers.lstrip("/"))
        os.makedirs(inner)
        for t, src in (delegates or {}).items():
            copy_alone(src, os.path.join(inner, t))
        libs: set[str] = set()
        for src in plugins.values():
            libs |= _ldd(src)
        nft = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if nft:
            _copy_system_file(self.root, nft)
            libs |= _ldd(nft)
        for lib in libs:
            _copy_system_file(self.root, lib)
        for d in (*BINDS, "/var/lib/cni", "/tmp", *shared):
            os.makedirs(os.path.join(self.root, d.lstrip("/")), exist_ok=True)
        os.symlink("../run", os.path.join(self.root, "var", "run"))
        self.shared = tuple(shared)
        for t in plugins:
            self._wrapper(t)

    def _wrapper(self, plugin_type: str) -> None:
        r = self.root
        mounts = [f"mount --rbind {d} {r}{d}" for d in BINDS]
        mounts += [f"mount --bind /var/lib/cni {r}/var/lib/cni"]
        mounts += [f"mount --bind {d} {r}{d}" for d in self.shared]
        script = ("#!/bin/sh\n"
                  f"# {plugin_type}: our standalone file, alone in a chroot (tests/standalone_chroot.py)\n"
                  "mkdir -p /var/lib/cni\n"
                  "exec unshare --mount --propagation slave /bin/sh -ec '\n"
                  + "".join(f"  {m}\n" for m in mounts)
                  + f"  exec /usr/sbin/chroot {r} /opt/cni/bin/{self.names[plugin_type]} \"$@\"' sh \"$@\"\n")
        path = os.path.join(self.wrappers, plugin_type)
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)

    def python_files(self) -> list[str]:
        """Anything in the root (mount points empty: nothing is mounted outside a call)
        whose name says Python: must be none."""
        found = []
        for d, dirs, files in os.walk(self.root):
            for n in dirs + files:
                if "python" in n.lower() or n.endswith((".py", ".pyc")):
                    found.append(os.path.join(d, n))
        return found

    def ours(self) -> list[str]:
        """Every file in the root that is not a system file copied from the host: ours."""
        result = []
        for d, _dirs, files in os.walk(self.root):
            for n in files:
                p = os.path.join(d, n)
                host = "/" + os.path.relpath(p, self.root)
                if not (os.path.exists(host) and not host.startswith(("/opt/cni", self.wrappers))):
                    result.append(p)
        return sorted(result)
