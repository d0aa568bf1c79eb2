"""Helpers for the firewall plugin tests: a throwaway "host" namespace in which the plugins
run (bridge + host-local make real containers, the firewall plugin is chained after them),
an "outside" namespace reachable from the host, and readers of the host's firewall state.

Which build runs: ``dist/bin`` (the ``our_bin`` fixture) unless ``CNIPY_TEST_BIN_DIR``
names another directory holding the plugins (e.g. launchers made with
``build/launchers.py DIR``), as for the tuning tests.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess

from tests.helpers import PLAIN_PATH, REF_BIN, Netns, run_plugin, sh

NET = "fwnet"
OUT_ADDR, OUT_HOST = "198.51.100.2", "198.51.100.1"
# Our owner tags inside iptables comments (the reference's rules carry none).
TAG_COMMENT = re.compile(r' -m comment --comment "?cnipy:[^" ]+"?')


def tag(cid: str, ifname: str = "eth0", net: str = NET) -> str:
    return f"cnipy:{net}:{cid}:{ifname}"


def prev_result(addrs: list[str], bridge: str = "cni0", sandbox: str = "/var/run/netns/x",
                version: str = "1.0.0") -> dict:
    """A bridge-shaped prevResult: [bridge, host veth, container] and the addresses."""
    return {"cniVersion": version,
            "interfaces": [{"name": bridge}, {"name": "veth1"}, {"name": "eth0", "sandbox": sandbox}],
            "ips": [{"interface": 2, "address": a} for a in addrs]}


class Host:
    """A host namespace for one test, its containers, bridges' IPAM data, the outside."""

    def __init__(self, tmp_path, bin_dir: str) -> None:
        self.tmp = tmp_path
        self.bin_dir = bin_dir
        self.ns = Netns("fwh")
        self.ns.run("ip", "link", "set", "lo", "up")
        self.extra: list[Netns] = []
        self.outside: Netns | None = None

    @property
    def name(self) -> str:
        return self.ns.name

    def close(self) -> None:
        for n in self.extra:
            n.delete()
        self.ns.delete()

    def container(self) -> Netns:
        n = Netns("fwc")
        n.run("ip", "link", "set", "lo", "up")
        self.extra.append(n)
        return n

    def make_outside(self, routes: list[str]) -> Netns:
        """An "outside" namespace at OUT_ADDR behind a veth from the host, with routes back
        to ``routes`` (the containers' subnets) through the host: no masquerading needed."""
        out = Netns("fwo")
        self.extra.append(out)
        self.ns.run("ip", "link", "add", "vout", "type", "veth", "peer", "name", "vin", "netns", out.name)
        self.ns.run("ip", "addr", "add", f"{OUT_HOST}/24", "dev", "vout")
        self.ns.run("ip", "link", "set", "vout", "up")
        out.run("ip", "addr", "add", f"{OUT_ADDR}/24", "dev", "vin")
        out.run("ip", "link", "set", "vin", "up")
        out.run("ip", "link", "set", "lo", "up")
        for r in routes:
            out.run("ip", "route", "add", r, "via", OUT_HOST)
        self.outside = out
        return out

    # -- configs -----------------------------------------------------------------------
    def bridge_conf(self, bridge: str, subnet: str, version: str = "1.0.0") -> dict:
        return {"cniVersion": version, "name": NET, "type": "bridge", "bridge": bridge, "isDefaultGateway": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                         "dataDir": str(self.tmp / "ipam")}}

    @staticmethod
    def fw_conf(prev: dict | None, version: str = "1.0.0", **keys) -> dict:
        c: dict = {"cniVersion": version, "name": NET, "type": "firewall"}
        c.update(keys)
        if prev is not None:
            c["prevResult"] = prev
        return c

    # -- running plugins ----------------------------------------------------------------
    def run(self, plugin: str, verb: str, conf, ctr: Netns | None = None, *, cid: str = "c1",
            ifname: str = "eth0", binary: str | None = None, netns: str | None = None):
        gc = verb in ("GC", "STATUS")
        path = netns if netns is not None else (ctr.path if ctr is not None else "/var/run/netns/none")
        return run_plugin(binary or os.path.join(self.bin_dir, plugin), verb, conf,
                          containerid="" if gc else cid, netns="" if gc else path,
                          ifname="" if gc else ifname, path=self.bin_dir, in_netns=self.ns.name)

    def fw(self, verb: str, conf, ctr: Netns | None = None, **kw):
        return self.run("firewall", verb, conf, ctr, **kw)

    def ref(self, verb: str, conf, ctr: Netns | None = None, **kw):
        return self.run("firewall", verb, conf, ctr, binary=os.path.join(REF_BIN, "firewall"), **kw)

    def attach(self, bridge: str, subnet: str, cid: str, **fw_keys) -> tuple[Netns, dict]:
        """A container on ``bridge`` (our bridge + host-local), then the firewall plugin
        chained after it; returns the container and the bridge's result."""
        ctr = self.container()
        out = self.run("bridge", "ADD", self.bridge_conf(bridge, subnet), ctr, cid=cid)
        assert out.ok, out
        res = out.doc
        fw = self.fw("ADD", self.fw_conf(res, **fw_keys), ctr, cid=cid)
        assert fw.ok, fw
        assert fw.doc["ips"] == res["ips"]  # prevResult passed on
        return ctr, res

    def detach(self, bridge: str, subnet: str, cid: str, ctr: Netns, **fw_keys) -> None:
        out = self.fw("DEL", self.fw_conf(None, **fw_keys), ctr, cid=cid)
        assert out.ok and out.stdout == b"", out
        out = self.run("bridge", "DEL", self.bridge_conf(bridge, subnet), ctr, cid=cid)
        assert out.ok, out

    def run_without(self, tools: list[str], verb: str, conf: dict, *, cid: str = "c1", binary: str = ""):
        """Run the firewall plugin in a private mount namespace where /usr/sbin holds only
        copies of ``tools`` (names of /usr/sbin entries: each a copy of its target, under its
        own name), so every other tool (ip6tables, nft...) is missing."""
        d = self.tmp / "sbin"
        d.mkdir(exist_ok=True)
        for t in tools:
            real = os.path.realpath(f"/usr/sbin/{t}")
            target = d / os.path.basename(real)
            if not target.exists():
                sh("cp", real, str(target))
            if os.path.basename(real) != t and not (d / t).is_symlink():
                (d / t).symlink_to(os.path.basename(real))
        plugin = binary or os.path.join(self.bin_dir, "firewall")
        env = {"PATH": PLAIN_PATH, "CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/x",
               "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": self.bin_dir}
        script = f"mount --bind {d} /usr/sbin && exec {plugin}"
        p = subprocess.run(["ip", "netns", "exec", self.name, "unshare", "-m", "sh", "-c", script],
                           input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr

    # -- looking -----------------------------------------------------------------------
    def iptables(self, version: int = 4) -> str:
        return sh("iptables" if version == 4 else "ip6tables", "-S", ns=self.name)

    def iptables_all(self) -> str:
        return self.iptables(4) + self.iptables(6)

    def nft(self) -> str:
        return sh("nft", "list", "ruleset", ns=self.name)

    def rules(self, backend: str) -> str:
        return self.nft() if backend == "nftables" else self.iptables_all()


def strip_tags(text: str) -> str:
    """iptables -S output without our owner-tag comments."""
    return TAG_COMMENT.sub("", text)


def ping(ns: Netns, addr: str) -> bool:
    p = subprocess.run(["ip", "netns", "exec", ns.name, "ping", "-c", "1", "-W", "1", "-q", addr],
                       capture_output=True)
    return p.returncode == 0


def ip_of(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def without(conf: dict, key: str) -> dict:
    c = copy.deepcopy(conf)
    c.pop(key, None)
    return c
