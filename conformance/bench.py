"""Benchmark: our plugins against the reference ones, whole process, alternating in one run.

    python -m conformance.bench                    quick run (~2 min): the single-pod scenarios
    python -m conformance.bench --all              everything: + 32 parallel pods + the scale run
    python -m conformance.bench [--runs N] [--only host-local,loopback,bridge,chain,parallel,scale]
                                [--ours DIR] [--ours-bin DIR] [--ref DIR] [--impls ours,ours-bin,ref]
                                [--json OUT.json] [--report OUT.md]
    python -m conformance.bench --scale [--pods 10,100] [--impls ours,ref] [--plot PNG]

Implementations (``--impls``, default all three): ``ours`` = ``--ours`` (default
dist/src-bin: the launchers that run the source), ``ours-bin`` = ``--ours-bin`` (default
dist/bin: the self-contained PyInstaller binaries, one executable or symlink per plugin
type; "not built" while missing, or while dist/bin still holds launchers), ``ref`` =
``--ref`` (the reference plugins, /usr/lib/cni). The scale run compares two: the first of
ours, ours-bin asked for (and built) runs as its "ours".

Scenarios (each implementation in turn, the order rotated every run, so a noisy machine
slows all alike; medians):

* host-local ADD+DEL, loopback ADD+DEL, bridge+host-local ipMasq ADD+DEL: plugin processes
  run directly, in a throwaway host namespace (plus their peak RSS);
* chain (conformance/bench_chain.py): bridge+host-local -> portmap with one host port, one
  pod, ADD, CHECK and DEL through libcni (the Go driver of conformance/libcni.py);
* parallel (``--all`` or ``--only parallel``): 32 pods' chain ADDs at once, then 32 DELs;
* scale (``--all``, ``--scale`` or ``--only scale``; conformance/bench_scale.py): chain ADD
  latency as pods accumulate on one bridge, with a plot; the full run is
  ``--scale --pods 10,100,250,500``. ``--scale`` (or ``--only scale`` alone) prints only
  the scale run's own report, as before.

The end is one markdown table (every scenario, each implementation, the ratios ours/ref,
bin/ref, bin/source, and the targets: chain ADD+DEL <= 3x the reference, binaries <= 1.2x
the source per call, the scale run's own), for the README; ``--json`` writes all figures.
Times are whole-process (fork, exec, interpreter start-up, work, exit), as a runtime
experiences them; processes are started from a thread parked in the host namespace
(NetnsThread), so the harness adds ~1 ms of vfork+exec, not a fork of itself. A scenario
that fails is reported in the table and the run goes on (exit status 1). Everything runs in namespaces (named ``cnib-<random>-...``) and
temporary directories made here and removed afterwards, also on error, Ctrl-C and SIGTERM;
no plugin runs in the machine's own namespace. This is a measurement, not a test: nothing
here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# IPAM plugins never enter the namespace, but ADD requires CNI_NETNS to be set.
NETNS_PLACEHOLDER = "/var/run/netns/bench-unused"
NETNS_DIR = "/var/run/netns"
DIST_BIN = os.path.join(ROOT, "dist", "bin")  # `make bin`: the PyInstaller binaries (earlier: the launchers)
DIST_SRC_BIN = os.path.join(ROOT, "dist", "src-bin")  # `make bin`: launchers running the source
LABELS = ("ours", "ours-bin", "ref")
TITLES = {"ours": "ours (source)", "ours-bin": "ours (binaries)", "ref": "reference"}
SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"
TARGET_BIN_VS_SOURCE = 1.2  # a self-contained binary at most 1.2x the launcher, per call
QUICK = ("host-local", "loopback", "bridge", "chain")
EVERYTHING = QUICK + ("parallel", "scale")


class Sample:
    """Wall time (s) and peak RSS (KiB) of one or more plugin processes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.max_rss_kib = 0


class RssMeter:
    """Peak RSS of a child process, measured through ``busybox time``.

    rusage from our own wait4 is useless here: a child's ru_maxrss includes the forking
    parent's memory at exec time (this benchmark's ~14 MB), so every plugin would look the
    same. busybox is static and tiny, so the plugin it forks starts from almost nothing.
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
                                   capture_output=True, text=True)
                reported, actual = int(f.read().split()[-1]), int(p.stdout.strip())
            ratio = reported / actual
            self.scale = 1.0 / min((1, 2, 4, 8), key=lambda k: abs(k - ratio))

    def wrap(self, argv: list[str], out: str) -> list[str]:
        return [self.busybox, "time", "-f", "%M", "-o", out] + argv if self.busybox else argv

    def read(self, out: str) -> int:
        try:
            with open(out) as f:
                return int(int(f.read().split()[-1]) * self.scale)
        except (OSError, ValueError, IndexError):
            return 0


def enter_netns(path: str):
    """A preexec_fn that moves the child into the network namespace at ``path`` before
    exec, so plugins run in a throwaway host namespace without an extra process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    return enter


_enter_netns = enter_netns


class NetnsThread:
    """A thread parked in the network namespace at ``path``: processes it starts are born
    there (a child is cloned from the calling thread, namespaces included).

    The cheap way to start plugins in a throwaway host namespace: a preexec_fn that calls
    setns makes subprocess fork the whole interpreter instead of vfork-ing, ~5.5 ms more
    per process here (measured: /bin/true 0.8 ms from such a thread, 6.5 ms with the
    preexec_fn), which would be counted as the plugin's time. Use :func:`netns_thread`
    (one thread per namespace) and :func:`release_netns_threads` before deleting the
    namespace (a thread inside keeps it, and its links, alive).
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
        with self._cv:
            self._jobs.append(None)
            self._cv.notify()
        self._thread.join(timeout=30)


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


def cleanup_uninterrupted(restore_term, fn, *args) -> None:
    """Run the cleanup ``fn(*args)`` with SIGINT and SIGTERM ignored (a second Ctrl-C must not
    skip it), then restore SIGINT and set SIGTERM back to ``restore_term``."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        fn(*args)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, restore_term)


def exec_plugin(binary: str, command: str, conf: dict, sample: Sample, rss: RssMeter | None = None,
                host_netns: str | None = None, *, ns_thread: bool = False, **env: str) -> bytes:
    """Run one plugin process, adding its wall time (or, with ``rss``, its peak RSS) to ``sample``.

    ``host_netns``: the process runs in that namespace, entered by a preexec_fn, or, with
    ``ns_thread``, started from a thread parked there (:class:`NetnsThread`, without the
    preexec_fn's ~5.5 ms of interpreter fork)."""
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
    p = subprocess.run(argv, input=data, capture_output=True, env=e,
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


class Scenario:
    """One measured operation: ``run(bin_dir, sample, rss)`` does it once; ``key`` is its
    name for ``--only``."""

    def __init__(self, name: str, plugins: list[str], run: Callable[[str, Sample, RssMeter | None], None],
                 setup: Callable[[], None] = lambda: None, teardown: Callable[[], None] = lambda: None,
                 key: str = "") -> None:
        self.key = key or plugins[0]
        self.name = name
        self.plugins = plugins
        self.run = run
        self.setup = setup
        self.teardown = teardown


def host_local_scenario(tmp: str, prefix: str = "") -> Scenario:
    """host-local ADD then DEL of one attachment (dual stack), each implementation with its
    own store that already holds 20 leases, as on a host with a few pods. With ``prefix``,
    the plugin runs in a throwaway host namespace (``prefix``hl) like the others, although
    it touches no network state."""
    confs: dict[str, dict] = {}
    ns = f"{prefix}hl" if prefix else ""
    host = {"host_netns": f"/var/run/netns/{ns}", "ns_thread": True} if ns else {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "host-local")
        if bin_dir not in confs:
            confs[bin_dir] = c = {
                "cniVersion": "1.0.0", "name": "bench-hl", "type": "host-local",
                "ipam": {"type": "host-local", "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp),
                         "ranges": [[{"subnet": "10.77.0.0/16"}], [{"subnet": "fd00:77::/64"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}
            for i in range(20):  # pre-existing leases
                exec_plugin(b, "ADD", c, Sample(), None, CNI_CONTAINERID=f"pod{i}", CNI_NETNS=NETNS_PLACEHOLDER,
                            **host)
        exec_plugin(b, "ADD", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER, **host)
        exec_plugin(b, "DEL", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER, **host)

    return Scenario("host-local ADD+DEL (dual stack, 20 leases in the store)", ["host-local"], run, key="host-local",
                    setup=lambda: ns and subprocess.run(["ip", "netns", "add", ns], check=True),
                    teardown=lambda: ns and (release_netns_threads(f"/var/run/netns/{ns}"),
                                             subprocess.run(["ip", "netns", "delete", ns])))


def bridge_scenario(tmp: str, prefix: str = "", backend: str | None = None) -> Scenario:
    """bridge + host-local ADD then DEL with ipMasq (``backend``, default each implementation's
    own), plugins running in a throwaway host namespace (named ``prefix``... when given)."""
    tag = uuid.uuid4().hex[:6]
    host, ctr = (f"{prefix}bh", f"{prefix}bc") if prefix else (f"bench-h-{tag}", f"bench-c-{tag}")
    host_path, ctr_path = f"/var/run/netns/{host}", f"/var/run/netns/{ctr}"
    confs: dict[str, dict] = {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "bridge")
        if bin_dir not in confs:
            n = len(confs)  # its own bridge and subnet per implementation
            confs[bin_dir] = {"cniVersion": "1.0.0", "name": f"bench-br{n}", "type": "bridge", "bridge": f"bbr{n}{tag}",
                              "isGateway": True, "ipMasq": True,
                              "ipam": {"type": "host-local", "subnet": f"10.124.{n}.0/24",
                                       "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp)}}
            if backend:  # the reference 1.1.1 ignores it
                confs[bin_dir]["ipMasqBackend"] = backend
        for verb in ("ADD", "DEL"):
            exec_plugin(b, verb, confs[bin_dir], s, rss, host_netns=host_path, ns_thread=True, CNI_NETNS=ctr_path)

    def setup() -> None:
        for n in (host, ctr):
            subprocess.run(["ip", "netns", "add", n], check=True)

    def teardown() -> None:
        release_netns_threads(host_path)
        for n in (ctr, host):
            subprocess.run(["ip", "netns", "delete", n])

    return Scenario("bridge+host-local ipMasq ADD+DEL", ["bridge", "host-local"], run, setup, teardown, key="bridge")


def loopback_scenario(prefix: str = "") -> Scenario:
    """loopback ADD then DEL in a throwaway namespace (named ``prefix``lo when given)."""
    ns = f"{prefix}lo" if prefix else f"bench-{uuid.uuid4().hex[:8]}"
    path = f"/var/run/netns/{ns}"
    conf = {"cniVersion": "1.0.0", "name": "bench-lo", "type": "loopback"}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "loopback")
        exec_plugin(b, "ADD", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")
        exec_plugin(b, "DEL", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")

    return Scenario("loopback ADD+DEL", ["loopback"], run, key="loopback",
                    setup=lambda: subprocess.run(["ip", "netns", "add", ns], check=True),
                    teardown=lambda: subprocess.run(["ip", "netns", "delete", ns]))


def rotated(items: list, i: int) -> list:
    """``items`` rotated by ``i``: run i starts with a different implementation each time."""
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def measure(sc: Scenario, impls: list[tuple[str, str]], runs: int, meter: RssMeter, warmup: int = 3) -> dict:
    """Run ``sc`` for every (label, bin_dir) of ``impls`` in turn, ``runs`` times (after
    ``warmup`` each), then a few runs for peak RSS (measured separately: the wrapper would
    add to the times); return the row: medians in ms and peak RSS per label."""
    times: dict[str, list[float]] = {label: [] for label, _ in impls}
    rss = {label: 0 for label, _ in impls}
    sc.setup()
    try:
        for i in range(warmup + runs):
            for label, d in rotated(impls, i):
                s = Sample()
                sc.run(d, s, None)
                if i >= warmup:
                    times[label].append(s.seconds)
        for i in range(3):
            for label, d in rotated(impls, i):
                s = Sample()
                sc.run(d, s, meter)
                rss[label] = max(rss[label], s.max_rss_kib)
    finally:
        sc.teardown()
    return {"key": sc.key, "scenario": sc.name, "unit": "ms", "runs": runs,
            "values": {k: statistics.median(v) * 1000 for k, v in times.items()}, "rss_kib": rss}


# ---- the report --------------------------------------------------------------------------

def _fmt(v: float | None, unit: str, seconds: bool | None = None) -> str:
    """``v`` in ``unit`` ("ms" or "x"); ms as seconds when ``seconds`` (default: v >= 1 s)."""
    if v is None:
        return "—"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v / 1000:.2f} s" if (v >= 1000 if seconds is None else seconds) else f"{v:.1f} ms"


def _ratio(row: dict, num: str, den: str) -> float | None:
    v = row.get("values", {})
    if row.get("unit") != "ms" or v.get(num) is None or not v.get(den):
        return None
    return v[num] / v[den]


def targets_of(row: dict, labels: list[str]) -> list[dict]:
    """The row's targets, evaluated: [{"what", "limit", "value" (None: not measurable),
    "met" (None: not evaluated), "why"}]."""
    out = []
    for t in row.get("targets", []):
        if t["num"] not in labels or (t.get("den") and t["den"] not in labels):
            continue
        v = row["values"]
        if t.get("den"):
            value = v[t["num"]] / v[t["den"]] if v.get(t["num"]) is not None and v.get(t["den"]) else None
        else:
            value = v.get(t["num"])
        out.append({"what": t["what"], "limit": t["limit"], "value": value,
                    "met": None if value is None else value <= t["limit"],
                    "why": "" if value is not None else _absent(row, [t["num"], t.get("den")])})
    if row.get("unit") == "ms" and row.get("key") != "scale" and "ours" in labels and "ours-bin" in labels:
        value = _ratio(row, "ours-bin", "ours")
        out.append({"what": "bin/source", "limit": TARGET_BIN_VS_SOURCE, "value": value,
                    "met": None if value is None else value <= TARGET_BIN_VS_SOURCE,
                    "why": "" if value is not None else _absent(row, ["ours-bin", "ours"])})
    return out


def _absent(row: dict, labels: list) -> str:
    nb = row.get("not_built", {})
    return "not built" if any(label and label in nb for label in labels) else "not measured"


def _target_text(t: dict) -> str:
    what, _, note = t["what"].partition(" (")
    head = f"{what} ≤ {t['limit']:g}x" + (f" ({note}" if note else "")
    if t["met"] is None:
        return f"{head}: {t['why']}"
    digits = 3 if abs(t["value"] - t["limit"]) < 0.005 else 2  # 1.204 is not "1.20x not met"
    return f"{head}: {t['value']:.{digits}f}x {'met' if t['met'] else '**not met**'}"


def markdown(rows: list[dict], labels: list[str], meta: dict, errors: list[dict] = ()) -> str:
    """One table: every row, each implementation, the ratios, RSS and targets."""
    ratio_cols = [(n, d) for n, d in (("ours", "ref"), ("ours-bin", "ref"), ("ours-bin", "ours"))
                  if n in labels and d in labels]
    names = {"ours": "ours", "ours-bin": "bin", "ref": "ref"}
    head = (["scenario"] + [TITLES[l] for l in labels]
            + [f"{names[n]}/{'source' if d == 'ours' else names[d]}" for n, d in ratio_cols]
            + ["peak RSS MB (" + " / ".join(names[l] for l in labels) + ")", "targets"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fails = []  # footnotes, in order of appearance
    for r in rows:
        for why in r.get("failed", {}).values():
            if why not in fails:
                fails.append(why)

    def mark(r: dict, ls) -> str:
        return "".join(SUPERSCRIPTS[fails.index(r["failed"][l]) % len(SUPERSCRIPTS)]
                       for l in ls if l in r.get("failed", {}))

    for r in rows:
        cells = [r["scenario"]]
        secs = any(v >= 1000 for v in r["values"].values() if v is not None)  # one unit per row
        for l in labels:
            if l in r.get("not_built", {}):
                cells.append("not built")
            else:
                cells.append(_fmt(r["values"].get(l), r["unit"], secs)
                             + (f" (fails{mark(r, [l])})" if l in r.get("failed", {}) else ""))
        for n, d in ratio_cols:
            x = _ratio(r, n, d)
            cells.append("—" if x is None else f"{x:.2f}x{mark(r, [n, d])}")
        rss = r.get("rss_kib")
        cells.append(" / ".join(f"{rss[l] / 1024:.1f}" if rss.get(l) else "—" for l in labels) if rss else "—")
        cells.append("; ".join(_target_text(t) for t in targets_of(r, labels)) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{TITLES[l]}: `{meta['dirs'][l]}`"
             + (" (not built)" if l in meta.get("not_built", ()) else
                f" (not built there: {', '.join(meta['missing_plugins'][l])})" if l in meta.get("missing_plugins", {})
                else "") for l in labels]
    for e in errors:
        cells = [e["scenario"], f"**failed**: {e['error'][:400]}"] + [""] * (len(head) - 2)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for i, why in enumerate(fails):
        lines.append(f"{SUPERSCRIPTS[i % len(SUPERSCRIPTS)]} {why}.")
    keys = {r["key"] for r in rows}
    how = []
    if keys & {"host-local", "loopback", "bridge", "chain"}:
        runs = next(r["runs"] for r in rows if r["key"] in ("host-local", "loopback", "bridge", "chain"))
        how.append(f"single-pod rows: medians of {runs} run{'s' if runs != 1 else ''}, implementations alternating")
    if keys & {"host-local", "loopback", "bridge"}:
        how.append("plugin rows: the plugin processes run directly, in a throwaway host namespace")
    if keys & {"chain", "parallel"}:
        how.append("chain rows: bridge (isGateway, ipMasq, host-local) -> portmap (one host port, as "
                   "capability args) through libcni's Go driver (its start-up included), in a throwaway "
                   "host namespace per implementation")
    if "parallel" in keys:
        r = next(r for r in rows if r["key"] == "parallel")
        how.append(f"parallel rows: all pods' driver runs launched at once, wall time until the last exits, "
                   f"medians of {r['runs']} run{'s' if r['runs'] != 1 else ''} (after one warm-up)")
    if "scale" in keys:
        how.append(f"scale rows: conformance/bench_scale.py with {TITLES.get(meta.get('scale_ours'), 'ours')} as its "
                   "ours (pods added one by one, medians per checkpoint)")
    backend = meta.get("backend") or "each implementation's default (ours nftables, reference iptables)"
    lines.append(f"{meta['date']}, {meta['nproc']} CPUs, kernel {meta['kernel']}; `{meta['command']}`; "
                 "whole-process times; " + "; ".join(how) + f"; firewall backend: {backend}. "
                 + "; ".join(notes) + ".")
    return "\n".join(lines)


# ---- chain, parallel and scale rows -------------------------------------------------------

def _not_built_for(impls: list[tuple[str, str]], plugins, unbuilt: set = frozenset()) -> dict[str, list[str]]:
    """{label: plugins missing in its directory} (every plugin for the ``unbuilt`` labels)."""
    out = {}
    for label, d in impls:
        miss = [p for p in plugins if label in unbuilt or not os.access(os.path.join(d, p), os.X_OK)]
        if miss:
            out[label] = miss
    return out


def _chain_setup(opts, impls: list[tuple[str, str]], ns_prefix: str, tmp: str):
    """The ChainImpls (started) of the implementations that have the chain's plugins, and
    {label: missing plugins} of the others; raises DriverBuildError without the driver."""
    from conformance import bench_chain, libcni

    nb = _not_built_for(impls, bench_chain.CHAIN_PLUGINS, opts.not_built)
    driver = libcni.build()
    ims = [bench_chain.ChainImpl(l, d, ns_prefix, tmp, driver, opts.backend) for l, d in impls if l not in nb]
    for im in ims:
        im.start()
    return ims, nb


def chain_rows(opts, impls: list[tuple[str, str]], ns_prefix: str, tmp: str, progress) -> list[dict]:
    """Chain ADD, CHECK, DEL and ADD+DEL of one pod through libcni (conformance/bench_chain.py)."""
    from conformance import bench_chain

    ims, nb = _chain_setup(opts, impls, ns_prefix, tmp)
    if not ims:
        return []
    labels = [l for l, _ in impls]
    progress(f"chain single pod through libcni, {opts.runs} runs ...")
    res = bench_chain.measure_single(ims, opts.runs, progress=progress)
    targets = [{"what": f"{'bin' if l == 'ours-bin' else l}/ref", "num": l, "den": "ref",
                "limit": bench_chain.TARGET_CHAIN_VS_REF} for l in ("ours", "ours-bin") if l in labels]
    rows = []
    for op, name in (("add", "ADD"), ("check", "CHECK"), ("del", "DEL"), ("add_del", "ADD+DEL")):
        rows.append({"key": "chain", "scenario": f"chain {name}, 1 pod (libcni)", "unit": "ms", "runs": opts.runs,
                     "not_built": nb, "values": {l: r[op] for l, r in res.items()},
                     "samples_ms": {l: r["samples"][op] for l, r in res.items()},
                     "failed": {l: r["failed"][op] for l, r in res.items() if op in r["failed"]},
                     "targets": targets if op == "add_del" else []})
        progress("  " + _progress_line(rows[-1], labels))
    return rows


def parallel_rows(opts, impls: list[tuple[str, str]], ns_prefix: str, tmp: str, running: list,
                  progress) -> list[dict]:
    """N parallel chain ADDs, then N DELs, through libcni (conformance/bench_chain.py)."""
    from conformance import bench_chain

    ims, nb = _chain_setup(opts, impls, ns_prefix, tmp)
    if not ims:
        return []
    labels = [l for l, _ in impls]
    n = opts.parallel_pods
    progress(f"{n} parallel chain ADDs, then DELs, through libcni, {opts.parallel_runs} runs ...")
    res = bench_chain.measure_parallel(ims, n, opts.parallel_runs, running, progress=progress)
    rows = []
    for op, name in (("add", "ADDs"), ("del", "DELs")):
        rows.append({"key": "parallel", "scenario": f"{n} parallel chain {name}, one bridge (libcni)",
                     "unit": "ms", "runs": opts.parallel_runs, "not_built": nb,
                     "values": {l: r[op] for l, r in res.items()},
                     "samples_ms": {l: r["samples"][op] for l, r in res.items()},
                     "failed": {l: r["failed"][op] for l, r in res.items() if op in r["failed"]}, "targets": []})
        progress("  " + _progress_line(rows[-1], labels))
    return rows


def _progress_line(r: dict, labels: list[str]) -> str:
    parts = []
    for l in labels:
        parts.append(f"{l} " + ("not built" if l in r.get("not_built", {}) else _fmt(r["values"].get(l), r["unit"])))
    x = _ratio(r, "ours", "ref")
    return f"{r['scenario']}: " + ", ".join(parts) + (f" (ours/ref {x:.2f}x)" if x else "")


def scale_opts(opts) -> argparse.Namespace | None:
    """The options bench_scale.run understands (it knows ``ours`` and ``ref``): the first
    of ours, ours-bin that is asked for (and built) runs as its "ours"."""
    o = copy.copy(opts)
    wanted = ["ours", "ref"] if opts.impls is None and not opts.all else opts.impl_list
    asked = [l for l in ("ours", "ours-bin") if l in wanted]
    ours = [l for l in asked if l not in opts.not_built] or asked  # none built: bench_scale says so
    scale_impls = (["ours"] if ours else []) + (["ref"] if "ref" in wanted else [])
    if not scale_impls:
        return None
    o.scale_ours_label = ours[0] if ours else "ours"
    if ours:
        o.ours = opts.dirs[ours[0]]
    o.impls = ",".join(scale_impls)
    return o


def scale_rows(data: dict, label: str) -> list[dict]:
    """Rows of the combined report from bench_scale's JSON (``label``: who ran as its ours)."""
    from conformance import bench_scale

    imp = {(label if k == "ours" else k): v for k, v in data["impls"].items()}
    rows = []
    cps = {k: {c["pods"]: c for c in v["checkpoints"]} for k, v in imp.items()}
    pods = sorted(next(iter(cps.values())).keys()) if cps else []
    for n in pods:
        k = next(iter(cps.values()))[n]["window"]
        rows.append({"key": "scale", "scenario": f"scale: chain ADD at {n} pods on one bridge (median of pods "
                     f"{n - k + 1}..{n})", "unit": "ms", "values": {l: c[n]["last_ms"] for l, c in cps.items()},
                     "targets": [{"what": f"{'bin' if label == 'ours-bin' else label}/ref"
                                  + ("" if n == 500 else " (target set for 500 pods)"), "num": label, "den": "ref",
                                  "limit": bench_scale.TARGET_VS_REF}] if n == pods[-1] and len(pods) > 1 else []})
    if len(pods) > 1:
        lo, hi = pods[0], pods[-1]
        rows.append({"key": "scale", "scenario": f"scale: chain ADD growth, {hi} pods / {lo} pods", "unit": "x",
                     "values": {l: c[hi]["last_ms"] / c[lo]["last_ms"] for l, c in cps.items()},
                     "targets": [{"what": f"{'bin' if label == 'ours-bin' else label} growth"
                                  + ("" if (lo, hi) == (10, 500) else " (target set for 10 -> 500 pods)"),
                                  "num": label, "limit": bench_scale.TARGET_GROWTH}]})
    if pods:
        rows.append({"key": "scale", "scenario": f"scale: chain DEL, median over all {pods[-1]} pods", "unit": "ms",
                     "values": {l: statistics.median(v["del_ms"]) for l, v in imp.items()}, "targets": []})
    return rows


# ---- cleanup --------------------------------------------------------------------------------

def delete_netns(prefix: str) -> None:
    """Delete every named namespace starting with ``prefix`` (pods before their host
    namespaces: the longer names first), after ending the threads parked in them."""
    release_netns_threads(os.path.join(NETNS_DIR, prefix))
    try:
        names = [n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        names = []
    for n in sorted(names, key=lambda x: (-len(x), x)):
        subprocess.run(["ip", "netns", "delete", n], capture_output=True)


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


# ---- main -----------------------------------------------------------------------------------

def _holds_launchers(d: str) -> bool:
    """True if ``d``'s plugins are scripts (build/launchers.py's), not binaries."""
    for name in ("bridge", "host-local", "loopback", "portmap"):
        try:
            with open(os.path.join(d, name), "rb") as f:
                return f.read(2) == b"#!"
        except OSError:
            continue
    return False


def resolve_dirs(opts) -> None:
    """Defaults of --ours and --ours-bin for the layout at hand: `make bin` puts the
    launchers in dist/src-bin and the PyInstaller binaries in dist/bin (before issue #6,
    dist/bin held the launchers). A default dist/bin holding launchers is not the binaries:
    ours-bin is then "not built" (``opts.launchers_only``)."""
    opts.launchers_only = set()
    if opts.ours is None:
        opts.ours = DIST_SRC_BIN if os.path.isdir(DIST_SRC_BIN) or not _holds_launchers(DIST_BIN) else DIST_BIN
    if opts.ours_bin is None:
        opts.ours_bin = DIST_BIN
        if _holds_launchers(DIST_BIN):
            opts.launchers_only.add("ours-bin")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m conformance.bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:8]))
    ap.add_argument("--ours", help="ours, source: launchers running the source (default dist/src-bin, "
                    "or dist/bin while that holds the launchers)")
    ap.add_argument("--ours-bin", help="ours, self-contained binaries: a directory with one executable (or "
                    "symlink) per plugin type (default dist/bin unless it holds launchers; 'not built' while missing)")
    ap.add_argument("--ref", default="/usr/lib/cni", help="the reference plugins (default /usr/lib/cni)")
    ap.add_argument("--impls", default=None,
                    help="comma-separated subset of ours,ours-bin,ref (default all three; "
                         "for --scale: ours,ref)")
    ap.add_argument("--runs", type=int, default=40, help="runs per single-pod scenario (default 40)")
    ap.add_argument("--only", default="", help="comma-separated scenarios: host-local, loopback, bridge, chain "
                    "(also: portmap), parallel, scale (default: the first four)")
    ap.add_argument("--all", action="store_true", help="every scenario: + parallel and the scale run (with its PNG)")
    ap.add_argument("--parallel-pods", type=int, default=32, help="pods in the parallel scenario (default 32)")
    ap.add_argument("--parallel-runs", type=int, default=5, help="runs of the parallel scenario (default 5)")
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--report", metavar="MD", help="also write the markdown report to this file "
                    "(it is always printed)")
    sc = ap.add_argument_group("scale run (--scale or --only scale; see conformance/bench_scale.py)")
    sc.add_argument("--scale", action="store_true",
                    help="only the scale run: chain ADD/DEL latency as pods accumulate on one bridge")
    sc.add_argument("--pods", default="10,100",
                    help="checkpoints, comma-separated (default 10,100; the full run: 10,100,250,500)")
    sc.add_argument("--plot", default="bench-scale.png",
                    help="PNG to write (default bench-scale.png in the cwd; 'none': no plot; needs matplotlib)")
    sc.add_argument("--backend", choices=("nftables", "iptables"),
                    help="firewall backend for bridge ipMasq and portmap (bridge, chain, parallel and scale; default: "
                         "each implementation's own; the reference 1.1.1 ignores it and uses iptables)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    words = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m conformance.bench"] + list(words))
    only = [w.strip() for w in opts.only.split(",") if w.strip()]
    resolve_dirs(opts)
    opts.dirs = {"ours": opts.ours, "ours-bin": opts.ours_bin, "ref": opts.ref}
    opts.impl_list = [w.strip() for w in (opts.impls or ",".join(LABELS)).split(",") if w.strip()]
    if not opts.impl_list or any(w not in LABELS for w in opts.impl_list):
        print("--impls: a comma-separated subset of ours,ours-bin,ref", file=sys.stderr)
        return 2
    impls = [(l, opts.dirs[l]) for l in LABELS if l in opts.impl_list]
    opts.not_built = {l for l, d in impls if not os.path.isdir(d)} | opts.launchers_only

    if (opts.scale or only == ["scale"]) and not opts.all:  # the scale run alone, its own report
        from conformance import bench_scale

        o = scale_opts(opts)
        if o is None:
            print("nothing to run", file=sys.stderr)
            return 1
        return bench_scale.run(o, command)

    if opts.all:
        which = set(EVERYTHING)
    elif only:
        only = ["chain" if w == "portmap" else w for w in only]
        unknown = [w for w in only if w not in EVERYTHING]
        if unknown:
            print(f"--only: unknown {', '.join(unknown)} (scenarios: {', '.join(EVERYTHING)})", file=sys.stderr)
            return 2
        which = set(only)
    else:
        which = set(QUICK)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    tag = uuid.uuid4().hex[:6]
    prefix = f"cnib-{tag}-"
    tmp = tempfile.mkdtemp(prefix="cni-bench-")
    running: list = []
    rows: list[dict] = []
    errors: list[dict] = []
    scale_data = None
    scale_label = [None]
    labels = [l for l, _ in impls]
    old_term = signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    status = 0
    try:
        singles = [host_local_scenario(tmp, prefix), loopback_scenario(prefix), bridge_scenario(tmp, prefix, opts.backend)]
        meter = RssMeter()

        def single(sc: Scenario) -> list[dict]:
            nb = _not_built_for(impls, sc.plugins, opts.not_built)
            built = [(l, d) for l, d in impls if l not in nb]
            if not built:
                progress(f"{sc.name}: skipped, not built in any of {', '.join(d for _, d in impls)}")
                return []
            progress(f"{sc.name}, {opts.runs} runs ...")
            r = measure(sc, built, opts.runs, meter)
            r["not_built"] = nb
            progress("  " + _progress_line(r, labels))
            return [r]

        def scale() -> list[dict]:
            nonlocal scale_data
            from conformance import bench_scale

            o = scale_opts(opts)
            if o is None:
                progress("scale run skipped: nothing built to run")
                return []
            o.json = os.path.join(tmp, "scale.json")
            scale_label[0] = o.scale_ours_label
            progress(f"scale run (pods {opts.pods}; {o.scale_ours_label} as ours) ...")
            rc = bench_scale.run(o, command)
            if rc == 130:
                raise KeyboardInterrupt
            if rc != 0 or not os.path.exists(o.json):
                raise RuntimeError(f"the scale run failed (exit {rc}; its output above says why)")
            with open(o.json) as f:
                scale_data = json.load(f)
            return scale_rows(scale_data, o.scale_ours_label)

        steps = [(sc.key, sc.name, lambda sc=sc: single(sc)) for sc in singles]
        steps += [("chain", "chain, 1 pod (libcni)", lambda: chain_rows(opts, impls, f"{prefix}c-", tmp, progress)),
                  ("parallel", f"{opts.parallel_pods} parallel chains (libcni)",
                   lambda: parallel_rows(opts, impls, f"{prefix}p-", tmp, running, progress)),
                  ("scale", "scale run", scale)]
        for key, name, step in steps:
            if key not in which:
                continue
            try:
                rows.extend(step())
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                msg = " ".join(str(e).split())
                progress(f"{name}: failed: {msg}")
                errors.append({"key": key, "scenario": name, "error": msg})
                status = 1
            finally:
                if key in ("chain", "parallel"):  # their namespaces go now, not at the end
                    delete_netns(f"{prefix}{key[0]}-")
    except KeyboardInterrupt:
        progress("\ninterrupted; cleaning up")
        status = 130
    finally:
        cleanup_uninterrupted(old_term, cleanup, prefix, running, tmp)
    if status == 130:
        return status

    partly = {l: sorted({p for r in rows for p in r.get("not_built", {}).get(l, [])})
              for l in labels if l not in opts.not_built}
    partly = {l: ps for l, ps in partly.items() if ps}
    meta = {"command": command, "date": datetime.date.today().isoformat(), "nproc": os.cpu_count(),
            "kernel": os.uname().release, "runs": opts.runs, "dirs": opts.dirs,
            "not_built": sorted(opts.not_built), "missing_plugins": partly,
            "backend": opts.backend, "scale_ours": scale_label[0],
            "elapsed_s": round(time.monotonic() - started, 1)}
    md = markdown(rows, labels, meta, errors)
    print()
    print(md)
    if opts.report:
        with open(opts.report, "w") as f:
            f.write(md + "\n")
    if opts.json:
        for r in rows:
            r["targets_evaluated"] = targets_of(r, labels)
        with open(opts.json, "w") as f:
            json.dump({**meta, "impls": labels, "rows": rows, "errors": errors, "markdown": md, "scale": scale_data},
                      f, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main())
