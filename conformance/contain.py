"""Hard process containment for checks that may make a plugin run away.

A plugin that delegates to itself (``"ipam": {"type": "bridge"}`` in a bridge config)
without a guard execs itself without end: the reference bridge made 1,100 processes in
3 s and exhausted the machine's memory. Such a check runs the plugin in a :class:`Cage`:
a cgroup of its own with ``pids.max`` (a fork beyond it fails with EAGAIN, so a chain
stops where it is), and a sweep at the end that kills every process in the cgroup,
whatever happened, and removes the cgroup. Processes cannot leave a cgroup by forking,
double-forking or being reparented, so nothing the plugin made survives the sweep.

Two cgroup layouts are supported, detected from /proc/self/mountinfo:

- cgroup v2 (unified hierarchy with the ``pids`` controller, e.g. Debian's stock kernel):
  a child of the hierarchy's root, where ``pids`` can always be enabled; swept with
  ``cgroup.kill`` (Linux 5.14+), else by freezing (``cgroup.freeze``), SIGKILLing every
  process and thawing;
- cgroup v1 (a ``pids`` hierarchy, and a ``freezer`` one if mounted): a child of our own
  cgroup in each; swept by freezing, SIGKILLing every process and thawing (without a
  freezer, SIGKILL rounds until the cgroup is empty: with the fork limit in place, the
  number of processes is bounded).

Where neither is usable, :func:`open_cage` raises :class:`Unavailable` with the reason,
and a check that needs a cage must skip rather than run a plugin unconfined.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

PIDS_MAX = 32  # a plugin calling its IPAM plugin and a firewall tool needs a handful
_MARK = "cni-conformance-cage"


class Unavailable(Exception):
    """No cgroup hierarchy with a pids controller this process can use."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields, tfields = head.split(), tail.split()
            if len(tfields) >= 3 and tfields[0] in ("cgroup", "cgroup2"):
                out.append((fields[4].replace("\\040", " "), tfields[0], set(tfields[2].split(","))))
    return out


def _own_path(controller: str) -> str:
    """Our cgroup's path in the v1 hierarchy of ``controller``."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return path
    raise Unavailable(f"this process is in no {controller} cgroup")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _events(path: str) -> dict[str, int]:
    """A flat keyed file (``pids.events``, ``cgroup.events``) as a dict."""
    try:
        return {k: int(v) for k, v in (line.split() for line in _read(path).splitlines() if line.strip())}
    except (OSError, ValueError):
        return {}


def _v2_root() -> str | None:
    for mnt, fstype, _ in _mounts():
        if fstype == "cgroup2" and "pids" in _read(os.path.join(mnt, "cgroup.controllers")).split():
            return mnt
    return None


def _v1_roots() -> tuple[str | None, str | None]:
    pids = freezer = None
    for mnt, fstype, opts in _mounts():
        if fstype == "cgroup" and "pids" in opts:
            pids = pids or mnt
        if fstype == "cgroup" and "freezer" in opts:
            freezer = freezer or mnt
    return pids, freezer


class Cage:
    """One cgroup with a process limit; see the module docstring. Use :func:`open_cage`."""

    def __init__(self, pids_dir: str, freezer_dir: str | None, v2: bool) -> None:
        self.pids_dir = pids_dir  # v2: the one cgroup; v1: the pids hierarchy's
        self.freezer_dir = freezer_dir  # v1 only
        self.v2 = v2
        self.layout = "cgroup v2" if v2 else ("cgroup v1 pids+freezer" if freezer_dir else "cgroup v1 pids")

    # -- running -----------------------------------------------------------------------
    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the cage: a shell moves itself into
        the cgroup(s) and then execs it (exit 125 if it cannot enter)."""
        procs = [os.path.join(d, "cgroup.procs") for d in (self.pids_dir, self.freezer_dir) if d]
        script = 'for f in "$1" "$2"; do [ -z "$f" ] || echo $$ > "$f" || exit 125; done; shift 2; exec "$@"'
        return ["/bin/sh", "-c", script, "cage", procs[0], procs[1] if len(procs) > 1 else "", *argv]

    @property
    def limit(self) -> int:
        return int(_read(os.path.join(self.pids_dir, "pids.max")).strip())

    def limit_hits(self) -> int:
        """How many forks (or threads) the limit refused so far."""
        return _events(os.path.join(self.pids_dir, "pids.events")).get("max", 0)

    def procs(self) -> list[int]:
        """The processes in the cage now."""
        pids = set()
        for d in (self.pids_dir, self.freezer_dir):
            if d and os.path.isdir(d):
                pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
        return sorted(pids)

    # -- sweeping ----------------------------------------------------------------------
    def _freeze(self, on: bool) -> bool:
        if self.v2:
            f = os.path.join(self.pids_dir, "cgroup.freeze")
            if not os.path.exists(f):
                return False
            _write(f, "1" if on else "0")
            want = 1 if on else 0
            deadline = time.monotonic() + 2
            while _events(os.path.join(self.pids_dir, "cgroup.events")).get("frozen", want) != want \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            return True
        if self.freezer_dir is None:
            return False
        state = os.path.join(self.freezer_dir, "freezer.state")
        _write(state, "FROZEN" if on else "THAWED")
        deadline = time.monotonic() + 2
        # FREEZING until every task has stopped; a task in uninterruptible sleep may keep
        # it there, and SIGKILL then still ends it once it wakes.
        while on and _read(state).strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    def kill_all(self, timeout: float = 10) -> None:
        """Kill every process in the cage and wait until it is empty (RuntimeError if it
        does not empty within ``timeout``)."""
        kill_file = os.path.join(self.pids_dir, "cgroup.kill")
        deadline = time.monotonic() + timeout
        frozen = False
        if self.v2 and os.path.exists(kill_file):
            _write(kill_file, "1")  # atomic: the kernel kills every process, new forks included
        else:
            frozen = self._freeze(True)
        try:
            while True:
                left = self.procs()
                if not left:
                    return
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if frozen:  # killed while frozen: the signals act on thaw
                    self._freeze(False)
                    frozen = False
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cage {self.pids_dir} still holds processes {left} after SIGKILL")
                time.sleep(0.02)
        finally:
            if frozen:
                self._freeze(False)

    def close(self) -> None:
        """Sweep (kill everything in the cage) and remove the cgroup(s); once."""
        if not any(d and os.path.isdir(d) for d in (self.pids_dir, self.freezer_dir)):
            return
        try:
            self.kill_all()
        finally:
            for d in (self.pids_dir, self.freezer_dir):
                if d and os.path.isdir(d):
                    deadline = time.monotonic() + 5
                    while True:  # an exiting task may keep the cgroup busy for a moment
                        try:
                            os.rmdir(d)
                            break
                        except OSError:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(0.02)

    def __enter__(self) -> "Cage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mkcg(parent: str, name: str) -> str:
    d = os.path.join(parent, name)
    os.mkdir(d)
    return d


def open_cage(pids_max: int = PIDS_MAX) -> Cage:
    """A new, empty cage allowing ``pids_max`` tasks (processes and threads); raises
    :class:`Unavailable` with the reason when this machine offers no usable cgroup."""
    name = f"{_MARK}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    try:
        root = _v2_root()
        if root is not None:
            ctl = os.path.join(root, "cgroup.subtree_control")
            if "pids" not in _read(ctl).split():
                _write(ctl, "+pids")  # the root cgroup may have processes and still delegate
            made.append(_mkcg(root, name))
            _write(os.path.join(made[0], "pids.max"), str(pids_max))
            return Cage(made[0], None, v2=True)
        if _v1_roots()[0] is None:
            raise Unavailable("no cgroup v2 hierarchy with the pids controller and no cgroup v1 pids hierarchy "
                              "is mounted")
        for parent in _parents():  # pids first, then freezer
            made.append(_mkcg(parent, name))
        _write(os.path.join(made[0], "pids.max"), str(pids_max))
        return Cage(made[0], made[1] if len(made) > 1 else None, v2=False)
    except OSError as e:
        for d in reversed(made):
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise Unavailable(f"cannot make a pids cgroup: {e}") from None


def _parents() -> list[str]:
    """Where :func:`open_cage` makes its cgroups."""
    root = _v2_root()
    if root is not None:
        return [root]
    return [mnt + _own_path(c) for mnt, c in zip(_v1_roots(), ("pids", "freezer")) if mnt]


def leftover_cages() -> list[str]:
    """Cage cgroups that still exist (of any run): a sweep that failed leaves one."""
    return [os.path.join(p, x) for p in _parents() for x in os.listdir(p) if x.startswith(_MARK)]
