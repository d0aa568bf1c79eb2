"""vlan: real plugin processes on the real kernel, inside throwaway namespaces.

This machine's kernel has no 802.1Q: here the plugin must refuse with code 50 before
creating anything (and bad configs are code 7 before the kernel is asked); the tests
marked ``needs("vlan")`` run in the VM lane on Debian's stock kernel
(/work/shared/tools/vm-run.sh), where the refusal test skips.

Traffic layout there: the host's NICs up0 and up1b are both wired to the outside's bridge
``wire`` (a switch that passes tagged frames), which has VLAN interfaces wire.100 and
wire.200 of its own: a container reaching 10.77.100.254 sent frames tagged 100.
"""

from __future__ import annotations

import pytest

from tests.kernel_features import missing, needs
from tests.l2_common import ctr_addrs, ctr_link, info_data, make_host, reach_map, result_ip

HAS_VLAN = not missing(["vlan"])
V100 = "10.77.100.0/24"


@pytest.fixture
def host(request, tmp_path, our_bin):
    return make_host(request, tmp_path, "vlan", bin_dir=our_bin)


def vconf(host, vid: int, master: str = "up0", **kw) -> dict:
    return host.conf(vlanId=vid, master=master, ipam=host.ipam(subnet=V100), **kw)


# -- on this kernel: refused, or bad config -------------------------------------------------

@pytest.mark.skipif(HAS_VLAN, reason="this kernel has 802.1Q VLAN links: nothing to refuse")
def test_vlan_refused_with_code_50_before_anything(host):
    c = host.container()
    before = host.state()
    for verb in ("ADD", "STATUS"):
        out = host.run(verb, host.conf(vlanId=100), c)
        assert not out.ok and out.code == 50, out
        msg = out.doc["msg"]
        assert "vlan network 'l2net' (vlanId 100 on up0)" in msg and "802.1Q" in msg, msg
    assert host.state() == before, "a refused vlan ADD created something (link or lease)"
    host.delete(host.conf(vlanId=100), c)


@pytest.mark.parametrize("extra,key", [
    ({"vlanId": 4095}, "vlanId"), ({"vlanId": -1}, "vlanId"), ({"vlanId": "5"}, "vlanId"),
    ({"master": None}, "master"), ({"ipam": {}}, "ipam.type"), ({"mtu": 20}, "mtu"),
    ({"master": "up%d"}, "master"), ({"master": "nope0"}, "master"),
])
def test_bad_values_are_code_7_naming_the_key(host, extra, key):
    c = host.container()
    before = host.state()
    conf = host.conf(**dict({"vlanId": 5}, **extra))
    out = host.run("ADD", conf, c)
    if key == "master" and extra.get("master") == "nope0" and not HAS_VLAN:
        assert not out.ok and out.code == 50, out  # the kernel check comes first
    else:
        assert not out.ok and out.code == 7 and key in out.doc["msg"], out
    assert host.state() == before
    host.delete(conf, c)


def test_del_needs_no_master_no_ipam_and_no_namespace(host):
    """DEL of a config whose master is gone, without IPAM, for a namespace that is gone:
    nothing to do and nothing fails (the reference's DEL loads the master and fails)."""
    c = host.container()
    conf = host.conf(vlanId=7, master="gone0", ipam={})
    c.delete()
    host.delete(conf, None, netns=c.path)
    host.delete(conf, None)


# -- on a kernel with 802.1Q (the VM lane) ----------------------------------------------------

@needs("vlan")
def test_tagged_traffic_conflict_check_and_del_without_master(host):
    """Everything that needs 802.1Q, on one host (the emulated VM lane costs ~1-2 s per
    process): frames tagged 100 reach the far side's VLAN 100 interface; two containers on
    VLAN 100 (masters up0 and up1b) reach each other; VLAN 200 reaches neither; a second
    device on (up0, 100) is 101 naming the holder and leaves nothing; CHECK notices another
    VLAN ID; DEL after the master is gone still releases the lease."""
    host.add_nic("up1b")
    host.batch(host.outside, [cmd for vid in (100, 200) for cmd in (
        f"link add link wire name wire.{vid} type vlan id {vid}", f"addr add 10.77.{vid}.254/24 dev wire.{vid}",
        f"link set wire.{vid} up")])
    a, b, c, d = (host.container() for _ in range(4))
    ra = host.add(vconf(host, 100, "up0"), a, cid="a")
    rb = host.add(vconf(host, 100, "up1b"), b, cid="b")
    rc = host.add(vconf(host, 200, "up1b"), c, cid="c")
    assert ra["interfaces"] == [{"name": "eth0", "mac": ctr_link(a)["address"], "sandbox": a.path}]
    assert info_data(a)["id"] == 100 and ctr_link(a)["link_index"] and ctr_addrs(a) == ["10.77.100.2/24"]
    assert reach_map(a, ["10.77.100.254", result_ip(rb), result_ip(rc)]) == {
        "10.77.100.254": True, result_ip(rb): True, result_ip(rc): False}, "VLAN 100 must reach VLAN 100 only"
    assert reach_map(c, ["10.77.100.254"]) == {"10.77.100.254": False}, "VLAN 200 reached VLAN 100"

    before = host.state()
    out = host.run("ADD", vconf(host, 100, "up0"), d, cid="second")
    assert not out.ok and out.code == 101, out
    msg = out.doc["msg"]
    assert "VLAN 100 on master up0" in msg and "container a " in msg and a.name in msg, msg
    assert host.state() == before, "the refused ADD left a link or a lease"

    assert host.check(vconf(host, 100, "up0"), ra, a, cid="a").ok
    out = host.check(vconf(host, 101, "up0"), ra, a, cid="a")
    assert not out.ok and "VLAN ID is 100" in out.doc["msg"], out
    host.batch(host.ns, ["link del up0"])  # the master goes: DEL still releases the lease
    for cid, ns, m, vid in (("a", a, "up0", 100), ("b", b, "up1b", 100), ("c", c, "up1b", 200)):
        host.delete(vconf(host, vid, m), ns, cid=cid)
    assert host.leases() == []
