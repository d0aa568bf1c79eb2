"""Helpers for the bandwidth tests: a throwaway "host" namespace (plugins run in it) and a
"container" namespace joined by a veth pair (``vh...`` in the host standing in for what
bridge or ptp would make, ``eth0`` in the container, 10.77.N.1/.2), the plugin under test
and the reference, readers of what the kernel holds (``tc -raw -j``, ``ip -j``), and a
TCP throughput measurement between the two namespaces (tests/bw_traffic.py).

Which build runs: ``dist/bin`` (the ``our_bin`` fixture) unless ``CNIPY_TEST_BIN_DIR``
names another directory holding a ``bandwidth`` (e.g. launchers made with
``build/launchers.py DIR``), as the tuning tests do.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

from tests.helpers import REF_BIN, ROOT, Netns, ip_json, run_plugin, sh, unique

NET = "bwnet"
CID = "bwc1"
TRAFFIC = os.path.join(ROOT, "tests", "bw_traffic.py")
U32_MAX = 0xFFFFFFFF
TICKS_PER_US = 15.625  # /proc/net/psched here (checked by a test)


def bin_dir(request) -> str:
    d = os.environ.get("CNIPY_TEST_BIN_DIR")
    return d if d else request.getfixturevalue("our_bin")


def ticks(burst_bits: int, rate_bits: int) -> int:
    """The reference's buffer for a burst at a rate, in ticks (no overflow)."""
    return int(float(int(float(burst_bits // 8) * 1e6 / float(rate_bits // 8))) * TICKS_PER_US)


class World:
    """Host + container namespaces, one veth pair per attachment (``attach``)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.host = Netns("bwh")
        self.ctr = Netns("bwc")
        self.veths: dict[str, str] = {}  # container ifname -> host veth name
        self.attach("eth0", 1)

    def attach(self, ifname: str, subnet: int) -> str:
        vh = unique("vh")
        sh("ip", "link", "add", ifname, "netns", self.ctr.name, "type", "veth", "peer", "name", vh,
           "netns", self.host.name)
        self.host.run("ip", "addr", "add", f"10.77.{subnet}.1/24", "dev", vh)
        self.ctr.run("ip", "addr", "add", f"10.77.{subnet}.2/24", "dev", ifname)
        self.host.run("ip", "link", "set", vh, "up")
        self.ctr.run("ip", "link", "set", ifname, "up")
        self.ctr.run("ip", "link", "set", "lo", "up")
        self.host.run("ip", "link", "set", "lo", "up")
        self.veths[ifname] = vh
        return vh

    @property
    def vh(self) -> str:
        return self.veths["eth0"]

    def close(self) -> None:
        self.ctr.delete()
        self.host.delete()

    def prev(self, version: str = "1.0.0", ifname: str = "eth0") -> dict:
        sub = list(self.veths).index(ifname) + 1
        if version in ("0.1.0", "0.2.0"):
            return {"cniVersion": version, "ip4": {"ip": f"10.77.{sub}.2/24"}}
        p = {"cniVersion": version,
             "interfaces": [{"name": self.veths[ifname]}, {"name": ifname, "sandbox": self.ctr.path}],
             "ips": [{"interface": 1, "address": f"10.77.{sub}.2/24"}], "dns": {}}
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            p["ips"][0]["version"] = "4"
        return copy.deepcopy(p)

    def conf(self, version: str = "1.0.0", prev: dict | None = None, ifname: str = "eth0", **keys) -> dict:
        c: dict = {"cniVersion": version, "name": NET, "type": "bandwidth"}
        c.update(keys)
        c["prevResult"] = prev if prev is not None else self.prev(version, ifname)
        return {k: v for k, v in c.items() if v is not None}

    def run(self, verb: str, conf, *, cid: str = CID, ifname: str = "eth0", netns: str | None = None,
            binary: str | None = None, timeout: float = 30):
        gc = verb in ("GC", "STATUS")
        b = binary or self.binary
        return run_plugin(b, verb, conf, containerid="" if gc else cid,
                          netns="" if gc else (self.ctr.path if netns is None else netns),
                          ifname="" if gc else ifname, path=os.path.dirname(b), in_netns=self.host.name,
                          timeout=timeout)

    def ref(self, verb: str, conf, **kw):
        return self.run(verb, conf, binary=os.path.join(REF_BIN, "bandwidth"), **kw)

    # -- what the kernel holds ------------------------------------------------------------
    def qdiscs(self, dev: str) -> list[dict]:
        return json.loads(self.host.run("tc", "-raw", "-j", "qdisc", "show", "dev", dev) or "[]")

    def tbf(self, dev: str) -> dict | None:
        """The root TBF's numbers: rate (bytes/s), buffer (ticks), limit (bytes), burst (bytes)."""
        for q in self.qdiscs(dev):
            if q.get("root") and q["kind"] == "tbf":
                o = q["options"]
                return {"handle": q["handle"], "rate": o["rate"], "buffer": int(o["burst_raw"], 16),
                        "limit": o.get("limit"), "burst": o["burst"]}
        return None

    def has_ingress(self, dev: str) -> bool:
        return any(q["kind"] == "ingress" for q in self.qdiscs(dev))

    def redirects(self, dev: str) -> list[str]:
        """Devices the u32 filters on ``dev``'s ingress qdisc redirect to."""
        out = self.host.run("tc", "-j", "filter", "show", "dev", dev, "parent", "ffff:", check=False)
        try:
            fs = json.loads(out) if out.strip() else []
        except ValueError:
            return []
        return [a["to_dev"] for f in fs for a in f.get("options", {}).get("actions", [])
                if a.get("kind") == "mirred"]

    def ifbs(self) -> dict[str, dict]:
        return {l["ifname"]: l for l in ip_json("-d", "link", "show", "type", "ifb", ns=self.host.name)}

    def clean(self) -> bool:
        """Nothing of any bandwidth plugin's on the host side."""
        return (not self.ifbs() and all(self.tbf(v) is None and not self.has_ingress(v)
                                        for v in self.veths.values() if self.link_exists(v)))

    def link_exists(self, dev: str) -> bool:
        return subprocess.run(["ip", "-n", self.host.name, "link", "show", dev], capture_output=True, check=False).returncode == 0

    # -- traffic --------------------------------------------------------------------------
    def throughput(self, direction: str, seconds: float = 4.0, skip: float = 1.0, port: int = 5201) -> float:
        """Bits/s of one TCP transfer: ``ingress`` host -> container, ``egress`` container
        -> host, measured by the receiver after its first ``skip`` seconds."""
        recv_ns, send_ns, dst = ((self.ctr, self.host, "10.77.1.2") if direction == "ingress"
                                 else (self.host, self.ctr, "10.77.1.1"))
        rx = subprocess.Popen(["ip", "netns", "exec", recv_ns.name, sys.executable, "-I", TRAFFIC, "recv", str(port),
                               str(skip)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert rx.stdout.readline().strip() == "ready", rx.stderr.read()
            subprocess.run(["ip", "netns", "exec", send_ns.name, sys.executable, "-I", TRAFFIC, "send", dst, str(port),
                            str(seconds)], check=True, timeout=seconds + 60, capture_output=True)
            out, _err = rx.communicate(timeout=60)
        finally:
            if rx.poll() is None:
                rx.kill()
                rx.wait()
        return json.loads(out)["bps"]
