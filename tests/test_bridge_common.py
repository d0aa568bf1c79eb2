"""Shared pieces of the bridge tests (no tests here): a throwaway "host" namespace in which
the plugin runs (so the bridge, its veths and firewall rules never touch the machine),
container namespaces, configs with host-local under tmp_path, and traffic helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import OUR_BIN, Netns, ip_json, run_plugin, sh

BRIDGE = "cnibr0"
SUBNET = "10.99.0.0/24"
SUBNET6 = "fd00:99::/64"
NET = "brnet"


class Host:
    """A host namespace for one test, with its containers; ``close()`` removes all."""

    def __init__(self, tmp_path, bin_dir: str = OUR_BIN) -> None:
        self.tmp = tmp_path
        self.bin_dir = bin_dir
        self.ns = Netns("cnbh")
        self.ns.run("ip", "link", "set", "lo", "up")
        self.extra: list[Netns] = []
        self.data_dir = str(tmp_path / "ipam")

    @property
    def name(self) -> str:
        return self.ns.name

    def container(self) -> Netns:
        n = Netns("cnbc")
        n.run("ip", "link", "set", "lo", "up")
        self.extra.append(n)
        return n

    def close(self) -> None:
        for n in self.extra:
            n.delete()
        self.ns.delete()

    # -- configs -----------------------------------------------------------------------
    def ipam(self, dual: bool = False, **extra) -> dict:
        ranges = [[{"subnet": SUBNET}]]
        if dual:
            ranges.append([{"subnet": SUBNET6}])
        d = {"type": "host-local", "ranges": ranges, "dataDir": self.data_dir}
        d.update(extra)
        return d

    def conf(self, version: str = "1.1.0", **kw) -> dict:
        c = {"cniVersion": version, "name": NET, "type": "bridge", "bridge": BRIDGE, "ipam": self.ipam()}
        c.update(kw)
        return c

    # -- running the plugin ------------------------------------------------------------
    def run(self, verb: str, conf, ctr: Netns | None = None, *, cid: str = "c1", ifname: str = "eth0",
            args: str = "", netns: str | None = None, binary: str | None = None):
        path = netns if netns is not None else (ctr.path if ctr is not None else "")
        return run_plugin(binary or os.path.join(self.bin_dir, "bridge"), verb, conf, containerid=cid,
                          netns=path, ifname=ifname, args=args, path=self.bin_dir, in_netns=self.ns.name)

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
    def links(self) -> list[dict]:
        return ip_json("-d", "link", "show", ns=self.ns.name)

    def link(self, name: str) -> dict | None:
        return next((l for l in self.links() if l["ifname"] == name), None)

    def ports(self, bridge: str = BRIDGE) -> list[dict]:
        return [l for l in self.links() if l.get("master") == bridge]

    def leases(self) -> list[str]:
        d = os.path.join(self.data_dir, NET)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f != "lock" and not f.startswith("last_reserved_ip"))

    def ruleset(self) -> str:
        return sh("nft", "list", "ruleset", ns=self.ns.name)

    def iptables_save(self) -> str:
        return sh("iptables-save", ns=self.ns.name) + sh("ip6tables-save", ns=self.ns.name)

    def state(self, ctrs: list[Netns] = ()) -> dict:
        """Everything a failed ADD must leave as it was."""
        return {"links": sorted(l["ifname"] for l in self.links()),
                "bridge addrs": sorted(f"{a['local']}/{a['prefixlen']}"
                                       for l in ip_json("addr", "show", ns=self.ns.name)
                                       for a in l.get("addr_info", []) if a.get("scope") != "link"),
                "leases": self.leases(), "nft": self.ruleset(), "iptables": self.iptables_save(),
                "containers": {c.name: sorted(l["ifname"] for l in ip_json("link", "show", ns=c.name)) for c in ctrs}}


@pytest.fixture
def host(tmp_path, our_bin):
    h = Host(tmp_path, our_bin)
    try:
        yield h
    finally:
        h.close()


def ctr_link(ctr: Netns, name: str = "eth0") -> dict | None:
    return next((l for l in ip_json("-d", "link", "show", ns=ctr.name) if l["ifname"] == name), None)


def ctr_addrs(ctr: Netns, name: str = "eth0") -> list[dict]:
    data = ip_json("addr", "show", "dev", name, ns=ctr.name)
    return data[0].get("addr_info", []) if data else []


def ping(ns: Netns | str, addr: str, count: int = 1, wait: int = 1) -> bool:
    name = ns if isinstance(ns, str) else ns.name
    p = subprocess.run(["ip", "netns", "exec", name, "ping", "-c", str(count), "-W", str(wait), "-q", addr],
                       capture_output=True)
    return p.returncode == 0


def sysctl(ns: Netns | str, path: str) -> str:
    name = ns if isinstance(ns, str) else ns.name
    return sh("cat", f"/proc/sys/{path}", ns=name).strip()


def result_ip(result: dict, version: int = 4) -> str:
    for ipc in result["ips"]:
        addr = ipc["address"].split("/")[0]
        if (":" in addr) == (version == 6):
            return addr
    raise AssertionError(f"no IPv{version} address in {result}")


SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
c, peer = s.accept()
c.sendall(b"hello")
c.close()
print(peer[0], flush=True)
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(16).decode())
"""


def source_seen_by_server(server_ns: str, server_ip: str, client_ns: str, port: int = 18080) -> str:
    """Connect from ``client_ns`` to a one-shot TCP server in ``server_ns``; the source
    address the server saw."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER, server_ip, str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready", srv.stderr.read()
        cl = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT, server_ip, str(port)],
                            capture_output=True, text=True, timeout=30)
        assert cl.returncode == 0 and cl.stdout.strip() == "hello", f"client failed: {cl.stderr}"
        out, err = srv.communicate(timeout=20)
        return out.strip()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


