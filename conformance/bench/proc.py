"""Processes and namespaces of the benchmark: the bottom of ``conformance.bench``.

One plugin process run and timed (:func:`exec_plugin`), its peak RSS (:class:`RssMeter`),
threads parked in a throwaway host namespace that start processes there
(:class:`NetnsThread`), and the cleanup of a run's namespaces and temp directory, which a
second Ctrl-C cannot skip (:func:`cleanup_uninterrupted`). Imports nothing of the package.

Times are whole-process: fork (or vfork), exec, interpreter start-up, work, exit, as a
runtime experiences them.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000


class Sample:
    """Wall time (s) and peak RSS (KiB) of one or more plugin processes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.max_rss_kib = 0


class RssMeter:
    """Peak RSS of a child process, measured through ``busybox time``.

    rusage from our own wait4 is useless here: a child's ru_maxrss includes the forking
    parent's memory at exec time (this benchmark's interpreter), so every plugin would look
    the same. busybox is static and tiny, so the plugin it forks starts from almost nothing.
    Debian's busybox 1.35 prints %M in pages*4 (4x too high); the scale is calibrated once
    against a process that reports its own VmHWM, so a fixed busybox is read correctly too.
    """

    def __init__(self) -> None:
        self.busybox = shutil.which("busybox")
        self.scale = 1.0
        if self.busybox:
            probe = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
            with tempfile.NamedTemporaryFile("r") as f:
                p = subprocess.run([self.busybox, "time", "-f", "%M", "-o", f.name, sys.executable, "-c", probe],
                                   capture_output=True, text=True, check=False)
                reported, actual = int(f.read().split()[-1]), int(p.stdout.strip())
            ratio = reported / actual
            self.scale = 1.0 / min((1, 2, 4, 8), key=lambda k: abs(k - ratio))

    def wrap(self, argv: list[str], out: str) -> list[str]:
        """``argv`` run under ``busybox time``, which writes the peak RSS to ``out``."""
        return [self.busybox, "time", "-f", "%M", "-o", out] + argv if self.busybox else argv

    def read(self, out: str) -> int:
        """The peak RSS (KiB) that ``busybox time`` wrote to ``out``; 0 if it wrote none."""
        try:
            with open(out) as f:
                return int(int(f.read().split()[-1]) * self.scale)
        except (OSError, ValueError, IndexError):
            return 0


def enter_netns(path: str) -> Callable[[], None]:
    """A function that moves the calling thread (or, as a preexec_fn, the child before exec)
    into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    return enter


class NetnsThread:
    """A thread parked in the network namespace at ``path``: processes it starts are born
    there (a child is cloned from the calling thread, namespaces included).

    The cheap way to start plugins in a throwaway host namespace: a preexec_fn that calls
    setns makes subprocess fork the whole interpreter instead of vfork-ing, which would be
    counted as the plugin's time. Use :func:`netns_thread` (one thread per namespace) and
    :func:`release_netns_threads` before deleting the namespace (a thread inside keeps it,
    and its links, alive).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._cv = threading.Condition()
        self._jobs: list = []
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"netns {path}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        try:
            enter_netns(self.path)()
        except OSError as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        while True:
            with self._cv:
                while not self._jobs:
                    self._cv.wait()
                job = self._jobs.pop(0)
            if job is None:
                return
            fn, box, done = job
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed to the caller
                box.append((False, e))
            done.set()

    def call(self, fn: Callable):
        """Run ``fn()`` in the namespace's thread and return its result (or raise its error)."""
        box: list = []
        done = threading.Event()
        with self._cv:
            self._jobs.append((fn, box, done))
            self._cv.notify()
        done.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value

    def close(self) -> None:
        """End the thread (after the jobs already queued)."""
        with self._cv:
            self._jobs.append(None)
            self._cv.notify()
        self._thread.join(timeout=30)


# One registry per process: every module of the package starts its processes through it,
# so releasing a namespace's thread here really lets the namespace go.
_NS_THREADS: dict[str, NetnsThread] = {}
_NS_LOCK = threading.Lock()


def netns_thread(path: str) -> NetnsThread:
    """The (one) :class:`NetnsThread` of the namespace at ``path``."""
    with _NS_LOCK:
        t = _NS_THREADS.get(path)
        if t is None:
            t = _NS_THREADS[path] = NetnsThread(path)
        return t


def release_netns_threads(prefix: str = "") -> None:
    """End the threads parked in namespaces whose path starts with ``prefix`` (all by default)."""
    with _NS_LOCK:
        paths = [p for p in _NS_THREADS if p.startswith(prefix)]
        threads = [_NS_THREADS.pop(p) for p in paths]
    for t in threads:
        t.close()


def exec_plugin(binary: str, command: str, conf: dict, sample: Sample, rss: RssMeter | None = None,
                host_netns: str | None = None, *, ns_thread: bool = False, **env: str) -> bytes:
    """Run one plugin process, adding its wall time (or, with ``rss``, its peak RSS) to ``sample``.

    ``host_netns``: the process runs in that namespace, entered by a preexec_fn, or, with
    ``ns_thread``, started from a thread parked there (:class:`NetnsThread`, without the
    preexec_fn's fork of the interpreter)."""
    if host_netns and ns_thread:
        return netns_thread(host_netns).call(
            lambda: exec_plugin(binary, command, conf, sample, rss, None, **env))
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": "bench",
         "CNI_NETNS": "", "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": os.path.dirname(binary)}
    e.update(env)
    data = json.dumps(conf).encode()
    argv = [binary]
    rss_file = ""
    if rss is not None:
        fd, rss_file = tempfile.mkstemp(prefix="cni-bench-rss-")
        os.close(fd)
        argv = rss.wrap(argv, rss_file)
    t = time.perf_counter()
    p = subprocess.run(argv, input=data, capture_output=True, env=e, check=False,
                       preexec_fn=enter_netns(host_netns) if host_netns else None)
    elapsed = time.perf_counter() - t
    if rss is not None:
        sample.max_rss_kib = max(sample.max_rss_kib, rss.read(rss_file))
        os.unlink(rss_file)
    else:
        sample.seconds += elapsed
    if p.returncode != 0:
        raise RuntimeError(f"{binary} {command} failed: {p.stdout.decode() or p.stderr.decode()}")
    return p.stdout


def rotated(items: list, i: int) -> list:
    """``items`` rotated by ``i``: run i starts with a different implementation each time."""
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def not_built_for(impls: list[tuple[str, str]], plugins, unbuilt: set = frozenset()) -> dict[str, list[str]]:
    """{label: plugins missing in its directory} (every plugin for the ``unbuilt`` labels)."""
    out = {}
    for label, d in impls:
        miss = [p for p in plugins if label in unbuilt or not os.access(os.path.join(d, p), os.X_OK)]
        if miss:
            out[label] = miss
    return out


def cleanup_uninterrupted(restore_term, fn: Callable, *args) -> None:
    """Run the cleanup ``fn(*args)`` with SIGINT and SIGTERM ignored (a second Ctrl-C must not
    skip it), then restore SIGINT and set SIGTERM back to ``restore_term``."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        fn(*args)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, restore_term)
        signal.signal(signal.SIGHUP, old_hup)


def delete_netns(prefix: str) -> None:
    """Delete every named namespace starting with ``prefix`` (pods before their host
    namespaces: the longer names first), after ending the threads parked in them."""
    release_netns_threads(os.path.join(NETNS_DIR, prefix))
    try:
        names = [n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        names = []
    for n in sorted(names, key=lambda x: (-len(x), x)):
        subprocess.run(["ip", "netns", "delete", n], capture_output=True, check=False)


def cleanup(prefix: str, running: list, tmp: str) -> None:
    """Wait for driver processes still running (they were started here), then remove every
    namespace named with this run's prefix and the temp directory. Safe to run more than once."""
    for p in running:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    del running[:]
    release_netns_threads(os.path.join(NETNS_DIR, prefix))
    delete_netns(prefix)
    shutil.rmtree(tmp, ignore_errors=True)
