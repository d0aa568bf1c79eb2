"""A private mount namespace for a runtime, and removing what runtimes leave on the machine.

``PrivateMounts`` keeps a mount namespace alive with one process (a sleeper, or the runtime's
daemon itself) and runs commands inside it through ``nsenter``. Its ``plan`` shadows
directories with tmpfs copies (``SHADOW_SH``): ``/run`` and ``/var/lib`` show the machine's
entries except those a runtime writes to (``RUN_PRIVATE``, ``VAR_LIB_PRIVATE``), which start
empty there; fixed paths such as ``/opt/cni/bin`` and ``/etc/cni/net.d`` can be replaced by
our directories. Propagation is private: nothing mounted there reaches the machine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time

from conformance.runtimes.commands import Unavailable
from conformance.proc import PLAIN_PATH

# Entries of the machine's /run and /var/lib that runtimes write to: private (empty) in ours.
RUN_PRIVATE = ("netns", "runc", "crun", "containers", "libpod", "containerd", "mount", "cni")
VAR_LIB_PRIVATE = ("containers", "containerd", "cni")


# ---------------------------------------------------------------- cgroups

def cgroup_dirs(name: str) -> list[str]:
    """``/sys/fs/cgroup/<hierarchy>/<name>`` (v1) and ``/sys/fs/cgroup/<name>`` (v2)."""
    base = "/sys/fs/cgroup"
    cands = [os.path.join(base, name)]
    if os.path.isdir(base):
        cands += [os.path.join(base, h, name) for h in os.listdir(base)]
    return [c for c in cands if os.path.isdir(c)]


def remove_cgroups(name: str) -> None:
    """Remove the (empty) cgroup trees named ``name`` that a runtime left behind."""
    for top in cgroup_dirs(name):
        for d, _, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ---------------------------------------------------------------- the private mount namespace

SHADOW_SH = r'''
m() { mount -n "$@"; }
# shadow DIR NAME...: DIR becomes a tmpfs showing DIR's entries except NAME..., which are
# left out (a runtime creating them creates them in the tmpfs, in this namespace only).
shadow() {
  d=$1; shift
  [ -d "$d" ] || return 0
  h="$R/shadow$d"; mkdir -p "$h"
  m --rbind "$d" "$h"
  for k in "$@"; do umount -n -R -l "$h/$k" 2>/dev/null || true; done
  m -t tmpfs -o mode=$(stat -c %a "$h") cnipy-shadow "$d"
  for e in "$h"/* "$h"/.[!.]* "$h"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/}
    for k in "$@"; do [ "$n" = "$k" ] && continue 2; done
    if [ -L "$e" ]; then cp -P "$e" "$d/$n"
    elif [ -d "$e" ]; then mkdir "$d/$n"; m --rbind "$e" "$d/$n"
    else : > "$d/$n"; m --bind "$e" "$d/$n"; fi
  done
}
# over SRC DIR: SRC is seen at DIR; a missing DIR is made in a shadow of its deepest
# existing ancestor.
over() {
  if [ ! -d "$2" ]; then
    c=$2
    while [ ! -d "$(dirname "$c")" ]; do c=$(dirname "$c"); done
    p=$(dirname "$c")
    [ "$p" != / ] || { echo "cannot place $2 without shadowing /" >&2; exit 97; }
    shadow "$p" "$(basename "$c")"; mkdir -p "$2"
  fi
  m --bind "$1" "$2"
}
'''


class PrivateMounts:
    """A private mount namespace (optionally inside network namespace ``netns``), set up by
    ``plan`` (shell lines using ``m``, ``shadow``, ``over``; ``$R`` is ``root``) and kept
    alive by ``argv`` (exec'd last: a daemon, or a sleeper)."""

    def __init__(self, root: str, plan: list[str], argv: list[str], *, netns: str | None = None,
                 env: dict | None = None, log: str = "ns.log") -> None:
        self.root = root
        self.log = os.path.join(root, log)
        ready = os.path.join(root, "ns.ready")
        script = ("set -e\n" + SHADOW_SH + "\n".join(plan) + f'\n: > {shlex.quote(ready)}\nexec "$@"\n')
        cmd = []
        if netns:
            cmd += ["nsenter", f"--net=/run/netns/{netns}"]
        cmd += ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "cnipy-ns"] + argv
        e = {"PATH": PLAIN_PATH, "R": root}
        e.update(env or {})
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(cmd, env=e, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise Unavailable(f"cannot set up a private mount namespace: {self.log_text()}")
            time.sleep(0.02)
        # Hold the namespace open until stop() is done: a namespace's inode number is
        # recycled as soon as it dies, and members() must never match an unrelated
        # namespace that got the same number (an `ip netns exec` elsewhere).
        self.mntns_fd = os.open(f"/proc/{self.proc.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.mntns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        self.netns = netns
        if self.mntns == os.readlink("/proc/self/ns/mnt"):  # stop() ends every member
            del self.mntns
            self._release_ns()
            self.stop()
            raise AssertionError("unshare --mount left the keeper in our own mount namespace")

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:].strip()
        except OSError:
            return ""

    def cmd(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace (and its network namespace, if any)."""
        return ["nsenter", "-t", str(self.proc.pid), "-m"] + (["-n"] if self.netns else []) + ["--"] + argv

    def members(self) -> list[int]:
        """Processes in this mount namespace (all started by us, through it); none once
        stop() has released the namespace (it ended them all, and its inode number may
        name another namespace by then)."""
        if getattr(self, "mntns_fd", -1) < 0:
            return []
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != os.getpid() and _mount_ns(int(p)) == self.mntns:
                pids.append(int(p))
        return pids

    def stop(self, grace: float = 10) -> None:
        """End the keeper (SIGTERM, then SIGKILL) and every process left in the namespace."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not hasattr(self, "mntns"):
            return
        try:
            self._kill_members()
        finally:
            self._release_ns()

    def _release_ns(self) -> None:
        fd = getattr(self, "mntns_fd", -1)
        if fd >= 0:
            os.close(fd)
            self.mntns_fd = -1

    def _kill_members(self) -> None:
        if getattr(self, "mntns_fd", -1) < 0:
            return  # released: the inode may name another namespace by now
        end = time.monotonic() + 10
        empty_scans = 0
        while True:
            left = self.members()
            # A process can hide from one scan (forked just after it, or in the middle of an
            # exec); the namespace counts as empty after three empty scans in a row.
            empty_scans = 0 if left else empty_scans + 1
            if empty_scans == 3:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if left and time.monotonic() > end:
                raise AssertionError(f"processes of the private namespace survive SIGKILL: {left}")
            time.sleep(0.05)


def _mount_ns(pid: int) -> str | None:
    """``/proc/PID/ns/mnt``, or None once the process is gone; a process in the middle of an
    exec refuses the read for a moment (EACCES), so that is retried."""
    for _ in range(20):
        try:
            return os.readlink(f"/proc/{pid}/ns/mnt")
        except PermissionError:
            time.sleep(0.005)
        except OSError:
            return None
    return None


def remove_tree(root: str) -> None:
    """rm -rf ``root`` unless something is still mounted under it in our own namespace."""
    real = os.path.realpath(root)
    with open("/proc/self/mountinfo") as f:
        mounted = [l.split()[4] for l in f if l.split()[4].startswith(real + "/") or l.split()[4] == real]
    if mounted:
        raise AssertionError(f"still mounted under {root}, not removing it: {mounted}")
    shutil.rmtree(root, ignore_errors=True)
