"""The firewall is loaded only by what needs it (README, "Start-up budget"), whatever shape
its package takes: a plugin run is traced with ``-X importtime`` (not timed) and the
modules it imported are checked.

- host-local and loopback import nothing of the firewall;
- bridge without ipMasq and macspoofchk imports no backend; with ipMasq its ADD imports
  the chosen backend's masquerade and nothing of host ports or the spoof check;
- portmap never imports pyroute2 (nor cnilib's netlink layer), nor the masquerade or the
  spoof check.

The plugins run from dist/src-bin inside throwaway "host" and "container" namespaces;
everything they make goes with those namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import PLAIN_PATH, Netns

BACKENDS = ("cnilib.firewall.nftables", "cnilib.firewall.iptables", "cnilib.firewall.tools")


def _has(mods: set[str], *prefixes: str) -> list[str]:
    """The modules of ``mods`` that are one of ``prefixes`` or under one."""
    return sorted(m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.fixture
def place(tmp_path):
    """A "host" namespace (the plugins run there) and a "container" namespace."""
    host, ctr = Netns("cnilz"), Netns("cnilz")
    try:
        host.run("ip", "link", "set", "lo", "up")
        yield host, ctr, str(tmp_path)
    finally:
        ctr.delete()
        host.delete()


def run_traced(src_bin: str, plugin: str, verb: str, conf: dict, host: Netns, ctr: Netns,
               ifname: str = "eth0") -> tuple[dict | None, set[str]]:
    """Run ``plugin`` from source in ``host`` with ``-X importtime``: (its output, the
    modules it imported). Fails the test unless it succeeded."""
    with open(os.path.join(src_bin, plugin)) as f:
        python = f.readline()[2:].split()[0]
    env = {"PATH": PLAIN_PATH, "CNI_COMMAND": verb, "CNI_CONTAINERID": "lazy1", "CNI_NETNS": ctr.path,
           "CNI_IFNAME": ifname, "CNI_PATH": src_bin}
    argv = ["ip", "netns", "exec", host.name, python, "-X", "importtime", "-IS",
            os.path.join(src_bin, plugin)]
    p = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, (plugin, verb, p.stdout, p.stderr[-2000:])
    mods = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines()
            if line.startswith("import time:")}
    assert mods, "no import trace"
    return (json.loads(p.stdout) if p.stdout.strip() else None), mods


def _bridge(data_dir: str, **extra: object) -> dict:
    return {"cniVersion": "1.0.0", "name": "lazynet", "type": "bridge", "bridge": "cnilz0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.77.3.0/24", "dataDir": data_dir}, **extra}


@pytest.mark.parametrize("plugin", ["host-local", "loopback"])
def test_standard_library_plugins_import_nothing_of_the_firewall(src_bin, place, plugin):
    host, ctr, data_dir = place
    conf = ({"cniVersion": "1.0.0", "name": "lazynet", "type": "loopback"} if plugin == "loopback" else
            {"cniVersion": "1.0.0", "name": "lazynet", "type": "host-local",
             "ipam": {"type": "host-local", "subnet": "10.77.4.0/24", "dataDir": data_dir}})
    ifname = "lo" if plugin == "loopback" else "eth0"
    for verb in ("ADD", "DEL"):
        _, mods = run_traced(src_bin, plugin, verb, conf, host, ctr, ifname)
        assert not _has(mods, "cnilib.firewall", "cnilib.owner"), (verb, _has(mods, "cnilib.firewall"))


def test_bridge_without_firewall_options_imports_no_backend(src_bin, place):
    host, ctr, data_dir = place
    conf = _bridge(data_dir)
    result, mods = run_traced(src_bin, "bridge", "ADD", conf, host, ctr)
    assert result["ips"][0]["address"].startswith("10.77.3.")
    assert not _has(mods, *BACKENDS), _has(mods, *BACKENDS)
    _, mods = run_traced(src_bin, "bridge", "DEL", dict(conf, prevResult=result), host, ctr)
    assert not _has(mods, *BACKENDS), _has(mods, *BACKENDS)


def test_bridge_masquerading_imports_only_its_backends_masquerade(src_bin, place):
    host, ctr, data_dir = place
    conf = _bridge(data_dir, ipMasq=True, ipMasqBackend="nftables")
    result, mods = run_traced(src_bin, "bridge", "ADD", conf, host, ctr)
    assert "cnilib.firewall.nftables.masquerade" in mods
    unneeded = _has(mods, "cnilib.firewall.iptables", "cnilib.firewall.nftables.hostports",
                    "cnilib.firewall.nftables.spoofcheck", "cnilib.firewall.hostport",
                    "cnilib.firewall.spoof")
    assert not unneeded, unneeded
    assert "cnipy_nat" in host.run("nft", "list", "tables")
    run_traced(src_bin, "bridge", "DEL", dict(conf, prevResult=result), host, ctr)


def test_portmap_never_imports_netlink_nor_other_features(src_bin, place):
    host, ctr, _ = place
    conf = {"cniVersion": "1.0.0", "name": "lazynet", "type": "portmap", "snat": False,
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
                           "ips": [{"address": "10.77.5.2/24", "interface": 0}]}}
    for verb in ("ADD", "CHECK", "DEL"):
        _, mods = run_traced(src_bin, "portmap", verb, conf, host, ctr)
        bad = _has(mods, "pyroute2", "cnilib.nl", "cnilib.firewall.nftables.masquerade",
                   "cnilib.firewall.iptables.masquerade", "cnilib.firewall.nftables.spoofcheck")
        assert not bad, (verb, bad)
        if verb == "ADD":
            assert "cnilib.firewall.nftables.hostports" in mods
            assert "18080" in host.run("nft", "list", "table", "inet", "cnipy_hostport")
