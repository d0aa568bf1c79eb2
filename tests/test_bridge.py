"""bridge: real processes, real kernel, real traffic, inside throwaway namespaces.

The plugin always runs inside a throwaway "host" namespace (tests.test_bridge_common.Host),
so the bridge and everything on it vanish with the test. Firewall, VLAN and bad-input
tests are in test_bridge_firewall.py, test_bridge_vlan.py and test_bridge_input.py.
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from tests.helpers import ip_json
from tests.test_bridge_common import (  # noqa: F401 - host is a fixture
    BRIDGE,
    NET,
    ctr_addrs,
    ctr_link,
    host,
    ping,
    result_ip,
    sysctl,
)


# -- ADD: layout and traffic ------------------------------------------------------------

def test_result_layout_bridge_host_veth_container(host):
    c = host.container()
    conf = host.conf(isGateway=True)
    res = host.add(conf, c)
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == BRIDGE and names[1].startswith("veth") and len(names[1]) == 12 and names[2] == "eth0"
    assert res["interfaces"][2]["sandbox"] == c.path and "sandbox" not in res["interfaces"][1]
    assert res["ips"] == [{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}]
    # MACs in the result are the links' real ones.
    assert res["interfaces"][0]["mac"] == host.link(BRIDGE)["address"]
    assert res["interfaces"][1]["mac"] == host.link(names[1])["address"]
    assert res["interfaces"][2]["mac"] == ctr_link(c)["address"]
    hv = host.link(names[1])
    assert hv["master"] == BRIDGE and "UP" in hv["flags"]
    assert hv.get("ifalias") == f"cnipy:{NET}:c1:eth0"
    assert sysctl(host.name, f"net/ipv6/conf/{names[1]}/accept_ra") == "0"
    assert sysctl(host.name, f"net/ipv6/conf/{BRIDGE}/accept_ra") == "0"
    assert sysctl(c, "net/ipv4/conf/eth0/arp_notify") == "1"
    # The bridge port has no IPv6 of its own (no link-local address, no per-port routes);
    # the container end keeps its link-local address.
    assert sysctl(host.name, f"net/ipv6/conf/{names[1]}/disable_ipv6") == "1"
    assert not any(d.get("addr_info") for d in ip_json("-6", "addr", "show", "dev", names[1], ns=host.name))
    assert not [r for r in ip_json("-6", "route", "show", "table", "all", ns=host.name) if r.get("dev") == names[1]]
    assert [a for a in ctr_addrs(c) if a["family"] == "inet6" and a["local"].startswith("fe80:")]
    host.delete(conf, c)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_same_result_shape_as_the_reference(host, ref_bin, version):
    """Differential: our ADD result equals the reference's (Debian 1.1.1) but for MACs and
    the host veth's name."""
    c1, c2 = host.container(), host.container()
    ours = host.add(host.conf(version, isGateway=True, isDefaultGateway=True), c1, cid="ours")
    ref_conf = host.conf(version, isGateway=True, isDefaultGateway=True, bridge="cnibr1", name="refnet")
    ref = host.run("ADD", ref_conf, c2, cid="ref", binary=os.path.join(ref_bin, "bridge"))
    assert ref.ok, ref
    for doc in (ours, ref.doc):
        for i in doc["interfaces"]:
            i["mac"] = "MAC"
        doc["interfaces"][1]["name"] = "VETH"
        doc["interfaces"][0]["name"] = "BRIDGE"
        doc["interfaces"][2]["sandbox"] = "NS"
    assert ours == ref.doc
    host.delete(host.conf(version, isGateway=True), c1, cid="ours")
    assert host.run("DEL", ref_conf, c2, cid="ref", binary=os.path.join(ref_bin, "bridge")).ok


def test_two_containers_reach_each_other(host):
    c1, c2 = host.container(), host.container()
    conf = host.conf()
    r1 = host.add(conf, c1, cid="c1")
    r2 = host.add(conf, c2, cid="c2")
    assert result_ip(r1) != result_ip(r2)
    assert ping(c1, result_ip(r2)) and ping(c2, result_ip(r1))
    assert len(host.ports()) == 2
    host.delete(conf, c1, cid="c1")
    host.delete(conf, c2, cid="c2")
    assert host.ports() == [] and host.leases() == []


def test_host_reaches_container_through_gateway(host):
    c = host.container()
    conf = host.conf(isGateway=True)
    res = host.add(conf, c)
    info = ip_json("addr", "show", "dev", BRIDGE, ns=host.name)[0]["addr_info"]
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in info if a["family"] == "inet"]
    assert addrs == ["10.99.0.1/24"]
    assert ping(host.name, result_ip(res)) and ping(c, "10.99.0.1")
    assert sysctl(host.name, "net/ipv4/ip_forward") == "1"
    # Not a default gateway: the container has only its connected route.
    assert [r["dst"] for r in ip_json("-4", "route", "show", ns=c.name)] == ["10.99.0.0/24"]
    host.delete(conf, c)


def test_is_default_gateway_routes(host):
    c = host.container()
    conf = host.conf(isDefaultGateway=True)
    res = host.add(conf, c)
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.99.0.1"}]
    default = [r for r in ip_json("-4", "route", "show", ns=c.name) if r["dst"] == "default"]
    assert default and default[0]["gateway"] == "10.99.0.1" and default[0]["dev"] == "eth0"
    # An IP outside the subnet goes via the bridge: the host's own address on it answers.
    host.ns.run("ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
    assert ping(c, "192.0.2.1")
    host.delete(conf, c)


def test_default_route_from_ipam_is_not_duplicated(host):
    c = host.container()
    conf = host.conf(isDefaultGateway=True, ipam=host.ipam(routes=[{"dst": "0.0.0.0/0", "gw": "10.99.0.254"}]))
    res = host.add(conf, c)
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.99.0.254"}]
    host.delete(conf, c)


@pytest.mark.parametrize("enabledad", [False, True])
def test_dual_stack(host, enabledad):
    c1, c2 = host.container(), host.container()
    conf = host.conf(isGateway=True, ipam=host.ipam(dual=True), enabledad=enabledad)
    r1 = host.add(conf, c1, cid="c1")
    r2 = host.add(conf, c2, cid="c2")
    assert [i["address"] for i in r1["ips"]] == ["10.99.0.2/24", "fd00:99::2/64"]
    assert [i["gateway"] for i in r1["ips"]] == ["10.99.0.1", "fd00:99::1"]
    assert sysctl(c1, "net/ipv6/conf/eth0/accept_dad") == ("1" if enabledad else "0")
    if enabledad:
        assert sysctl(c1, "net/ipv6/conf/eth0/enhanced_dad") == "1"
    assert sysctl(c1, "net/ipv6/conf/eth0/disable_ipv6") == "0"
    assert sysctl(c1, "net/ipv6/conf/eth0/keep_addr_on_down") == "1"
    # When ADD returns, no address is still tentative (DAD done or off).
    v6 = [a for a in ctr_addrs(c1) if a["family"] == "inet6" and a.get("scope") == "global"]
    assert v6 and not any(a.get("tentative") for a in v6), v6
    assert ping(c1, result_ip(r2, 6), wait=2) and ping(c2, result_ip(r1, 6), wait=2)
    assert ping(c1, result_ip(r2)) and ping(host.name, result_ip(r1, 6), wait=2)
    assert sysctl(host.name, "net/ipv6/conf/all/forwarding") == "1"
    host.delete(conf, c1, cid="c1")
    host.delete(conf, c2, cid="c2")


def test_mtu_on_both_veth_ends_and_new_bridge(host):
    c = host.container()
    conf = host.conf(mtu=1400)
    res = host.add(conf, c)
    assert ctr_link(c)["mtu"] == 1400
    assert host.link(res["interfaces"][1]["name"])["mtu"] == 1400
    assert host.link(BRIDGE)["mtu"] == 1400
    assert host.check(conf, res, c).ok
    host.delete(conf, c)


def test_hairpin_flag_on_host_port(host):
    c = host.container()
    conf = host.conf(hairpinMode=True)
    res = host.add(conf, c)
    port = host.link(res["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert port["linkinfo"]["info_slave_data"]["isolated"] is False
    host.delete(conf, c)


def test_promisc_on_bridge(host):
    c = host.container()
    conf = host.conf(promiscMode=True)
    res = host.add(conf, c)
    assert host.link(BRIDGE)["promiscuity"] >= 1 and "PROMISC" in host.link(BRIDGE)["flags"]
    assert host.check(conf, res, c).ok
    host.delete(conf, c)


def test_port_isolation_blocks_container_to_container(host):
    c1, c2 = host.container(), host.container()
    conf = host.conf(isGateway=True, portIsolation=True)
    r1 = host.add(conf, c1, cid="c1")
    r2 = host.add(conf, c2, cid="c2")
    assert host.link(r1["interfaces"][1]["name"])["linkinfo"]["info_slave_data"]["isolated"] is True
    assert not ping(c1, result_ip(r2)), "isolated ports reached each other"
    # The bridge itself (the gateway) is not a port: both still reach it.
    assert ping(c1, "10.99.0.1") and ping(c2, "10.99.0.1")
    host.delete(conf, c1, cid="c1")
    host.delete(conf, c2, cid="c2")


def test_force_address_replaces_a_conflicting_bridge_address(host):
    c = host.container()
    host.ns.run("ip", "link", "add", BRIDGE, "type", "bridge")
    host.ns.run("ip", "addr", "add", "10.99.0.50/24", "dev", BRIDGE)
    conf = host.conf(isGateway=True)
    before = host.state([c])
    out = host.run("ADD", conf, c)
    assert out.code == 7 and "already has an IP address different from 10.99.0.1/24" in out.doc["msg"], out
    assert host.state([c]) == before  # nothing: no veth, no lease
    res = host.add(host.conf(isGateway=True, forceAddress=True), c)
    addrs = [a["local"] for a in ip_json("addr", "show", "dev", BRIDGE, ns=host.name)[0]["addr_info"]
             if a["family"] == "inet"]
    assert addrs == ["10.99.0.1"] and ping(c, "10.99.0.1")
    assert res["ips"][0]["gateway"] == "10.99.0.1"
    host.delete(conf, c)


def test_mac_from_cni_args_args_and_runtime_config(host):
    c1, c2, c3 = host.container(), host.container(), host.container()
    conf = host.conf()
    r = host.add(conf, c1, cid="c1", args="IgnoreUnknown=1;MAC=0a:58:0a:63:00:11")
    assert ctr_link(c1)["address"] == "0a:58:0a:63:00:11" == r["interfaces"][2]["mac"]
    conf2 = host.conf(args={"cni": {"mac": "0a:58:0a:63:00:12"}})
    host.add(conf2, c2, cid="c2", args="MAC=0a:58:0a:63:00:11")
    assert ctr_link(c2)["address"] == "0a:58:0a:63:00:12"
    conf3 = host.conf(args={"cni": {"mac": "0a:58:0a:63:00:12"}}, runtimeConfig={"mac": "0a:58:0a:63:00:13"},
                      capabilities={"mac": True})
    host.add(conf3, c3, cid="c3")
    assert ctr_link(c3)["address"] == "0a:58:0a:63:00:13"
    for cid, ctr in (("c1", c1), ("c2", c2), ("c3", c3)):
        host.delete(conf, ctr, cid=cid)


def test_dns_from_config_replaces_ipam_dns(host, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.0.53\n")
    c = host.container()
    conf = host.conf(ipam=host.ipam(resolvConf=str(resolv)))
    assert host.add(conf, c, cid="a")["dns"] == {"nameservers": ["10.0.0.53"]}
    c2 = host.container()
    conf2 = dict(conf, dns={"nameservers": ["192.0.2.53"], "search": ["example.org"]})
    assert host.add(conf2, c2, cid="b")["dns"] == {"nameservers": ["192.0.2.53"], "search": ["example.org"]}
    host.delete(conf, c, cid="a")
    host.delete(conf, c2, cid="b")


# -- L2 only ---------------------------------------------------------------------------

def test_l2_only_bridge_keeps_a_stable_mac(host):
    conf = host.conf(ipam={})
    ctrs = [host.container() for _ in range(3)]
    res = host.add(conf, ctrs[0], cid="c0")
    assert "ips" not in res and res["interfaces"][2]["sandbox"] == ctrs[0].path
    mac = host.link(BRIDGE)["address"]
    assert res["interfaces"][0]["mac"] == mac
    for i, c in enumerate(ctrs[1:], 1):
        host.add(conf, c, cid=f"c{i}")
        assert host.link(BRIDGE)["address"] == mac
    for i, c in enumerate(ctrs):
        host.delete(conf, c, cid=f"c{i}")
        assert host.link(BRIDGE)["address"] == mac, "the bridge MAC changed as ports left"
    # The container link came up and the pair passes frames (L2: link-local IPv6 works).
    c = host.container()
    res = host.add(conf, c, cid="x")
    assert "UP" in ctr_link(c)["flags"]
    assert host.check(conf, res, c).ok  # the reference fails CHECK for L2-only configs
    host.delete(conf, c, cid="x")


def test_disable_container_interface_leaves_it_down(host):
    c = host.container()
    conf = host.conf(ipam={}, disableContainerInterface=True)
    res = host.add(conf, c)
    assert "UP" not in ctr_link(c)["flags"]
    assert host.link(res["interfaces"][1]["name"])["master"] == BRIDGE
    host.delete(conf, c)
    assert ctr_link(c) is None


# -- DEL -------------------------------------------------------------------------------

def test_repeated_del(host):
    c = host.container()
    conf = host.conf(isGateway=True)
    host.add(conf, c)
    for _ in range(3):
        host.delete(conf, c)
    assert host.ports() == [] and host.leases() == [] and ctr_link(c) is None
    # DEL for an attachment never added, and without any bridge at all.
    host.delete(host.conf(bridge="nosuchbr"), c, cid="never")


def test_del_without_netns_releases_everything_outside(host):
    c = host.container()
    conf = host.conf(isGateway=True)
    res = host.add(conf, c)
    host.delete(conf, None)  # CNI_NETNS empty
    assert host.link(res["interfaces"][1]["name"]) is None and host.leases() == []
    assert ctr_link(c) is None  # the container end went with the pair


def test_del_after_the_namespace_is_gone(host):
    c = host.container()
    conf = host.conf(isGateway=True)
    host.add(conf, c)
    path = c.path
    c.delete()
    host.delete(conf, None, netns=path)
    assert host.ports() == [] and host.leases() == []


def test_del_after_container_interface_removed_by_someone_else(host):
    c = host.container()
    conf = host.conf()
    host.add(conf, c)
    c.run("ip", "link", "del", "eth0")
    host.delete(conf, c)
    assert host.ports() == [] and host.leases() == []


def test_del_of_a_reference_made_attachment(host, ref_bin):
    """A veth made by the reference (no tag) is found through the container and deleted."""
    c = host.container()
    conf = host.conf("1.0.0", isGateway=True)
    ref = host.run("ADD", conf, c, binary=os.path.join(ref_bin, "bridge"))
    assert ref.ok, ref
    host.delete(conf, c)
    assert ctr_link(c) is None and host.ports() == [] and host.leases() == []


def test_del_spares_a_foreign_interface_with_the_same_name(host):
    c = host.container()
    c.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    conf = host.conf()
    out = host.run("ADD", conf, c)
    assert not out.ok and "already exists" in out.doc["msg"]
    host.delete(conf, c)
    assert ctr_link(c) is not None


# -- failed ADD leaves nothing ----------------------------------------------------------

def test_failed_add_existing_ifname_leaves_nothing(host):
    c = host.container()
    c.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    before = host.state([c])
    out = host.run("ADD", host.conf(isGateway=True, ipMasq=True), c)
    assert not out.ok and out.code == 4 and "'eth0' already exists" in out.doc["msg"], out
    assert host.state([c]) == before
    assert host.link(BRIDGE) is None


def test_failed_add_ipam_exhausted_leaves_nothing(host):
    conf = host.conf(isGateway=True, ipMasq=True,
                     ipam=host.ipam(ranges=[[{"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.9",
                                              "rangeEnd": "10.99.0.9"}]]))
    c1, c2 = host.container(), host.container()
    host.add(conf, c1, cid="c1")
    before = host.state([c1, c2])
    out = host.run("ADD", conf, c2, cid="c2")
    assert not out.ok and out.code == 100, out  # host-local's own code comes through
    assert host.state([c1, c2]) == before
    host.delete(conf, c1, cid="c1")


def test_failed_add_on_a_new_bridge_removes_the_bridge(host):
    conf = host.conf(ipam=host.ipam(ranges=[[{"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.9",
                                              "rangeEnd": "10.99.0.9"}]], routes=[{"dst": "192.0.2.0/24",
                                                                                   "gw": "198.51.100.1"}]))
    c = host.container()
    before = host.state([c])
    out = host.run("ADD", conf, c)  # the route's gateway is unreachable: fails after IPAM
    assert not out.ok and "failed to add route" in out.doc["msg"], out
    assert host.state([c]) == before


# -- CHECK -----------------------------------------------------------------------------

def test_check_after_add_and_what_it_notices(host):
    c = host.container()
    conf = host.conf(isDefaultGateway=True, mtu=1400, ipam=host.ipam(dual=True))
    res = host.add(conf, c)
    ok = host.check(conf, res, c)
    assert ok.ok and ok.stdout == b"", ok
    veth = res["interfaces"][1]["name"]
    # hairpin flipped behind our back
    host.ns.run("ip", "link", "set", "dev", veth, "type", "bridge_slave", "hairpin", "on")
    out = host.check(conf, res, c)
    assert not out.ok and "hairpin" in out.doc["msg"], out
    host.ns.run("ip", "link", "set", "dev", veth, "type", "bridge_slave", "hairpin", "off")
    # MTU changed in the container
    c.run("ip", "link", "set", "eth0", "mtu", "1300")
    out = host.check(conf, res, c)
    assert not out.ok and "MTU 1300" in out.doc["msg"], out
    c.run("ip", "link", "set", "eth0", "mtu", "1400")
    # a route removed
    c.run("ip", "route", "del", "default")
    out = host.check(conf, res, c)
    assert not out.ok and "0.0.0.0/0" in out.doc["msg"], out
    c.run("ip", "route", "add", "default", "via", "10.99.0.1")
    assert host.check(conf, res, c).ok
    # an address removed
    c.run("ip", "addr", "del", "fd00:99::2/64", "dev", "eth0")
    out = host.check(conf, res, c)
    assert not out.ok and "fd00:99::2/64" in out.doc["msg"], out
    # the interface gone
    c.run("ip", "link", "del", "eth0")
    out = host.check(conf, res, c)
    assert not out.ok and "eth0" in out.doc["msg"], out
    host.delete(conf, c)


def test_check_needs_prev_result(host):
    c = host.container()
    conf = host.conf()
    host.add(conf, c)
    out = host.run("CHECK", conf, c)
    assert not out.ok and "prevResult" in out.doc["msg"]
    host.delete(conf, c)


def test_check_goes_to_ipam(host):
    c = host.container()
    conf = host.conf()
    res = host.add(conf, c)
    for f in host.leases():
        os.unlink(os.path.join(host.data_dir, "brnet", f))
    out = host.check(conf, res, c)
    assert not out.ok, out
    host.delete(conf, c)


# -- GC / STATUS (firewall parts in test_bridge_firewall.py) -----------------------------

def test_gc_removes_leases_and_veths_of_stale_attachments(host):
    c1, c2 = host.container(), host.container()
    conf = host.conf()
    r1 = host.add(conf, c1, cid="keep")
    r2 = host.add(conf, c2, cid="stale")
    gc = {"cniVersion": "1.1.0", "name": NET, "type": "bridge", "bridge": BRIDGE, "ipam": conf["ipam"],
          "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    out = host.run("GC", gc, None, cid="", ifname="")
    assert out.ok and out.stdout == b"", out
    assert host.leases() == [result_ip(r1)]
    assert host.link(r2["interfaces"][1]["name"]) is None and ctr_link(c2) is None
    assert host.check(conf, r1, c1, cid="keep").ok
    # No list: GC removes nothing.
    del gc["cni.dev/valid-attachments"]
    assert host.run("GC", gc, None, cid="", ifname="").ok
    assert host.leases() == [result_ip(r1)]
    host.delete(conf, c1, cid="keep")


def test_status_forwards_to_ipam(host):
    st = {"cniVersion": "1.1.0", "name": NET, "type": "bridge", "ipam": host.ipam()}
    out = host.run("STATUS", st, None, cid="", ifname="")
    assert out.ok and out.stdout == b"", out
    bad = dict(st, ipam={"type": "no-such-ipam"})
    out = host.run("STATUS", bad, None, cid="", ifname="")
    assert not out.ok, out
    l2 = dict(st, ipam={})
    assert host.run("STATUS", l2, None, cid="", ifname="").ok


# -- concurrency -----------------------------------------------------------------------

def test_parallel_adds_on_one_bridge(host):
    n = 16
    conf = host.conf(isGateway=True)
    ctrs = [host.container() for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        outs = list(ex.map(lambda i: host.run("ADD", conf, ctrs[i], cid=f"p{i}"), range(n)))
    assert all(o.ok for o in outs), [str(o) for o in outs if not o.ok]
    ips = {result_ip(o.doc) for o in outs}
    assert len(ips) == n and len(host.ports()) == n
    assert len({o.doc["interfaces"][0]["mac"] for o in outs}) == 1  # one bridge, one MAC
    assert ping(ctrs[0], result_ip(outs[-1].doc)) and ping(ctrs[-1], "10.99.0.1")
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        dels = list(ex.map(lambda i: host.run("DEL", conf, ctrs[i], cid=f"p{i}"), range(n)))
    assert all(d.ok for d in dels), [str(d) for d in dels if not d.ok]
    assert host.ports() == [] and host.leases() == []
