"""Shared helpers for the host-local tests (no tests here).

Every helper runs the plugin as a real process (ours from dist/bin, or the reference from
/usr/lib/cni, which needs CNI_PATH) against a data dir under pytest's tmp_path.
"""

from __future__ import annotations

import os

from tests.helpers import run_plugin

NETWORK = "hl-net"
# host-local never enters the namespace; ADD/CHECK only need the variable to be set.
NETNS = "/var/run/netns/hl-unused"


def make_conf(data_dir, ipam: dict | None = None, version: str = "1.1.0", name: str = NETWORK,
              **top) -> dict:
    """A network config whose ``ipam`` is host-local with ``dataDir`` = data_dir."""
    conf = {"cniVersion": version, "name": name, "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), **(ipam or {})}}
    conf.update(top)
    return conf


def hl(bin_dir: str, verb: str, conf, cid: str = "c1", ifname: str = "eth0", args: str = ""):
    """Run ``host-local`` from ``bin_dir`` (ours or the reference's) for one attachment."""
    attach = verb in ("ADD", "DEL", "CHECK")
    return run_plugin(os.path.join(bin_dir, "host-local"), verb, conf,
                      containerid=cid if attach else "", ifname=ifname if attach else "",
                      netns=NETNS if verb in ("ADD", "CHECK") else "", args=args, path=bin_dir)


def addresses(out) -> list[str]:
    """``ips[].address`` of a successful ADD (asserting it succeeded)."""
    assert out.ok, out
    return [ip["address"] for ip in out.doc["ips"]]


def store_dir(data_dir, name: str = NETWORK) -> str:
    return os.path.join(str(data_dir), name)


def leases(data_dir, name: str = NETWORK) -> dict[str, bytes]:
    """Lease files of the store (name -> content), without lock and last_reserved_ip.*."""
    d = store_dir(data_dir, name)
    if not os.path.isdir(d):
        return {}
    out = {}
    for f in sorted(os.listdir(d)):
        if f == "lock" or f.startswith("last_reserved_ip.") or f.startswith("."):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            out[f] = fh.read()
    return out


def read(path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
