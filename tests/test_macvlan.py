"""macvlan: real plugin processes on the real kernel, inside throwaway namespaces.

The plugin runs in a throwaway "host" namespace whose NIC stand-in ``up0`` is wired to a
bridge in an "outside" namespace (tests.l2_common.L2Host). Traffic tests: each mode
between two containers on one master, and containers reaching the outside through it.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import ip_json
from tests.l2_common import NET, OUTSIDE_IP, ctr_addrs, ctr_link, make_host, reaches, result_ip, sysctl


@pytest.fixture
def host(request, tmp_path, our_bin):
    return make_host(request, tmp_path, "macvlan", bin_dir=our_bin)


@pytest.fixture
def hairpin_host(request, tmp_path, our_bin):
    """The wire's bridge sends frames back out of the port they came from (what VEPA needs
    of the switch)."""
    return make_host(request, tmp_path, "macvlan", bin_dir=our_bin, hairpin=True)


# -- ADD -----------------------------------------------------------------------------------

def test_result_and_kernel_state(host):
    c = host.container()
    conf = host.conf(mode="private", mtu=1400, bcqueuelen=250, mac="0a:00:00:00:01:01")
    res = host.add(conf, c, args="IgnoreUnknown=1;K8S_POD_NAME=x")
    lk = ctr_link(c)
    assert res["interfaces"] == [{"name": "eth0", "mac": "0a:00:00:00:01:01", "sandbox": c.path}]
    assert res["ips"] == [{"interface": 0, "address": "10.77.0.10/24", "gateway": OUTSIDE_IP}]
    assert lk["linkinfo"]["info_kind"] == "macvlan" and lk["linkinfo"]["info_data"]["mode"] == "private"
    assert lk["linkinfo"]["info_data"].get("bcqueuelen") == 250
    assert lk["mtu"] == 1400 and lk["address"] == "0a:00:00:00:01:01" and "UP" in lk["flags"]
    assert lk.get("ifalias") == f"cnipy:{NET}:c1:eth0"
    assert ctr_addrs(c) == ["10.77.0.10/24"]
    assert sysctl(c, "net/ipv4/conf/eth0/arp_notify") == "1"
    # Born in the container: nothing new in the host, the parent is up0 there.
    assert sorted(l["ifname"] for l in ip_json("link", "show", ns=host.name)) == ["lo", "up0"]
    host.delete(conf, c)
    assert ctr_link(c) is None and host.leases() == []


def test_mac_sources_later_wins(host):
    c1, c2, c3 = host.container(), host.container(), host.container()
    base = host.conf(mac="0a:00:00:00:02:01")
    r1 = host.add(base, c1, cid="m1", args="MAC=0a:00:00:00:02:02")
    assert r1["interfaces"][0]["mac"] == ctr_link(c1)["address"] == "0a:00:00:00:02:02"
    rc = dict(base, runtimeConfig={"mac": "0a:00:00:00:02:03"}, capabilities={"mac": True})
    r2 = host.add(rc, c2, cid="m2", args="MAC=0a:00:00:00:02:02")
    assert ctr_link(c2)["address"] == "0a:00:00:00:02:03" == r2["interfaces"][0]["mac"]
    r3 = host.add(dict(base, args={"cni": {"mac": "0a:00:00:00:02:04"}}), c3, cid="m3")
    assert ctr_link(c3)["address"] == "0a:00:00:00:02:04" == r3["interfaces"][0]["mac"]
    for cid, c in (("m1", c1), ("m2", c2), ("m3", c3)):
        host.delete(base, c, cid=cid)


def test_default_master_is_the_default_route_interface(host):
    c = host.container()
    conf = host.conf(master=None)
    res = host.add(conf, c)
    lk = ctr_link(c)
    up0 = ip_json("link", "show", "up0", ns=host.name)[0]
    assert lk["link_index"] == up0["ifindex"] and res["interfaces"][0]["name"] == "eth0"
    assert reaches(c, OUTSIDE_IP)
    host.delete(conf, c)


def test_no_master_and_no_default_route_is_refused_before_anything(host):
    host.ns.run("ip", "route", "del", "default")
    c = host.container()
    before = host.state()
    out = host.run("ADD", host.conf(master=None), c)
    assert not out.ok and out.code == 7 and "default route" in out.doc["msg"], out
    assert host.state() == before


def test_l2_only_with_empty_ipam(host):
    c = host.container()
    conf = host.conf(ipam={})
    res = host.add(conf, c)
    assert "ips" not in res and res["interfaces"][0]["name"] == "eth0"
    lk = ctr_link(c)
    assert "UP" in lk["flags"] and ctr_addrs(c) == []
    assert host.check(conf, res, c).ok
    host.delete(conf, c)
    # A 0.2.0 result is addresses only: refused before anything is created.
    before = host.state()
    out = host.run("ADD", host.conf("0.2.0", ipam={}), c)
    assert not out.ok and out.code == 7 and "cniVersion" in out.doc["msg"], out
    assert host.state() == before


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_spec_version(host, version):
    c = host.container()
    conf = host.conf(version)
    res = host.add(conf, c)
    assert res["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert res["ip4"]["ip"] == "10.77.0.10/24" and "interfaces" not in res
    else:
        assert res["interfaces"][0]["name"] == "eth0" and res["ips"][0]["address"] == "10.77.0.10/24"
        assert ("version" in res["ips"][0]) == version.startswith("0.")
    if version >= "0.4.0":
        assert host.check(conf, res, c).ok
    host.delete(conf, c)
    assert host.leases() == []


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_same_result_as_the_reference(host, ref_bin, version):
    """Differential: our ADD result equals the reference's (Debian 1.1.1) but for the MAC."""
    c1, c2 = host.container(), host.container()
    ours = host.add(host.conf(version), c1, cid="ours")
    ref_conf = host.conf(version, name="refnet")
    ref = host.run("ADD", ref_conf, c2, cid="ref", binary=os.path.join(ref_bin, "macvlan"))
    assert ref.ok, ref
    for doc, c in ((ours, c1), (ref.doc, c2)):
        assert doc["interfaces"][0]["mac"] == ctr_link(c)["address"]
        doc["interfaces"][0]["mac"] = "MAC"
        doc["interfaces"][0]["sandbox"] = "NS"
    assert ours == ref.doc
    host.delete(host.conf(version), c1, cid="ours")
    assert host.run("DEL", ref_conf, c2, cid="ref", binary=os.path.join(ref_bin, "macvlan")).ok


def test_link_in_container(host):
    """The master lives in the container (stacked on an interface an earlier plugin made)."""
    c = host.container()
    host.ns.run("ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1")
    host.ns.run("ip", "link", "set", "inner0", "netns", c.name)
    c.run("ip", "link", "set", "inner0", "up")
    conf = host.conf(master="inner0", linkInContainer=True)
    res = host.add(conf, c, ifname="net1")
    lk = ctr_link(c, "net1")
    assert lk["link"] == "inner0", lk  # its parent, in the same namespace
    assert host.check(conf, res, c, ifname="net1").ok
    host.delete(conf, c, ifname="net1")
    assert ctr_link(c, "net1") is None and ctr_link(c, "inner0") is not None


# -- traffic ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,siblings", [("bridge", True), ("private", False), ("vepa", False)])
def test_modes_between_two_containers_and_to_the_outside(host, mode, siblings):
    a, b = host.container(), host.container()
    conf = host.conf(mode=mode)
    ra = host.add(conf, a, cid="a")
    rb = host.add(conf, b, cid="b")
    assert reaches(a, OUTSIDE_IP) and reaches(b, OUTSIDE_IP), "containers must reach the wire through up0"
    assert reaches(a, result_ip(rb)) == siblings, f"mode {mode}: sibling traffic should be {siblings}"
    # By design the host cannot reach its own macvlans through the master.
    assert not reaches(host.name, result_ip(ra), tries=1)
    for cid, c in (("a", a), ("b", b)):
        host.delete(conf, c, cid=cid)


@pytest.mark.parametrize("mode,siblings", [("vepa", True), ("private", False)])
def test_vepa_goes_through_a_hairpin_switch_and_private_never(hairpin_host, mode, siblings):
    host = hairpin_host
    a, b = host.container(), host.container()
    conf = host.conf(mode=mode)
    host.add(conf, a, cid="a")
    rb = host.add(conf, b, cid="b")
    assert reaches(a, result_ip(rb)) == siblings
    for cid, c in (("a", a), ("b", b)):
        host.delete(conf, c, cid=cid)


def test_passthru_takes_the_master_for_one_container(host):
    a, b = host.container(), host.container()
    conf = host.conf(mode="passthru")
    host.add(conf, a, cid="a")
    assert reaches(a, OUTSIDE_IP)
    before = host.state()
    out = host.run("ADD", conf, b, cid="b")
    assert not out.ok and out.code == 101 and "passthru" in out.doc["msg"] and "up0" in out.doc["msg"], out
    assert host.state() == before, "the refused passthru ADD left something"
    host.delete(conf, b, cid="b")  # the runtime's DEL after the failed ADD
    host.delete(conf, a, cid="a")
    assert host.leases() == []


# -- failed ADDs leave nothing --------------------------------------------------------------

def test_failed_add_route_error_leaves_no_link_and_no_lease(host):
    """A route the kernel refuses (gateway not on the link) fails the ADD after the link
    and the lease exist: both are undone."""
    c = host.container()
    conf = host.conf(ipam=host.ipam(routes=[{"dst": "10.200.0.0/16", "gw": "10.250.0.1"}]))
    before = host.state()
    out = host.run("ADD", conf, c)
    assert not out.ok and "route" in out.doc["msg"], out
    assert host.state() == before
    host.delete(conf, c)


def test_failed_add_ipam_exhausted_leaves_no_link(host, ref_bin):
    """IPAM fails after the link exists: ours removes it; the reference leaves it in the
    container (its deferred cleanup does not run on that path)."""
    a, b = host.container(), host.container()
    one = host.conf("1.0.0", ipam=dict(host.ipam(), ranges=[[{"subnet": "10.78.0.0/30", "rangeStart": "10.78.0.2",
                                                                "rangeEnd": "10.78.0.2"}]]))
    host.add(one, a, cid="a")
    before = host.state()
    out = host.run("ADD", one, b, cid="b")
    assert not out.ok and out.code == 100, out
    assert host.state() == before
    host.delete(one, b, cid="b")
    ref = host.run("ADD", one, b, cid="b", binary=os.path.join(ref_bin, "macvlan"))
    assert not ref.ok
    assert ctr_link(b) is not None, "the reference no longer leaks its link: update the README's differences"
    assert host.run("DEL", one, b, cid="b", binary=os.path.join(ref_bin, "macvlan")).ok
    host.delete(one, a, cid="a")


def test_existing_ifname_is_refused_and_its_del_spares_it(host):
    c = host.container()
    c.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")
    before = host.state()
    out = host.run("ADD", host.conf(), c)
    assert not out.ok and out.code == 4 and "already exists" in out.doc["msg"], out
    assert host.state() == before
    host.delete(host.conf(), c)
    assert ctr_link(c)["linkinfo"]["info_kind"] == "veth", "DEL deleted a foreign interface"


# -- DEL --------------------------------------------------------------------------------------

def test_del_twice_without_netns_and_after_the_namespace_is_gone(host):
    a, b = host.container(), host.container()
    conf = host.conf()
    host.add(conf, a, cid="a")
    host.add(conf, b, cid="b")
    host.delete(conf, a, cid="a")
    host.delete(conf, a, cid="a")
    assert host.leases() == ["10.77.0.11"]
    b.delete()
    host.delete(conf, None, cid="b", netns=b.path)
    host.delete(conf, None, cid="b")
    assert host.leases() == []


def test_del_needs_neither_master_nor_default_route(host):
    c = host.container()
    conf = host.conf()
    host.add(conf, c)
    host.ns.run("ip", "link", "del", "up0")  # the NIC is gone, and the default route with it
    host.delete(conf, c)
    assert ctr_link(c) is None and host.leases() == []


# -- CHECK ------------------------------------------------------------------------------------

def test_check_after_add_and_what_it_notices(host):
    c = host.container()
    conf = host.conf(mode="bridge", mtu=1450)
    res = host.add(conf, c)
    assert host.check(conf, res, c).ok
    out = host.run("CHECK", conf, c)
    assert not out.ok and out.code == 7 and "prevResult" in out.doc["msg"]
    c.run("ip", "link", "set", "eth0", "type", "macvlan", "mode", "private")
    out = host.check(conf, res, c)
    assert not out.ok and "mode" in out.doc["msg"], out
    c.run("ip", "link", "set", "eth0", "type", "macvlan", "mode", "bridge")
    c.run("ip", "link", "set", "eth0", "mtu", "1400")
    out = host.check(conf, res, c)
    assert not out.ok and "MTU" in out.doc["msg"], out
    c.run("ip", "link", "set", "eth0", "mtu", "1450")
    assert host.check(conf, res, c).ok
    c.run("ip", "addr", "flush", "dev", "eth0")
    out = host.check(conf, res, c)
    assert not out.ok and out.code == 102 and "10.77.0.10" in out.doc["msg"], out
    c.run("ip", "link", "del", "eth0")
    out = host.check(conf, res, c)
    assert not out.ok and out.code == 102, out
    host.delete(conf, c)


def test_check_notices_a_changed_mac_and_another_master(host):
    c = host.container()
    conf = host.conf()
    res = host.add(conf, c)
    c.run("ip", "link", "set", "eth0", "address", "0a:00:00:00:09:09")
    out = host.check(conf, res, c)
    assert not out.ok and "MAC" in out.doc["msg"], out
    host.ns.run("ip", "link", "add", "up9", "type", "veth", "peer", "name", "up9p")
    out = host.check(dict(conf, master="up9"), res, c)
    assert not out.ok and "up9" in out.doc["msg"], out
    host.delete(conf, c)


# -- DNS, GC, STATUS --------------------------------------------------------------------------

def test_ipam_dns_is_kept_unless_the_config_sets_dns(host, ref_bin, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.77.0.53\nsearch example.test\n")
    a, b, r = host.container(), host.container(), host.container()
    conf = host.conf("1.0.0", ipam=host.ipam(resolvConf=str(resolv)))
    res = host.add(conf, a, cid="a")
    assert res["dns"] == {"nameservers": ["10.77.0.53"], "search": ["example.test"]}
    own = dict(conf, dns={"nameservers": ["10.77.0.99"]})
    assert host.add(own, b, cid="b")["dns"] == {"nameservers": ["10.77.0.99"]}
    ref = host.run("ADD", conf, r, cid="r", binary=os.path.join(ref_bin, "macvlan"))
    assert ref.ok and ref.doc["dns"] == {}, "the reference now keeps IPAM's dns: update the README"
    for cid, c in (("a", a), ("b", b)):
        host.delete(conf, c, cid=cid)
    assert host.run("DEL", conf, r, cid="r", binary=os.path.join(ref_bin, "macvlan")).ok


def test_gc_releases_leases_of_stale_attachments(host):
    a, b = host.container(), host.container()
    conf = host.conf()
    ra = host.add(conf, a, cid="a")
    host.add(conf, b, cid="b")
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    out = host.run("GC", gc)
    assert out.ok and out.stdout == b"", out
    assert host.leases() == ["10.77.0.10"]
    assert host.check(conf, ra, a, cid="a").ok
    for cid, c in (("a", a), ("b", b)):
        host.delete(conf, c, cid=cid)


def test_status_says_something_real(host):
    conf = host.conf()
    out = host.run("STATUS", conf)
    assert out.ok and out.stdout == b"", out
    out = host.run("STATUS", host.conf(master="nope0"))
    assert not out.ok and out.code == 50 and "nope0" in out.doc["msg"], out
    full = host.conf(ipam=dict(host.ipam(), ranges=[[{"subnet": "10.78.0.0/30", "rangeStart": "10.78.0.2",
                                                        "rangeEnd": "10.78.0.2"}]]))
    c = host.container()
    host.add(full, c)
    out = host.run("STATUS", full)
    assert not out.ok and out.code == 50, out
    host.delete(full, c)
    host.ns.run("ip", "route", "del", "default")
    out = host.run("STATUS", host.conf(master=None))
    assert not out.ok and out.code == 50 and "default route" in out.doc["msg"], out


# -- hostile input ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,key", [
    ({"mode": "source"}, "mode"), ({"mode": "Bridge"}, "mode"), ({"mode": 4}, "mode"),
    ({"mtu": 9000}, "mtu"), ({"mtu": -1}, "mtu"), ({"mtu": "1500"}, "mtu"),
    ({"mac": "01:00:00:00:00:01"}, "mac"), ({"mac": "zz"}, "mac"),
    ({"bcqueuelen": -1}, "bcqueuelen"), ({"bcqueuelen": 1 << 32}, "bcqueuelen"),
    ({"master": "up%d"}, "master"), ({"master": "nope0"}, "master"), ({"linkInContainer": "yes"}, "linkInContainer"),
    ({"ipam": {"type": 5}}, "ipam.type"), ({"dns": {"nameservers": "x"}}, "dns"),
    ({"runtimeConfig": {"mac": "nope"}}, "runtimeConfig.mac"),
])
def test_bad_values_are_code_7_naming_the_key_and_leave_nothing(host, extra, key):
    c = host.container()
    before = host.state()
    out = host.run("ADD", host.conf(**extra), c)
    assert not out.ok and out.code == 7 and key in out.doc["msg"], out
    assert b"Traceback" not in out.stderr
    assert host.state() == before
    host.delete(host.conf(**extra), c)


def test_keys_in_any_case_as_go_reads_them(host):
    c = host.container()
    conf = host.conf(master=None, MASTER="up0", Mode="private", MTU=1300, BcQueueLen=300)
    res = host.add(conf, c)
    lk = ctr_link(c)
    assert lk["linkinfo"]["info_data"]["mode"] == "private" and lk["mtu"] == 1300
    assert host.check(conf, res, c).ok
    host.delete(conf, c)


def test_unknown_cni_args_key_is_code_2_unless_ignored(host):
    c = host.container()
    out = host.run("ADD", host.conf(), c, args="FOO=bar")
    assert not out.ok and out.code == 2 and "FOO" in out.doc["msg"], out
    assert host.leases() == [] and ctr_link(c) is None
