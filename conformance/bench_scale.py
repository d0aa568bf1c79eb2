"""Scale run of the benchmark: chain ADD latency as pods accumulate on one bridge.

    python -m conformance.bench --scale [--pods 10,100] [--impls ours,ref] [--plot bench-scale.png]
    python -m conformance.bench --only scale ...           (the same)
    python -m conformance.bench --scale --pods 10,100,250,500    (the full run: 10-15 min)

For each implementation (ours = dist/bin, ref = /usr/lib/cni) one throwaway host network
namespace holds one bridge; pods are added one after another, each in its own container
namespace, through the chain a runtime would run with libcni:

    bridge (isGateway, ipMasq, host-local /16 in a temp dataDir)  ->  portmap (prevResult,
    runtimeConfig.portMappings: hostPort 20000+i -> 80/tcp)

The chain ADD time of every pod is recorded (whole processes: bridge, which execs
host-local, then portmap). The implementations alternate pod by pod (ours pod i, ref pod i,
ref pod i+1, ours pod i+1, ...) so machine noise hits both alike. For each checkpoint N the
report gives the median chain ADD over the first pods (1..k) and over the last pods before
N (N-k+1..N), k = 10% of N but at least 5 (at N=10 one pod is not a median), their ratio, and
ours/ref. Then every pod is removed (chain DEL in reverse, libcni's order: portmap, bridge,
both with the cached result as prevResult), timed too.

Everything lives in namespaces named ``cnibs-<random>-...`` and a temp directory, removed at
the end, on error and on Ctrl-C/SIGTERM; firewall state lives in the throwaway host
namespaces. No plugin runs in the machine's own namespace. A measurement, not a test.
"""

from __future__ import annotations

import datetime
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

from conformance.bench import Sample, cleanup_uninterrupted, exec_plugin

NETNS_DIR = "/var/run/netns"
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


def rolling_median(ys: list[float], w: int) -> list[float]:
    h = w // 2
    return [statistics.median(ys[max(0, i - h):i + h + 1]) for i in range(len(ys))]


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
        return [p for p in CHAIN + ("host-local",) if not os.access(os.path.join(self.bin_dir, p), os.X_OK)]

    def pod_ns(self, i: int) -> str:
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
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)
    for n in names:
        if n in hosts:
            subprocess.run(["ip", "-n", n, "link", "delete", BRIDGE], capture_output=True)
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _plot(impls: list[Impl], pods: list[int], path: str, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("plot skipped: matplotlib is not installed (`make bench` installs it, or "
              "`.venv/bin/pip install -e '.[bench]'`)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"ours": "tab:blue", "ref": "tab:orange"}
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    for im in impls:
        xs = list(range(1, len(im.add_ms) + 1))
        c = colours.get(im.name)
        ax.scatter(xs, im.add_ms, s=9, alpha=0.3, color=c, linewidths=0)
        w = max(5, len(xs) // 25) | 1
        ax.plot(xs, rolling_median(im.add_ms, w), color=c, linewidth=2,
                label=f"{im.name} ({im.bin_dir}), rolling median of {w}")
    for n in pods:
        ax.axvline(n, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("pods on the bridge (index of the pod being added)")
    ax.set_ylabel("chain ADD latency, ms (bridge+host-local, then portmap)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {os.path.abspath(path)}")


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run(opts, command: str) -> int:
    """The scale run; ``opts`` carries ours, ref, pods, impls, plot, backend, json."""
    try:
        pods = sorted({int(x) for x in opts.pods.split(",") if x.strip()})
    except ValueError:
        print(f"--pods: comma-separated pod counts, not {opts.pods!r}", file=sys.stderr)
        return 2
    if not pods or pods[0] < 1 or pods[-1] > MAX_PODS:
        print(f"--pods: counts between 1 and {MAX_PODS}", file=sys.stderr)
        return 2
    total = pods[-1]
    dirs = {"ours": opts.ours, "ref": opts.ref}
    wanted = [x.strip() for x in opts.impls.split(",") if x.strip()]
    if not wanted or any(w not in dirs for w in wanted):
        print("--impls: a comma-separated subset of ours,ref", file=sys.stderr)
        return 2

    tag = uuid.uuid4().hex[:6]
    prefix = f"cnibs-{tag}-"
    tmp = tempfile.mkdtemp(prefix="cni-bench-scale-")
    impls: list[Impl] = []
    not_built: dict[str, list[str]] = {}
    for w in wanted:
        im = Impl(w, dirs[w], prefix, tmp, opts.backend)
        if im.missing():
            not_built[w] = im.missing()
        else:
            impls.append(im)
    for w, miss in not_built.items():
        print(f"{w}: not built ({', '.join(miss)} missing in {dirs[w]}); skipped")
    if not impls:
        shutil.rmtree(tmp, ignore_errors=True)
        print("nothing to run")
        return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    interrupted = False
    failed: Exception | None = None
    try:
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
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; cleaning up", file=sys.stderr)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        failed = e
        print(f"\nfailed: {e}; cleaning up", file=sys.stderr)
    finally:
        cleanup_uninterrupted(old_term, _cleanup, prefix, impls, tmp)
    elapsed = time.monotonic() - started
    if interrupted:
        return 130
    if failed:
        return 1

    by = {im.name: im for im in impls}
    rows = {im.name: [im.checkpoint(n) for n in pods] for im in impls}
    print()
    print("chain ADD (bridge+host-local -> portmap), ms; first = median over pods 1..k, "
          "last = median over pods N-k+1..N, k = max(5, 10% of N)")
    print(f"{'impl':<5} {'pods N':>6} {'k':>4} {'first ms':>9} {'last ms':>9} {'last/first':>10} "
          f"{'ours/ref':>9}")
    for im in impls:
        for r in rows[im.name]:
            vs = ""
            if im.name == "ours" and "ref" in by:
                ref_last = next(x for x in rows["ref"] if x["pods"] == r["pods"])["last_ms"]
                r["ours_over_ref"] = r["last_ms"] / ref_last
                vs = f"{r['ours_over_ref']:.2f}x"
            print(f"{im.name:<5} {r['pods']:>6} {r['window']:>4} {r['first_ms']:>9.1f} {r['last_ms']:>9.1f} "
                  f"{r['growth']:>9.2f}x {vs:>9}")
    print()
    print("chain DEL (portmap, then bridge+host-local), median over all pods: " + ", ".join(
        f"{im.name} {statistics.median(im.del_ms):.1f} ms" for im in impls)
        + (f"; ours/ref {statistics.median(by['ours'].del_ms) / statistics.median(by['ref'].del_ms):.2f}x"
           if len(by) == 2 else ""))

    lo, hi = pods[0], pods[-1]
    print()
    print(f"targets (defined for 10 and 500 pods; evaluated here at {lo} and {hi}):")
    if "ours" in by:
        a, b = rows["ours"][0]["last_ms"], rows["ours"][-1]["last_ms"]
        if lo == hi:
            print(f"  ours growth: not evaluated (one checkpoint; give two, e.g. --pods 10,{hi})")
        else:
            print(f"  ours at {hi} / ours at {lo}: {b:.1f} / {a:.1f} ms = {b / a:.2f}x "
                  f"(target <= {TARGET_GROWTH}x) {_verdict(b / a <= TARGET_GROWTH)}")
        if "ref" in by:
            r = rows["ref"][-1]["last_ms"]
            print(f"  ours at {hi} / ref at {hi}: {b:.1f} / {r:.1f} ms = {b / r:.2f}x "
                  f"(target <= {TARGET_VS_REF}x) {_verdict(b / r <= TARGET_VS_REF)}")
        else:
            print("  ours vs ref: not evaluated (ref not in --impls)")
    else:
        why = "not built" if "ours" in not_built else "not in --impls"
        print(f"  not evaluated: ours {why}")
    backends = opts.backend or ("each implementation's default "
                                "(ours: nftables if nft works; ref 1.1.1: iptables)")
    print(f"(firewall backend: {backends}; {len(impls)} x {total} pods, alternating; "
          f"run took {elapsed:.0f} s; ours={opts.ours}, ref={opts.ref})")

    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"command": command, "elapsed_s": elapsed, "not_built": not_built,
                       "impls": {im.name: {"bin_dir": im.bin_dir, "checkpoints": rows[im.name],
                                           "add_ms": im.add_ms, "del_ms": im.del_ms} for im in impls}},
                      f, indent=2)
    if opts.plot and opts.plot.lower() != "none":
        day = datetime.date.today().isoformat()
        title = f"CNI chain ADD latency vs pods on one bridge — {day}\n{command}"
        _plot(impls, pods, opts.plot, title)
    return 0


if __name__ == "__main__":
    from conformance.bench import main

    sys.exit(main(["--scale"] + sys.argv[1:]))
