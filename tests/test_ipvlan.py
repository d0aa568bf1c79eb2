"""ipvlan: real plugin processes on the real kernel, inside throwaway namespaces.

This machine's kernel has no ipvlan: here the plugin must refuse with code 50 before
creating anything (and bad configs are code 7 before the kernel is asked); the tests
marked ``needs("ipvlan")`` run in the VM lane on Debian's stock kernel
(/work/shared/tools/vm-run.sh), where the refusal test skips.
"""

from __future__ import annotations

import pytest

from tests.kernel_features import missing, needs
from tests.l2_common import (
    HOST_IP,
    OUTSIDE_IP,
    ctr_addrs,
    ctr_link,
    info_data,
    ip_json,
    make_host,
    reach_map,
    result_ip,
    with_prev,
)

HAS_IPVLAN = not missing(["ipvlan"])


@pytest.fixture
def host(request, tmp_path, our_bin):
    return make_host(request, tmp_path, "ipvlan", bin_dir=our_bin)


# -- on this kernel: refused, or bad config -------------------------------------------------

@pytest.mark.skipif(HAS_IPVLAN, reason="this kernel has ipvlan links: nothing to refuse")
def test_ipvlan_refused_with_code_50_before_anything(host):
    c = host.container()
    before = host.state()
    for verb in ("ADD", "STATUS"):
        out = host.run(verb, host.conf(mode="l3"), c)
        assert not out.ok and out.code == 50, out
        msg = out.doc["msg"]
        assert "ipvlan network 'l2net' (mode l3)" in msg and "ipvlan links" in msg, msg
    assert host.state() == before, "a refused ipvlan ADD created something (link or lease)"
    host.delete(host.conf(), c)


@pytest.mark.parametrize("extra,key", [
    ({"mode": "l4"}, "mode"), ({"mode": "L2"}, "mode"), ({"mtu": 70000}, "mtu"), ({"master": "a/b"}, "master"),
    ({"ipam": None}, "ipam.type"), ({"linkInContainer": 1}, "linkInContainer"),
    ({"master": None, "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "a"}, {"name": "b"}],
                                     "ips": [{"address": "10.77.0.50/24", "interface": 0}]}}, "master"),
])
def test_bad_values_are_code_7_naming_the_key(host, extra, key):
    c = host.container()
    before = host.state()
    out = host.run("ADD", host.conf(**extra), c)
    assert not out.ok and out.code == 7 and key in out.doc["msg"], out
    assert host.state() == before
    host.delete(host.conf(**extra), c)


# -- on a kernel with ipvlan (the VM lane) ----------------------------------------------------

@needs("ipvlan")
def test_l2_l3_traffic_chained_check_failures_and_del_without_master(host):
    """Everything that needs the ipvlan kernel, on one host (the emulated VM lane costs
    ~1-2 s per process): a master carrying a macvlan refused with 101; l2 on NIC up2
    between two containers (one chained: master and addresses from its prevResult, no
    IPAM) and to the outside; l3 on up0 (the default-route interface: master omitted)
    between two containers and to the outside, which routes their subnet to the host;
    CHECK with master omitted, and a mode change noticed; DEL after the NIC and the
    default route are gone."""
    host.add_nic("up2")
    host.batch(host.outside, [f"route add 10.79.0.0/24 via {HOST_IP}"])
    a, b, c, d = (host.container() for _ in range(4))

    host.batch(host.ns, ["link add mv0 link up2 type macvlan"])
    l2 = host.conf(mode="l2", master="up2")
    before = host.state()
    out = host.run("ADD", l2, a, cid="a")
    assert not out.ok and out.code == 101 and "up2" in out.doc["msg"], out
    assert host.state() == before
    host.batch(host.ns, ["link del mv0"])

    ra = host.add(l2, a, cid="a")
    up2 = ip_json("link", "show", "up2", ns=host.name)[0]
    assert ra["interfaces"] == [{"name": "eth0", "mac": up2["address"], "sandbox": a.path}], \
        "an ipvlan has its master's MAC"
    assert info_data(a)["mode"] == "l2" and ctr_addrs(a) == ["10.77.0.10/24"]
    prev_b = {"cniVersion": "1.0.0", "interfaces": [{"name": "up2"}],
              "ips": [{"address": "10.77.0.50/24", "interface": 0}], "dns": {"nameservers": ["10.77.0.53"]}}
    chained = host.conf("1.0.0", mode="l2", master=None, ipam=None)
    rb = host.add(with_prev(chained, prev_b), b, cid="b")
    assert rb["ips"] == [{"interface": 0, "address": "10.77.0.50/24"}] and rb["dns"] == prev_b["dns"]
    assert [i["name"] for i in rb["interfaces"]] == ["eth0"] and ctr_addrs(b) == ["10.77.0.50/24"]

    l3 = host.conf(mode="l3", master=None, ipam=host.ipam(subnet="10.79.0.0/24", routes=[{"dst": "0.0.0.0/0"}]))
    rc = host.add(l3, c, cid="c")
    prev_d = {"cniVersion": "1.1.0", "interfaces": [{"name": "up0"}],
              "ips": [{"address": "10.79.0.50/24", "interface": 0}], "routes": [{"dst": "0.0.0.0/0"}]}
    l3_chained = host.conf(mode="l3", master=None, ipam=None)
    host.add(with_prev(l3_chained, prev_d), d, cid="d")
    assert info_data(c)["mode"] == "l3" and "NOARP" in ctr_link(c)["flags"]
    assert reach_map(a, ["10.77.0.50", OUTSIDE_IP]) == {"10.77.0.50": True, OUTSIDE_IP: True}
    assert reach_map(c, ["10.79.0.50", OUTSIDE_IP]) == {"10.79.0.50": True, OUTSIDE_IP: True}
    assert reach_map(host.outside, ["10.77.0.10", result_ip(rc)]) == {"10.77.0.10": True, result_ip(rc): True}

    # CHECK with master omitted works (the reference always fails it); a mode change is noticed.
    assert host.check(l3, rc, c, cid="c").ok
    out = host.check(dict(l3, mode="l2"), rc, c, cid="c")
    assert not out.ok and "mode" in out.doc["msg"], out
    # DEL with master omitted after the NIC and the default route are gone (the reference's
    # DEL looks the default route up again and fails).
    host.batch(host.ns, ["link del up0"])
    host.delete(l3, c, cid="c")
    host.delete(l3_chained, d, cid="d")
    host.delete(l2, a, cid="a")
    host.delete(chained, b, cid="b")
    assert [ctr_link(x) for x in (a, b, c, d)] == [None] * 4 and host.leases() == []
