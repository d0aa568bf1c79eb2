"""Whole-process cost of host-local ADD+DEL: ours against the reference, alternating.

Each round runs ADD then DEL of one attachment as real processes (fork+exec, stdin config,
stdout result), once with our plugin and once with the reference (/usr/lib/cni/host-local),
swapping which goes first every round so neither gets a warmer cache. Each implementation
uses its own data dir in a throwaway directory, so the work per call is the same: a store
with a few leases.

Prints the median ADD+DEL wall time of each and the ratio of the medians (the start-up
budget says <= 4x the reference).

    .venv/bin/python3 -m conformance.bench_host_local [--rounds N] [--ours DIR] [--ref DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _conf(data_dir: str) -> bytes:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "bench-net", "type": "host-local",
        "ipam": {"type": "host-local", "dataDir": data_dir,
                 "ranges": [[{"subnet": "10.77.0.0/16"}], [{"subnet": "fd00:77::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }).encode()


def _call(binary: str, verb: str, conf: bytes, cid: str, cni_path: str) -> float:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": cid,
           "CNI_NETNS": "/var/run/netns/bench", "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": cni_path}
    t = time.perf_counter()
    p = subprocess.run([binary], input=conf, env=env, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{binary} {verb} failed: {p.stdout.decode()} {p.stderr.decode()}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--ours", default=os.path.join(ROOT, "dist", "bin"))
    ap.add_argument("--ref", default="/usr/lib/cni")
    ap.add_argument("--leases", type=int, default=20, help="leases already in each store")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-host-local-")
    impls = {"ours": opts.ours, "reference": opts.ref}
    confs = {name: _conf(os.path.join(tmp, name)) for name in impls}
    times: dict[str, list[float]] = {name: [] for name in impls}
    try:
        for name, d in impls.items():  # warm up (page cache) and populate the store
            for i in range(opts.leases):
                _call(os.path.join(d, "host-local"), "ADD", confs[name], f"keep{i}", d)
        order = list(impls)
        for rnd in range(opts.rounds):
            for name in (order if rnd % 2 == 0 else order[::-1]):
                d = impls[name]
                binary = os.path.join(d, "host-local")
                cid = f"bench{rnd}"
                add = _call(binary, "ADD", confs[name], cid, d)
                times[name].append(add + _call(binary, "DEL", confs[name], cid, d))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {name: statistics.median(v) * 1000 for name, v in times.items()}
    for name, m in med.items():
        p90 = sorted(times[name])[int(0.9 * len(times[name]))] * 1000
        print(f"{name:10s} ADD+DEL median {m:6.2f} ms  (p90 {p90:6.2f} ms)")
    print(f"ratio ours/reference: {med['ours'] / med['reference']:.2f}x over {opts.rounds} rounds")


if __name__ == "__main__":
    main()
