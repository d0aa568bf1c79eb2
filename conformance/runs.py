"""Who made what: every run's tag and owner, its clean exit on SIGTERM/SIGHUP, and the sweep
of what runs killed outright (SIGKILL, a power cut of the process) left behind.

A *run* is one harness run (``python -m conformance``), one project test session
(``make test``) or one benchmark run (``python -m conformance.bench``). Each registers
before it makes anything: ``RUNS_DIR/<tag>/owner`` holds its PID and that process's start
time (so a reused PID is not taken for the run). What it makes carries its tag:

- network namespaces are named ``<prefix>-<tag>-<unique>`` (``netns_name``): the tag is one
  whole ``-``-separated field, so tag ``ab12`` never matches a run ``ab12cd`` nested in it;
- processes it starts that outlive their namespaces' deletion, or run outside them (a DHCP
  server, a daemon, a private runtime), are recorded with ``track_pid`` (PID + start time);
- directories it makes are recorded with ``track_path`` (or made by ``mkdtemp``).

``start(kind)`` registers the run, makes SIGTERM and SIGHUP end it the way Ctrl-C does
(``KeyboardInterrupt``, so every ``finally`` and fixture teardown runs), and sweeps the
leftovers of every registered run whose owner is gone. Runs whose owner lives (another
harness running in parallel) are never touched. ``finish()`` sweeps the run's own
leftovers whatever its teardown missed (a namespace made between a signal and the code that
would have recorded it), unregisters it, and sweeps again: a run it started and killed on
its way out (``subprocess.run`` SIGKILLs its child when interrupted) is dead by then.

Inside a namespace: the processes whose network namespace it is (a plugin hung in ADD, a
daemon parked in it) are killed before it is deleted, since a namespace lives on while a
process holds it; links, addresses, nftables and iptables state go with it.

A nested run (the harness started by the test session) gets a tag of its own that begins
with its parent's (``CNIPY_NS_TAG``), so the parent's leak check (a substring of names) sees
the child's namespaces, while the sweep, matching whole fields, keeps them apart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

RUNS_DIR = os.environ.get("CNIPY_RUNS_DIR", "/run/cni-py-runs")
NETNS_DIR = "/run/netns"
TAG_ENV = "CNIPY_NS_TAG"  # the innermost run's tag, inherited by the processes it starts

_current: Run | None = None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (the process's start time in clock ticks), or None when
    there is no such process (or it is a zombie: it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return fields[19]


def alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs (not a reuse of its PID)."""
    return _start_time(pid) == start


class Run:
    """One registered run: its tag and record directory."""

    def __init__(self, tag: str, kind: str) -> None:
        self.tag = tag
        self.kind = kind
        self.dir = os.path.join(RUNS_DIR, tag)
        self.recorded = True  # False when the record could not be written (start)

    def netns_name(self, prefix: str) -> str:
        """A network namespace name of this run: ``<prefix>-<tag>-<8 hex>``."""
        return f"{prefix}-{self.tag}-{uuid.uuid4().hex[:8]}"

    def track_pid(self, pid: int) -> None:
        """Record a process this run started, to be killed if the run dies without stopping it."""
        start = _start_time(pid)
        if start is not None:
            _append(os.path.join(self.dir, "pids"), f"{pid} {start}")

    def track_group(self, pgid: int) -> None:
        """Record a process group this run started (``start_new_session``: a script and
        what it runs, such as vm-run.sh and its qemu), killed whole if the run dies."""
        start = _start_time(pgid)
        if start is not None:
            _append(os.path.join(self.dir, "groups"), f"{pgid} {start}")

    def track_path(self, path: str) -> None:
        """Record a directory (or file) this run made, removed if the run dies without doing it."""
        _append(os.path.join(self.dir, "paths"), os.path.abspath(path))


def _append(path: str, line: str) -> None:
    # One write() per line with O_APPEND: lines of parallel writers never interleave.
    if not os.path.isdir(os.path.dirname(path)):
        return  # an unrecorded run (start)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode())
    finally:
        os.close(fd)


def current() -> Run | None:
    """The run this process registered (``start``), if any."""
    return _current


def tag() -> str:
    """The innermost run's tag: this process's run, else the one it was started by
    (``CNIPY_NS_TAG``), else empty."""
    return _current.tag if _current is not None else os.environ.get(TAG_ENV, "")


def netns_name(prefix: str) -> str:
    """A namespace name carrying the innermost run's tag (``<prefix>-<tag>-<8 hex>``; without
    a run, ``<prefix>-<8 hex>``)."""
    t = tag()
    return f"{prefix}-{t}-{uuid.uuid4().hex[:8]}" if t else f"{prefix}-{uuid.uuid4().hex[:8]}"


def track_pid(pid: int) -> None:
    """``Run.track_pid`` on this process's run; nothing without one."""
    if _current is not None:
        _current.track_pid(pid)


def track_group(pgid: int) -> None:
    """``Run.track_group`` on this process's run; nothing without one."""
    if _current is not None:
        _current.track_group(pgid)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (ours: started with ``start_new_session``)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def track_path(path: str) -> None:
    """``Run.track_path`` on this process's run; nothing without one."""
    if _current is not None:
        _current.track_path(path)


def mkdtemp(prefix: str) -> str:
    """``tempfile.mkdtemp`` with the run's tag in the name, recorded with ``track_path``."""
    import tempfile

    t = tag()
    path = tempfile.mkdtemp(prefix=f"{prefix}{t}-" if t else prefix)
    track_path(path)
    return path


def _on_signal(signum, frame) -> None:
    # Once: a second SIGTERM (a supervisor insisting) must not interrupt the cleanup the
    # first one started; SIGKILL ends it anyway, and the next run's sweep does the rest.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def start(kind: str, tag_: str = "") -> Run:
    """Register this process as a run of ``kind`` (its tag also in ``CNIPY_NS_TAG`` for what
    it starts), make SIGTERM and SIGHUP act as Ctrl-C, and sweep dead runs' leftovers.
    The tag is ``tag_`` when given (the test session's, chosen before its modules load),
    else the parent run's tag plus 4 hex digits. Idempotent within a process."""
    global _current
    if _current is not None:
        return _current
    parent = os.environ.get(TAG_ENV, "")
    run = Run(tag_ or f"{parent}{uuid.uuid4().hex[:4]}", kind)
    try:
        _register(run, parent)
    except OSError as e:  # e.g. a read-only /run: the run goes on, unrecorded
        run.recorded = False
        print(f"cni-py: cannot record this run in {RUNS_DIR} ({e}); if it is killed outright, nothing will sweep "
              "what it leaves", file=sys.stderr)
    _current = run
    os.environ[TAG_ENV] = run.tag
    if threading_main():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)
    if run.recorded:
        sweep()
    return run


def _register(run: Run, parent: str) -> None:
    """Write ``run``'s record (its owner: this process) before it makes anything."""
    os.makedirs(RUNS_DIR, mode=0o700, exist_ok=True)
    try:
        os.mkdir(run.dir, mode=0o700)
    except FileExistsError:
        owner = _owner(run.dir)
        if owner is not None and alive(int(owner["pid"]), str(owner["start"])):
            raise RuntimeError(f"run {run.tag} is registered by live process {owner['pid']}") from None
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid()), "kind": run.kind, "parent": parent,
             "created": time.time()}
    tmp = os.path.join(run.dir, "owner.tmp")
    with open(tmp, "w") as f:
        json.dump(owner, f)
    os.rename(tmp, os.path.join(run.dir, "owner"))  # a record is whole or absent


def threading_main() -> bool:
    """Whether this is the main thread (the only one that may set signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def finish() -> None:
    """Remove whatever of this run is still on the machine, then its record; then sweep the
    runs that died meanwhile. Those include the runs this one started and killed on its way
    out: ``subprocess.run`` interrupted by the signal SIGKILLs its child (a harness the test
    session runs with a stripped environment, say), which then cannot clean up itself."""
    global _current
    run, _current = _current, None
    if run is None:
        return
    _remove(run)
    if run.recorded:
        sweep()


def _owner(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "owner")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def sweep() -> list[str]:
    """Remove the leftovers of every registered run whose owner is gone; returns their tags.
    A record without an owner file (its run was killed while registering) counts as dead
    once it is a minute old."""
    if not os.path.isdir(RUNS_DIR):
        return []
    swept = []
    for t in sorted(os.listdir(RUNS_DIR)):
        d = os.path.join(RUNS_DIR, t)
        owner = _owner(d)
        if owner is not None:
            if alive(int(owner["pid"]), str(owner["start"])):
                continue
        else:
            try:
                if time.time() - os.stat(d).st_mtime < 60:
                    continue
            except OSError:
                continue
        _remove(Run(t, owner.get("kind", "?") if owner else "?"))
        swept.append(t)
    return swept


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [l.strip() for l in f if l.strip()]
    except OSError:
        return []


def namespaces_of(tag_: str) -> list[str]:
    """The network namespaces whose name has ``tag_`` as one whole ``-``-separated field."""
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return []
    return sorted(n for n in names if tag_ in n.split("-")[1:])


def _kill(pid: int, start: str) -> None:
    if not alive(pid, start):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + 5
    while alive(pid, start) and time.monotonic() < end:
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        except ChildProcessError:
            pass
        time.sleep(0.01)


def _group_members(pgid: int, since: str) -> list[tuple[int, str]]:
    """(PID, start time) of the processes in group ``pgid`` that started no earlier than
    ``since`` (its leader's start: an older process with that group ID is not of this group)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and fields[2] == str(pgid) and int(fields[19]) >= int(since):
            found.append((int(entry), fields[19]))
    return found


def processes_in(netns_path: str) -> list[tuple[int, str]]:
    """(PID, start time) of every process whose network namespace is the one at ``netns_path``."""
    try:
        st = os.stat(netns_path)
    except OSError:
        return []
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
            start = _start_time(int(entry))
            if start is not None:
                found.append((int(entry), start))
    return found


def delete_netns(name: str) -> None:
    """Kill the processes in namespace ``name``, then delete it (``ip netns delete``)."""
    for pid, start in processes_in(os.path.join(NETNS_DIR, name)):
        _kill(pid, start)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def _remove(run: Run) -> None:
    """Everything run ``run`` recorded or named: its processes (by PID and start time), its
    namespaces (and the processes in them), its paths; then its record."""
    for line in _lines(os.path.join(run.dir, "pids")):
        pid, _, start = line.partition(" ")
        if pid.isdigit():
            _kill(int(pid), start)
    for line in _lines(os.path.join(run.dir, "groups")):
        pgid, _, start = line.partition(" ")
        if pgid.isdigit() and start.isdigit():
            for pid, since in _group_members(int(pgid), start):
                _kill(pid, since)
    for name in namespaces_of(run.tag):
        delete_netns(name)
    for path in _lines(os.path.join(run.dir, "paths")):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    shutil.rmtree(run.dir, ignore_errors=True)
