"""bridge with the firewall: ipMasq (nftables and iptables) with real traffic to an
"outside" namespace, masquerade release on DEL/GC without the container, CHECK of the
rules, STATUS with a missing backend, and macspoofchk dropping spoofed frames."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import Netns, PLAIN_PATH
from tests.test_bridge_common import (  # noqa: F401 - host is a fixture
    NET,
    ctr_link,
    host,
    ping,
    result_ip,
    source_seen_by_server,
)

BACKENDS = ["nftables", "iptables"]
TAG = f"cnipy:{NET}:c1:eth0"


def _rules_text(host, backend: str) -> str:
    return host.ruleset() if backend == "nftables" else host.iptables_save()


@pytest.fixture
def outside(host):
    """A namespace "outside" the host: 198.51.100.2, reachable from the host over a veth;
    it has no route back to the containers' subnet."""
    out = Netns("cnbo")
    try:
        host.ns.run("ip", "link", "add", "vout", "type", "veth", "peer", "name", "vin", "netns", out.name)
        host.ns.run("ip", "addr", "add", "198.51.100.1/24", "dev", "vout")
        host.ns.run("ip", "link", "set", "vout", "up")
        out.run("ip", "addr", "add", "198.51.100.2/24", "dev", "vin")
        out.run("ip", "link", "set", "vin", "up")
        out.run("ip", "link", "set", "lo", "up")
        yield out
    finally:
        out.delete()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipmasq_outside_sees_the_host_address(host, outside, backend):
    c = host.container()
    conf = host.conf(isDefaultGateway=True, ipMasq=True, ipMasqBackend=backend)
    res = host.add(conf, c)
    assert TAG in _rules_text(host, backend)
    assert source_seen_by_server(outside.name, "198.51.100.2", c.name) == "198.51.100.1"
    # Inside the subnet there is no masquerading: a second container sees the first's own address.
    c2 = host.container()
    r2 = host.add(conf, c2, cid="c2")
    assert source_seen_by_server(c2.name, result_ip(r2), c.name, port=18081) == result_ip(res)
    assert host.check(conf, res, c).ok
    host.delete(conf, c)
    host.delete(conf, c2, cid="c2")
    text = _rules_text(host, backend)
    assert TAG not in text and f"cnipy:{NET}:c2:eth0" not in text


def test_without_ipmasq_the_outside_cannot_answer(host, outside):
    c = host.container()
    conf = host.conf(isDefaultGateway=True)
    host.add(conf, c)
    p = subprocess.run(["ip", "netns", "exec", c.name, "ping", "-c1", "-W1", "198.51.100.2"], capture_output=True)
    assert p.returncode != 0  # no route back to 10.99.0.0/24 outside: proves the masquerade test
    host.delete(conf, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_notices_missing_masquerade_rules(host, backend):
    c = host.container()
    conf = host.conf(isGateway=True, ipMasq=True, ipMasqBackend=backend)
    res = host.add(conf, c)
    assert host.check(conf, res, c).ok
    if backend == "nftables":
        host.ns.run("nft", "flush", "ruleset")
    else:
        host.ns.run("iptables", "-t", "nat", "-F")
        host.ns.run("iptables", "-t", "nat", "-X")
    out = host.check(conf, res, c)
    assert not out.ok and out.code == 102, out
    host.delete(conf, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_releases_rules_without_netns_and_after_netns_deleted(host, backend):
    conf = host.conf(isGateway=True, ipMasq=True, ipMasqBackend=backend)
    c1, c2 = host.container(), host.container()
    host.add(conf, c1, cid="c1")
    host.add(conf, c2, cid="c2")
    host.delete(conf, None, cid="c1")  # no CNI_NETNS
    path = c2.path
    c2.delete()
    host.delete(conf, None, cid="c2", netns=path)  # the namespace is gone
    text = _rules_text(host, backend)
    assert "cnipy:" + NET not in text, text
    assert host.ports() == [] and host.leases() == []


def test_del_releases_rules_of_either_backend(host):
    """The backend changed between ADD and DEL: DEL cleans both (as the reference does)."""
    c = host.container()
    host.add(host.conf(isGateway=True, ipMasq=True, ipMasqBackend="iptables"), c)
    host.delete(host.conf(isGateway=True, ipMasq=True, ipMasqBackend="nftables"), c)
    assert TAG not in host.iptables_save()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_removes_masquerade_of_stale_attachments(host, backend):
    conf = host.conf(isGateway=True, ipMasq=True, ipMasqBackend=backend)
    c1, c2 = host.container(), host.container()
    r1 = host.add(conf, c1, cid="a")
    host.add(conf, c2, cid="b")
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    out = host.run("GC", gc, None, cid="", ifname="")
    assert out.ok and out.stdout == b"", out
    text = _rules_text(host, backend)
    assert f"cnipy:{NET}:a:eth0" in text and f"cnipy:{NET}:b:eth0" not in text
    assert host.leases() == [result_ip(r1)] and ctr_link(c2) is None
    assert host.check(conf, r1, c1, cid="a").ok
    host.delete(conf, c1, cid="a")


def _run_without(host, tools: list[str], verb: str, conf: dict):
    """Run the plugin with ``tools`` replaced by /dev/null (not executable files) in a
    private mount namespace inside the host namespace."""
    import json

    binds = " && ".join(f"mount --bind /dev/null {os.path.realpath(t)}" for t in tools)
    plugin = os.path.join(host.bin_dir, "bridge")
    env = {"PATH": PLAIN_PATH, "CNI_COMMAND": verb, "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": "",
           "CNI_ARGS": "", "CNI_PATH": host.bin_dir}
    p = subprocess.run(["ip", "netns", "exec", host.name, "unshare", "-m", "sh", "-c", f"{binds} && exec {plugin}"],
                       input=json.dumps(conf).encode(), env=env, capture_output=True)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None


@pytest.mark.parametrize("backend,tools", [("nftables", ["/usr/sbin/nft"]),
                                           ("iptables", ["/usr/sbin/iptables-restore"])])
def test_status_reports_a_missing_firewall_backend(host, backend, tools):
    st = {"cniVersion": "1.1.0", "name": NET, "type": "bridge", "ipam": host.ipam(), "ipMasq": True,
          "ipMasqBackend": backend}
    assert host.run("STATUS", st, None, cid="", ifname="").ok
    rc, doc = _run_without(host, tools, "STATUS", st)
    assert rc != 0 and doc["code"] == 50, doc
    # Without ipMasq the firewall does not matter.
    rc, doc = _run_without(host, tools, "STATUS", dict(st, ipMasq=False))
    assert rc == 0, doc


def test_unknown_backend_is_a_config_error(host):
    c = host.container()
    before = host.state([c])
    out = host.run("ADD", host.conf(ipMasq=True, ipMasqBackend="pf"), c)
    assert out.code == 7 and "ipMasqBackend" in out.doc["msg"] and "pf" in out.doc["msg"], out
    assert host.state([c]) == before


# -- macspoofchk -------------------------------------------------------------------------

def test_macspoofchk_drops_frames_after_the_container_changes_its_mac(host):
    conf = host.conf(macspoofchk=True)
    c1, c2 = host.container(), host.container()
    r1 = host.add(conf, c1, cid="c1")
    r2 = host.add(conf, c2, cid="c2")
    text = host.ruleset()
    assert "macspoofchk-c1-eth0" in text and r1["interfaces"][2]["mac"] in text
    assert ping(c1, result_ip(r2))
    assert host.check(conf, r1, c1, cid="c1").ok
    mac = r1["interfaces"][2]["mac"]
    for ns in (c1, c2):
        ns.run("ip", "neigh", "flush", "all")
    c1.run("ip", "link", "set", "eth0", "address", "0a:58:0a:63:0a:0a")
    assert not ping(c1, result_ip(r2)), "a frame with a spoofed source MAC got through"
    c1.run("ip", "link", "set", "eth0", "address", mac)
    for ns in (c1, c2):
        ns.run("ip", "neigh", "flush", "all")
    assert ping(c1, result_ip(r2))
    host.delete(conf, c1, cid="c1")
    host.delete(conf, c2, cid="c2")
    text = host.ruleset()
    assert "macspoofchk-c1" not in text and "cni-br-iface-c1-eth0" not in text


def test_macspoofchk_released_when_the_namespace_is_gone(host):
    conf = host.conf(macspoofchk=True)
    c = host.container()
    host.add(conf, c)
    path = c.path
    c.delete()
    host.delete(conf, None, netns=path)
    assert "macspoofchk-c1-eth0" not in host.ruleset()


def test_check_notices_missing_macspoofchk(host):
    conf = host.conf(macspoofchk=True)
    c = host.container()
    res = host.add(conf, c)
    host.ns.run("nft", "flush", "chain", "bridge", "nat", "cni-br-iface-c1-eth0-mac")
    out = host.check(conf, res, c)
    assert not out.ok and "macspoofchk" in out.doc["msg"], out
    host.delete(conf, c)


def test_macspoofchk_of_a_reference_made_attachment_is_released(host, ref_bin):
    conf = host.conf("1.0.0", macspoofchk=True)
    c = host.container()
    out = host.run("ADD", conf, c, binary=os.path.join(ref_bin, "bridge"))
    assert out.ok, out
    assert "macspoofchk-c1-eth0" in host.ruleset()
    host.delete(conf, c)
    assert "macspoofchk-c1-eth0" not in host.ruleset() and ctr_link(c) is None
