"""Scale run of the benchmark: chain ADD latency as pods accumulate on one bridge.

    python -m conformance.bench --scale [--pods 10,100] [--impls ours,ref] [--plot bench-scale.png]
    python -m conformance.bench --only scale ...           (the same)
    python -m conformance.bench --scale --pods 10,100,250,500    (the full run)

For each implementation (ours, ref) one throwaway host network namespace holds one bridge;
pods are added one after another, each in its own container namespace, through the chain a
runtime would run with libcni:

    bridge (isGateway, ipMasq, host-local /16 in a temp dataDir)  ->  portmap (prevResult,
    runtimeConfig.portMappings: hostPort 20000+i -> 80/tcp)

The chain ADD time of every pod is recorded (whole processes: bridge, which execs
host-local, then portmap). The implementations alternate pod by pod (ours pod i, ref pod i,
ref pod i+1, ours pod i+1, ...) so machine noise hits both alike. For each checkpoint N the
report gives the median chain ADD over the first pods (1..k) and over the last pods before
N (N-k+1..N), k = 10% of N but at least 5 (at N=10 one pod is not a median), their ratio, and
ours/ref. Then every pod is removed (chain DEL in reverse, libcni's order: portmap, bridge,
both with the cached result as prevResult), timed too.

:func:`run` measures and returns the figures (the text, JSON and plot are
``conformance.bench.report``'s); :func:`scale_rows` turns them into rows of the combined
report. Everything lives in namespaces named ``cnibs-<random>-...`` and a temp directory,
removed at the end, on error and on Ctrl-C/SIGTERM; firewall state lives in the throwaway
host namespaces. No plugin runs in the machine's own namespace. A measurement, not a test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from conformance import runs
from conformance.bench.proc import NETNS_DIR, Sample, cleanup_uninterrupted, exec_plugin

SUBNET = "10.231.0.0/16"  # /16: room for the 1000-pod ceiling (bridge ports max out at 1024)
HOST_PORT_BASE = 20000
MAX_PODS = 1000
BRIDGE = "cnibs0"
CHAIN = ("bridge", "portmap")  # host-local is exec'd by bridge
TARGET_GROWTH = 1.3  # ours at the largest N within 1.3x of ours at the smallest N (500 vs 10)
TARGET_VS_REF = 0.5  # ours at the largest N at most half the reference's


def window(n: int) -> int:
    """How many pods the first/last medians of checkpoint ``n`` cover."""
    return min(n, max(5, math.ceil(n / 10)))


def checkpoints(text: str) -> list[int]:
    """The sorted pod counts of ``--pods`` (comma-separated); ValueError, with the message
    for the user, unless they are numbers between 1 and MAX_PODS."""
    try:
        pods = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--pods: comma-separated pod counts, not {text!r}") from None
    if not pods or pods[0] < 1 or pods[-1] > MAX_PODS:
        raise ValueError(f"--pods: counts between 1 and {MAX_PODS}")
    return pods


class Impl:
    """One implementation's run: its host namespace, config, and per-pod results."""

    def __init__(self, name: str, bin_dir: str, prefix: str, tmp: str, backend: str | None) -> None:
        self.name = name
        self.bin_dir = bin_dir
        self.host_ns = f"{prefix}{name}"
        self.host_path = os.path.join(NETNS_DIR, self.host_ns)
        self.pod_prefix = f"{prefix}{name}-p"
        bridge = {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
                  "ipam": {"type": "host-local", "subnet": SUBNET,
                           "dataDir": tempfile.mkdtemp(prefix=f"store-{name}-", dir=tmp)}}
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        if backend:  # keys the reference 1.1.1 does not know (and ignores)
            bridge["ipMasqBackend"] = backend
            portmap["backend"] = backend
        self.plugins = [bridge, portmap]
        self.results: dict[int, dict] = {}
        self.add_ms: list[float] = []
        self.del_ms: list[float] = []

    def missing(self) -> list[str]:
        """The chain's plugins (host-local included) that are not executable in ``bin_dir``."""
        return [p for p in CHAIN + ("host-local",) if not os.access(os.path.join(self.bin_dir, p), os.X_OK)]

    def pod_ns(self, i: int) -> str:
        """The name of pod ``i``'s container namespace."""
        return f"{self.pod_prefix}{i}"

    def _conf(self, plugin: dict, i: int, prev: dict | None) -> dict:
        """The config libcni hands one plugin of the list: the list's name and cniVersion,
        runtimeConfig for the capabilities it declares, the previous result."""
        c = dict(plugin, cniVersion="1.0.0", name="bench-scale")
        if plugin.get("capabilities", {}).get("portMappings"):
            c["runtimeConfig"] = {"portMappings": [
                {"hostPort": HOST_PORT_BASE + i, "containerPort": 80, "protocol": "tcp"}]}
        if prev is not None:
            c["prevResult"] = prev
        return c

    def _env(self, i: int) -> dict:
        return {"CNI_CONTAINERID": f"bench-scale-{i}", "CNI_NETNS": os.path.join(NETNS_DIR, self.pod_ns(i)),
                "CNI_IFNAME": "eth0"}

    def add(self, i: int) -> float:
        """Chain ADD of pod ``i`` (its namespace made first, untimed); returns ms."""
        subprocess.run(["ip", "netns", "add", self.pod_ns(i)], check=True)
        s = Sample()
        prev = None
        for plugin in self.plugins:
            out = exec_plugin(os.path.join(self.bin_dir, plugin["type"]), "ADD", self._conf(plugin, i, prev),
                              s, host_netns=self.host_path, **self._env(i))
            prev = json.loads(out)
        self.results[i] = prev
        ms = s.seconds * 1000
        self.add_ms.append(ms)
        return ms

    def delete(self, i: int) -> float:
        """Chain DEL of pod ``i`` (reverse order, cached result as prevResult), then its
        namespace (untimed); returns ms."""
        s = Sample()
        for plugin in reversed(self.plugins):
            exec_plugin(os.path.join(self.bin_dir, plugin["type"]), "DEL",
                        self._conf(plugin, i, self.results[i]), s, host_netns=self.host_path, **self._env(i))
        del self.results[i]
        subprocess.run(["ip", "netns", "delete", self.pod_ns(i)], check=True)
        ms = s.seconds * 1000
        self.del_ms.append(ms)
        return ms

    def checkpoint(self, n: int) -> dict:
        """Medians of the first and the last ``window(n)`` chain ADDs before pod ``n``."""
        k = window(n)
        first = statistics.median(self.add_ms[:k])
        last = statistics.median(self.add_ms[n - k:n])
        return {"pods": n, "window": k, "first_ms": first, "last_ms": last, "growth": last / first}


def _cleanup(prefix: str, impls: list[Impl], tmp: str) -> None:
    """Remove every namespace named with this run's prefix (pods first, so their veths go
    with them), the bridges, and the temp directory. Safe to run more than once."""
    try:
        names = sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        names = []
    hosts = {im.host_ns for im in impls}
    for n in names:
        if n not in hosts:
            subprocess.run(["ip", "netns", "delete", n], capture_output=True, check=False)
    for n in names:
        if n in hosts:
            subprocess.run(["ip", "-n", n, "link", "delete", BRIDGE], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "delete", n], capture_output=True, check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def _add_and_remove(impls: list[Impl], total: int, started: float) -> None:
    """Add ``total`` pods per implementation, alternating pod by pod (progress on stderr),
    then remove them all in reverse."""
    for im in impls:
        subprocess.run(["ip", "netns", "add", im.host_ns], check=True)
        subprocess.run(["ip", "-n", im.host_ns, "link", "set", "lo", "up"], check=True)
    step = max(1, total // 10)
    names = ", ".join(im.name for im in impls)
    print(f"adding {total} pods per implementation ({names}, alternating) ...",
          file=sys.stderr, flush=True)
    for i in range(total):
        for im in (impls if i % 2 == 0 else impls[::-1]):
            im.add(i)
        if (i + 1) % step == 0 or i + 1 == total:
            print(f"  {i + 1:>4}/{total} pods  " + "  ".join(
                f"{im.name} {statistics.median(im.add_ms[-step:]):.1f} ms" for im in impls)
                + f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    print(f"removing {total} pods ...", file=sys.stderr, flush=True)
    for n, i in enumerate(reversed(range(total))):
        for im in (impls if n % 2 == 0 else impls[::-1]):
            im.delete(i)


def run(pods: list[int], impls: list[tuple[str, str]], backend: str | None) -> tuple[int, dict | None]:
    """The scale run up to the checkpoints of ``pods`` for ``impls`` ((name, bin_dir), name
    ``ours`` or ``ref``); returns (0, figures) or (exit status, None): 1 when nothing could
    run or it failed, 130 when interrupted (Ctrl-C, SIGTERM).

    The figures: {"elapsed_s", "not_built": {name: missing plugins}, "impls": {name:
    {"bin_dir", "checkpoints" (each with "ours_over_ref" for ours when ref ran too),
    "add_ms", "del_ms"}}}."""
    total = pods[-1]
    prefix = f"cnibs-{runs.tag() or uuid.uuid4().hex[:6]}-"  # the run's tag: swept if the bench is killed
    tmp = runs.mkdtemp(prefix="cni-bench-scale-")
    ran: list[Impl] = []
    not_built: dict[str, list[str]] = {}
    for name, bin_dir in impls:
        im = Impl(name, bin_dir, prefix, tmp, backend)
        if im.missing():
            not_built[name] = im.missing()
        else:
            ran.append(im)
    for name, miss in not_built.items():
        print(f"{name}: not built ({', '.join(miss)} missing in {dict(impls)[name]}); skipped")
    if not ran:
        shutil.rmtree(tmp, ignore_errors=True)
        print("nothing to run")
        return 1, None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)  # also when run without conformance.runs
    started = time.monotonic()
    try:
        _add_and_remove(ran, total, started)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130, None
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"\nfailed: {e}; cleaning up", file=sys.stderr)
        return 1, None
    finally:
        cleanup_uninterrupted(old_term, _cleanup, prefix, ran, tmp)
    elapsed = time.monotonic() - started

    rows = {im.name: [im.checkpoint(n) for n in pods] for im in ran}
    if "ours" in rows and "ref" in rows:
        for r, ref in zip(rows["ours"], rows["ref"], strict=True):
            r["ours_over_ref"] = r["last_ms"] / ref["last_ms"]
    return 0, {"elapsed_s": elapsed, "not_built": not_built,
               "impls": {im.name: {"bin_dir": im.bin_dir, "checkpoints": rows[im.name],
                                   "add_ms": im.add_ms, "del_ms": im.del_ms} for im in ran}}


def scale_rows(data: dict, label: str) -> list[dict]:
    """Rows of the combined report from the scale run's figures (``label``: who ran as its ours)."""
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
                                  "limit": TARGET_VS_REF}] if n == pods[-1] and len(pods) > 1 else []})
    if len(pods) > 1:
        lo, hi = pods[0], pods[-1]
        rows.append({"key": "scale", "scenario": f"scale: chain ADD growth, {hi} pods / {lo} pods", "unit": "x",
                     "values": {l: c[hi]["last_ms"] / c[lo]["last_ms"] for l, c in cps.items()},
                     "targets": [{"what": f"{'bin' if label == 'ours-bin' else label} growth"
                                  + ("" if (lo, hi) == (10, 500) else " (target set for 10 -> 500 pods)"),
                                  "num": label, "limit": TARGET_GROWTH}]})
    if pods:
        rows.append({"key": "scale", "scenario": f"scale: chain DEL, median over all {pods[-1]} pods", "unit": "ms",
                     "values": {l: statistics.median(v["del_ms"]) for l, v in imp.items()}, "targets": []})
    return rows
