"""Benchmark: our plugins against the reference ones, whole process, alternating in one run.

    python -m conformance.bench [--runs N] [--ours DIR] [--ref DIR] [--only NAME,...]
    python -m conformance.bench --scale [--pods 10,100] [--impls ours,ref] [--plot PNG]

The second form (also ``--only scale``) is the scale run of conformance/bench_scale.py:
chain ADD latency (bridge+host-local -> portmap) as pods accumulate on one bridge, with a
plot; the full run is ``--scale --pods 10,100,250,500``.

Each scenario runs ours and the reference's alternately (ours, ref, ours, ref, ...) so a
noisy machine slows both alike, and reports medians, the ratio ours/ref and the peak RSS
of the plugin processes. Times are whole-process (fork, exec, interpreter start-up,
work, exit), as a runtime experiences them. Everything runs in namespaces and temporary
directories made here and removed afterwards. This is a measurement, not a test: nothing
here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# IPAM plugins never enter the namespace, but ADD requires CNI_NETNS to be set.
NETNS_PLACEHOLDER = "/var/run/netns/bench-unused"


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


def _enter_netns(path: str):
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


def exec_plugin(binary: str, command: str, conf: dict, sample: Sample, rss: RssMeter | None = None,
                host_netns: str | None = None, **env: str) -> bytes:
    """Run one plugin process, adding its wall time (or, with ``rss``, its peak RSS) to ``sample``."""
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
                       preexec_fn=_enter_netns(host_netns) if host_netns else None)
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
    """One measured operation: ``run(bin_dir, sample, rss)`` does it once."""

    def __init__(self, name: str, plugins: list[str], run: Callable[[str, Sample, RssMeter | None], None],
                 setup: Callable[[], None] = lambda: None, teardown: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.plugins = plugins
        self.run = run
        self.setup = setup
        self.teardown = teardown


def host_local_scenario(tmp: str) -> Scenario:
    """host-local ADD then DEL of one attachment (dual stack), each implementation with its
    own store that already holds 20 leases, as on a host with a few pods."""
    confs: dict[str, dict] = {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "host-local")
        if bin_dir not in confs:
            confs[bin_dir] = c = {
                "cniVersion": "1.0.0", "name": "bench-hl", "type": "host-local",
                "ipam": {"type": "host-local", "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp),
                         "ranges": [[{"subnet": "10.77.0.0/16"}], [{"subnet": "fd00:77::/64"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}
            for i in range(20):  # pre-existing leases
                exec_plugin(b, "ADD", c, Sample(), None, CNI_CONTAINERID=f"pod{i}", CNI_NETNS=NETNS_PLACEHOLDER)
        exec_plugin(b, "ADD", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER)
        exec_plugin(b, "DEL", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER)

    return Scenario("host-local ADD+DEL", ["host-local"], run)


def bridge_scenario(tmp: str) -> Scenario:
    """bridge + host-local ADD then DEL with ipMasq (each implementation's default firewall
    backend), plugins running in a throwaway host namespace."""
    tag = uuid.uuid4().hex[:6]
    host, ctr = f"bench-h-{tag}", f"bench-c-{tag}"
    host_path, ctr_path = f"/var/run/netns/{host}", f"/var/run/netns/{ctr}"
    confs: dict[str, dict] = {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "bridge")
        if bin_dir not in confs:
            n = len(confs)
            confs[bin_dir] = {"cniVersion": "1.0.0", "name": f"bench-br{n}", "type": "bridge", "bridge": f"bbr{n}{tag}",
                              "isGateway": True, "ipMasq": True,
                              "ipam": {"type": "host-local", "subnet": f"10.124.{n}.0/24",
                                       "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp)}}
        for verb in ("ADD", "DEL"):
            exec_plugin(b, verb, confs[bin_dir], s, rss, host_netns=host_path, CNI_NETNS=ctr_path)

    def setup() -> None:
        for n in (host, ctr):
            subprocess.run(["ip", "netns", "add", n], check=True)

    def teardown() -> None:
        for n in (ctr, host):
            subprocess.run(["ip", "netns", "delete", n])

    return Scenario("bridge+host-local ipMasq ADD+DEL", ["bridge", "host-local"], run, setup, teardown)


def loopback_scenario() -> Scenario:
    """loopback ADD then DEL in a throwaway namespace."""
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    path = f"/var/run/netns/{ns}"
    conf = {"cniVersion": "1.0.0", "name": "bench-lo", "type": "loopback"}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "loopback")
        exec_plugin(b, "ADD", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")
        exec_plugin(b, "DEL", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")

    return Scenario("loopback ADD+DEL", ["loopback"], run,
                    setup=lambda: subprocess.run(["ip", "netns", "add", ns], check=True),
                    teardown=lambda: subprocess.run(["ip", "netns", "delete", ns]))


def measure(sc: Scenario, ours: str, ref: str, runs: int, meter: RssMeter, warmup: int = 3) -> dict:
    """Alternate ours and ref ``runs`` times (after ``warmup`` each), then a few runs for
    peak RSS (measured separately: the wrapper would add to the times); return the figures."""
    times: dict[str, list[float]] = {"ours": [], "ref": []}
    rss = {"ours": 0, "ref": 0}
    sc.setup()
    try:
        for i in range(warmup + runs):
            for who, d in (("ours", ours), ("ref", ref)):
                s = Sample()
                sc.run(d, s, None)
                if i >= warmup:
                    times[who].append(s.seconds)
        for _ in range(3):
            for who, d in (("ours", ours), ("ref", ref)):
                s = Sample()
                sc.run(d, s, meter)
                rss[who] = max(rss[who], s.max_rss_kib)
    finally:
        sc.teardown()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {"scenario": sc.name, "ours_ms": med["ours"], "ref_ms": med["ref"],
            "ratio": med["ours"] / med["ref"], "ours_rss_kib": rss["ours"], "ref_rss_kib": rss["ref"],
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--ours", default=os.path.join(ROOT, "dist", "bin"))
    ap.add_argument("--ref", default="/usr/lib/cni")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--only", default="", help="comma-separated plugin names")
    ap.add_argument("--json", help="also write the figures to this file")
    sc = ap.add_argument_group("scale run (--scale or --only scale; see conformance/bench_scale.py)")
    sc.add_argument("--scale", action="store_true",
                    help="chain ADD/DEL latency as pods accumulate on one bridge, instead of the scenarios")
    sc.add_argument("--pods", default="10,100",
                    help="checkpoints, comma-separated (default 10,100; the full run: 10,100,250,500)")
    sc.add_argument("--impls", default="ours,ref", help="comma-separated subset of ours,ref (default both)")
    sc.add_argument("--plot", default="bench-scale.png",
                    help="PNG to write (default bench-scale.png in the cwd; 'none': no plot; needs matplotlib)")
    sc.add_argument("--backend", choices=("nftables", "iptables"),
                    help="firewall backend for bridge ipMasq and portmap (default: each implementation's "
                         "own; the reference 1.1.1 ignores it and uses iptables)")
    opts = ap.parse_args(argv)
    if opts.scale or "scale" in opts.only.split(","):
        from conformance import bench_scale

        words = sys.argv[1:] if argv is None else argv
        return bench_scale.run(opts, " ".join(["python -m conformance.bench"] + words))
    tmp = tempfile.mkdtemp(prefix="cni-bench-")
    try:
        scenarios = [host_local_scenario(tmp), loopback_scenario(), bridge_scenario(tmp)]
        meter = RssMeter()
        only = set(filter(None, opts.only.split(",")))
        rows = []
        print(f"{'scenario':<34} {'ours ms':>9} {'ref ms':>9} {'ratio':>7} {'ours RSS':>10} {'ref RSS':>10}")
        for sc in scenarios:
            if only and not only & set(sc.plugins):
                continue
            if not all(os.path.exists(os.path.join(opts.ours, p)) for p in sc.plugins):
                print(f"{sc.name:<34} skipped: not built in {opts.ours}")
                continue
            r = measure(sc, opts.ours, opts.ref, opts.runs, meter)
            rows.append(r)
            print(f"{r['scenario']:<34} {r['ours_ms']:>9.1f} {r['ref_ms']:>9.1f} {r['ratio']:>6.2f}x "
                  f"{r['ours_rss_kib'] / 1024:>8.1f}MB {r['ref_rss_kib'] / 1024:>8.1f}MB")
        print(f"(medians of {opts.runs} alternating runs each; whole-process times, ours={opts.ours}, ref={opts.ref})")
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump(rows, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
