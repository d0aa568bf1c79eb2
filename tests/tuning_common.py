"""Helpers for the tuning tests: a throwaway "host" namespace (plugins run in it) and a
"container" namespace holding ``eth0`` (one end of a veth pair whose other end is in the
host), the plugin under test and the reference, and readers of what the kernel holds.

Which build runs: ``dist/bin`` (the ``our_bin`` fixture) unless ``CNIPY_TEST_BIN_DIR``
names another directory holding a ``tuning`` (e.g. launchers made with
``build/launchers.py DIR``).
"""

from __future__ import annotations

import copy
import os

from tests.helpers import REF_BIN, Netns, ip_json, run_plugin, sh, unique

NET = "tunenet"
CID = "tc1"
PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "vhost0", "mac": "02:00:00:00:00:01"},
                       {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "SANDBOX"}],
        "ips": [{"interface": 1, "address": "10.66.0.5/24", "gateway": "10.66.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.66.0.1"]}}


def bin_dir(request) -> str:
    d = os.environ.get("CNIPY_TEST_BIN_DIR")
    return d if d else request.getfixturevalue("our_bin")


class World:
    """Host + container namespaces, eth0 in the container, a data dir and an allowlist
    path of the test's own."""

    def __init__(self, tmp_path, binary: str, kind: str = "veth") -> None:
        self.binary = binary
        self.host = Netns("tunh")
        self.ctr = Netns("tunc")
        self.data_dir = str(tmp_path / "data")
        self.allowlist = str(tmp_path / "allowlist.conf")  # absent unless a test writes it
        if kind == "veth":
            sh("ip", "link", "add", "eth0", "netns", self.ctr.name, "type", "veth", "peer", "name", unique("vh"),
               "netns", self.host.name)
        else:  # a macvlan on a 1500-byte parent: the kernel refuses a larger MTU
            self.ctr.run("ip", "link", "add", "par0", "type", "veth", "peer", "name", "par1")
            self.ctr.run("ip", "link", "add", "eth0", "link", "par0", "type", "macvlan")
        self.ctr.run("ip", "link", "set", "eth0", "up")

    def close(self) -> None:
        self.ctr.delete()
        self.host.delete()

    def prev(self, version: str = "1.0.0") -> dict:
        p = copy.deepcopy(PREV)
        p["cniVersion"] = version
        p["interfaces"][1]["sandbox"] = self.ctr.path
        return p

    def conf(self, version: str = "1.0.0", prev: dict | None = None, data_dir: bool = True, **keys) -> dict:
        c: dict = {"cniVersion": version, "name": NET, "type": "tuning"}
        if data_dir:
            c["dataDir"] = self.data_dir
        c.update(keys)
        c["prevResult"] = prev if prev is not None else self.prev(version)
        return {k: v for k, v in c.items() if v is not None}

    def run(self, verb: str, conf, *, cid: str = CID, ifname: str = "eth0", args: str = "",
            netns: str | None = None, binary: str | None = None, env: dict | None = None, timeout: float = 30):
        extra = {"CNIPY_TUNING_ALLOWLIST": self.allowlist}
        if env:
            extra.update(env)
        gc = verb in ("GC", "STATUS")
        return run_plugin(binary or self.binary, verb, conf, containerid="" if gc else cid,
                          netns="" if gc else (self.ctr.path if netns is None else netns),
                          ifname="" if gc else ifname, args=args, path=os.path.dirname(binary or self.binary),
                          in_netns=self.host.name, extra_env=extra, timeout=timeout)

    def ref(self, verb: str, conf, **kw):
        return self.run(verb, conf, binary=os.path.join(REF_BIN, "tuning"), **kw)

    # -- what the kernel holds ------------------------------------------------------------
    def link(self, name: str = "eth0") -> dict:
        lk = ip_json("-d", "link", "show", "dev", name, ns=self.ctr.name)[0]
        return {"mac": lk["address"], "mtu": lk["mtu"], "promisc": "PROMISC" in lk["flags"],
                "allmulti": "ALLMULTI" in lk["flags"], "txqlen": lk.get("txqlen")}

    def counts(self, name: str = "eth0") -> dict:
        """The kernel's counts of the users of promiscuous and all-multicast mode (a bridge
        port is one user of each without the flag; ``ip link`` prints the flags)."""
        lk = ip_json("-d", "link", "show", "dev", name, ns=self.ctr.name)[0]
        return {"promiscuity": lk["promiscuity"], "allmulti": lk.get("allmulti")}

    def sysctl(self, path: str) -> str:
        return sh("cat", f"/proc/sys/{path}", ns=self.ctr.name).rstrip("\n")

    def set_sysctl(self, path: str, value: str) -> None:
        sh("sh", "-c", f"echo '{value}' > /proc/sys/{path}", ns=self.ctr.name)

    def backups(self) -> list[str]:
        return sorted(os.listdir(self.data_dir)) if os.path.isdir(self.data_dir) else []
