"""Shared pieces of the macvlan, ipvlan and vlan tests (no tests here).

``L2Host``: a throwaway "host" namespace in which the plugin runs, with ``up0`` standing in
for the NIC: one end of a veth pair whose other end (``up1``) is a port of the bridge
``wire`` in a throwaway "outside" namespace (the switch, and a machine behind it at
OUTSIDE_IP). The host has HOST_IP on up0 and a default route through it, so ``master``
may be left out. ``add_nic()`` adds more such NICs on the same wire (vlan tests). Every
namespace and the IPAM data dir go away with ``close()``.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.helpers import OUR_BIN, Netns, run_plugin, sh

SUBNET = "10.77.0.0/24"
HOST_IP = "10.77.0.253"
OUTSIDE_IP = "10.77.0.254"
NET = "l2net"


def ipn(ns: "Netns | str", *argv: str) -> str:
    """``ip -n NS ...``: one process, where ``ip netns exec NS ip ...`` is two plus a mount
    namespace (this matters in the emulated VM lane, where each process costs ~1-2 s)."""
    name = ns if isinstance(ns, str) else ns.name
    return sh("ip", "-n", name, *argv)


def ip_json(*argv: str, ns: "Netns | str | None" = None) -> list:
    """``ip -j ...`` (in namespace ``ns``) parsed."""
    out = ipn(ns, "-j", *argv) if ns else sh("ip", "-j", *argv)
    return json.loads(out) if out.strip() else []


class L2Host:
    def __init__(self, tmp_path, plugin: str, bin_dir: str = OUR_BIN, hairpin: bool = False) -> None:
        self.plugin = plugin
        self.bin_dir = bin_dir
        self.data_dir = str(tmp_path / "ipam")
        self.containers: list[Netns] = []
        self.ns = Netns("cnlh")
        self.outside = Netns("cnlo")
        try:
            # One `ip -batch` per namespace: every process counts in the VM lane.
            self.batch(self.ns, ["link set lo up"])
            self.batch(self.outside, ["link set lo up", "link add wire type bridge", "link set wire up",
                                      f"addr add {OUTSIDE_IP}/24 dev wire"])
            self.nics = 0
            self.add_nic("up0", hairpin=hairpin)
            self.batch(self.ns, [f"addr add {HOST_IP}/24 dev up0", f"route add default via {OUTSIDE_IP} dev up0"])
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self.ns.name

    @staticmethod
    def batch(ns: Netns, commands: list[str]) -> None:
        """Run ``ip`` commands in ``ns`` with one ``ip -batch`` process."""
        p = subprocess.run(["ip", "-n", ns.name, "-batch", "-"], input="\n".join(commands) + "\n",
                           capture_output=True, text=True)
        assert p.returncode == 0, f"ip -batch in {ns.name} failed: {p.stderr.strip()} ({commands})"

    def add_nic(self, name: str, hairpin: bool = False) -> None:
        """A host NIC ``name`` whose wire end is a port of the outside's bridge."""
        peer = f"w{self.nics}"
        self.nics += 1
        self.batch(self.ns, [f"link add {name} type veth peer name {peer} netns {self.outside.name}",
                             f"link set {name} up"])
        self.batch(self.outside, [f"link set {peer} master wire up"]
                   + ([f"link set {peer} type bridge_slave hairpin on"] if hairpin else []))

    def container(self) -> Netns:
        n = Netns("cnlc")
        ipn(n, "link", "set", "lo", "up")
        self.containers.append(n)
        return n

    def close(self) -> None:
        for n in self.containers:
            n.delete()
        self.outside.delete()
        self.ns.delete()

    # -- configs -----------------------------------------------------------------------
    def ipam(self, subnet: str = SUBNET, **extra) -> dict:
        r = {"subnet": subnet}
        if subnet == SUBNET:
            r.update(rangeStart="10.77.0.10", rangeEnd="10.77.0.100", gateway=OUTSIDE_IP)
        d = {"type": "host-local", "ranges": [[r]], "dataDir": self.data_dir}
        d.update(extra)
        return d

    def conf(self, version: str = "1.1.0", **kw) -> dict:
        c = {"cniVersion": version, "name": NET, "type": self.plugin, "master": "up0", "ipam": self.ipam()}
        c.update(kw)
        return {k: v for k, v in c.items() if v is not None}

    # -- running the plugin ------------------------------------------------------------
    def run(self, verb: str, conf, ctr: Netns | None = None, *, cid: str = "c1", ifname: str = "eth0",
            args: str = "", netns: str | None = None, binary: str | None = None, timeout: float = 60):
        path = netns if netns is not None else (ctr.path if ctr is not None else "")
        return run_plugin(binary or os.path.join(self.bin_dir, self.plugin), verb, conf, containerid=cid,
                          netns=path, ifname=ifname, args=args, path=self.bin_dir, in_netns=self.ns.name,
                          timeout=timeout)

    def add(self, conf, ctr: Netns, **kw) -> dict:
        out = self.run("ADD", conf, ctr, **kw)
        assert out.ok, f"ADD failed: {out}"
        return out.doc

    def delete(self, conf, ctr: Netns | None, **kw) -> None:
        conf = {k: v for k, v in conf.items() if k != "prevResult"}
        out = self.run("DEL", conf, ctr, **kw)
        assert out.ok and out.stdout == b"", f"DEL failed: {out}"

    def check(self, conf, result: dict, ctr: Netns, **kw):
        return self.run("CHECK", dict(conf, prevResult=result), ctr, **kw)

    # -- looking ---------------------------------------------------------------------
    def leases(self) -> list[str]:
        d = os.path.join(self.data_dir, NET)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f != "lock" and not f.startswith("last_reserved_ip"))

    def state(self) -> dict:
        """Everything a failed ADD must leave as it was: links everywhere, leases."""
        return {"host": sorted(l["ifname"] for l in ip_json("link", "show", ns=self.ns.name)),
                "leases": self.leases(),
                "containers": {c.name: sorted(l["ifname"] for l in ip_json("link", "show", ns=c.name))
                               for c in self.containers}}


def make_host(request, tmp_path, plugin: str, **kw):
    h = L2Host(tmp_path, plugin, **kw)
    request.addfinalizer(h.close)
    return h


def ctr_link(ctr: Netns, name: str = "eth0") -> dict | None:
    return next((l for l in ip_json("-d", "link", "show", ns=ctr.name) if l["ifname"] == name), None)


def ctr_addrs(ctr: Netns, name: str = "eth0") -> list[str]:
    data = ip_json("addr", "show", "dev", name, ns=ctr.name)
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in (data[0].get("addr_info", []) if data else [])
                  if a.get("scope") != "link")


def ping(ns: Netns | str, addr: str, count: int = 1, wait: int = 1) -> bool:
    name = ns if isinstance(ns, str) else ns.name
    p = subprocess.run(["ip", "netns", "exec", name, "ping", "-c", str(count), "-W", str(wait), "-q", addr],
                       capture_output=True)
    return p.returncode == 0


def reaches(ns: Netns | str, addr: str, tries: int = 3) -> bool:
    """A ping that allows for the first ARP/ND exchange (a few attempts)."""
    return any(ping(ns, addr) for _ in range(tries))


def reach_map(ns: Netns | str, targets: list[str]) -> dict[str, bool]:
    """Which of ``targets`` answer a ping from ``ns``, in one process (the VM lane pays per
    process): each gets up to 2 s (``-w 2``: a lost first packet, ARP, is sent again)."""
    name = ns if isinstance(ns, str) else ns.name
    script = "; ".join(f"if ping -c 1 -w 2 -q {t} >/dev/null 2>&1; then echo {t} yes; else echo {t} no; fi"
                       for t in targets)
    out = subprocess.run(["ip", "netns", "exec", name, "sh", "-c", script], capture_output=True, text=True).stdout
    got = dict(line.split() for line in out.splitlines() if line.strip())
    return {t: got.get(t) == "yes" for t in targets}


def result_ip(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def info_data(ctr: Netns, name: str = "eth0") -> dict:
    lk = ctr_link(ctr, name)
    assert lk is not None, f"no {name} in {ctr.name}"
    return lk["linkinfo"].get("info_data", {})


def sysctl(ns: Netns | str, path: str) -> str:
    name = ns if isinstance(ns, str) else ns.name
    return sh("cat", f"/proc/sys/{path}", ns=name).strip()


def with_prev(conf: dict, result: dict) -> dict:
    return dict(conf, prevResult=json.loads(json.dumps(result)))

