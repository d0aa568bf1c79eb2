"""cnilib's interface-plugin seam, on the real kernel in throwaway namespaces: link
builders (macvlan, ipvlan, vlan, dummy, veth born in the container; tap through
/dev/net/tun), an IPAM result applied to and checked against an interface
(cnilib.ifconfig), gateway addresses (cnilib.gateway) and the undo stack (cnilib.undo).

Link kinds this kernel lacks (ipvlan, vlan, dummy here) must be refused cleanly
(EOPNOTSUPP, nothing created); where the kernel has them they must come out as asked.
"""

from __future__ import annotations

import subprocess

import pytest

from cnilib import gateway, ifconfig, link, netns, nl, tuntap
from cnilib.errors import INVALID_CONFIG, NOT_FOUND, CNIError
from cnilib.ip import parse_cidr, parse_ip
from cnilib.types import Interface, IPConfig, Result, Route
from cnilib.undo import Undo
from tests.helpers import Netns, ip_json

EOPNOTSUPP = 95


@pytest.fixture
def pair():
    """A "host" namespace with a veth ``up0`` (the parent) and a "container" namespace."""
    host, ctr = Netns("cnih"), Netns("cnic")
    host.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    host.run("ip", "link", "set", "up0", "up")
    try:
        yield host, ctr
    finally:
        ctr.delete()
        host.delete()


def _in_host(host: Netns, fn, *args):
    return netns.run_in(host.path, fn, *args)


def _kernel_has(kind: str) -> bool:
    ns = Netns("cnik")
    try:
        extra = ["link", "lo", "type", "vlan", "id", "5"] if kind == "vlan" else ["type", kind]
        if kind in ("ipvlan", "macvlan"):
            ns.run("ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
            extra = ["link", "p0", "type", kind]
        return subprocess.run(["ip", "-n", ns.name, "link", "add", "k0", *extra], capture_output=True).returncode == 0
    finally:
        ns.delete()


def test_macvlan_born_in_the_container(pair):
    host, ctr = pair

    def make():
        fd = netns.open_fd(ctr.path)
        try:
            with nl.Socket() as s:
                parent = link.get(s, "up0")
                link.create(s, link.macvlan_request("tmp0", parent.index, "private", netns_fd=fd, mtu=1400,
                                                    mac="0a:00:00:00:00:09"))
        finally:
            import posix
            posix.close(fd)

    _in_host(host, make)
    assert "tmp0" not in [l["ifname"] for l in ip_json("link", "show", ns=host.name)]
    got = ip_json("-d", "link", "show", "tmp0", ns=ctr.name)[0]
    assert got["linkinfo"]["info_kind"] == "macvlan" and got["linkinfo"]["info_data"]["mode"] == "private"
    assert got["mtu"] == 1400 and got["address"] == "0a:00:00:00:00:09"


@pytest.mark.parametrize("kind", ["ipvlan", "vlan", "dummy"])
def test_other_link_kinds_as_asked_or_refused(pair, kind):
    host, ctr = pair
    has = _kernel_has(kind)

    def make():
        with nl.Socket() as s:
            parent = link.get(s, "up0").index
            req = {"ipvlan": lambda: link.ipvlan_request("k0", parent, "l3", mtu=1400),
                   "vlan": lambda: link.vlan_link_request("k0", parent, 42, mtu=1400),
                   "dummy": lambda: link.dummy_request("k0", mtu=1400)}[kind]()
            link.create(s, req)

    if not has:
        with pytest.raises(OSError) as e:
            _in_host(host, make)
        assert e.value.errno == EOPNOTSUPP
        assert "k0" not in [l["ifname"] for l in ip_json("link", "show", ns=host.name)]
        return
    _in_host(host, make)
    got = ip_json("-d", "link", "show", "k0", ns=host.name)[0]
    assert got["linkinfo"]["info_kind"] == kind and got["mtu"] == 1400
    if kind == "vlan":
        assert got["linkinfo"]["info_data"]["id"] == 42
    if kind == "ipvlan":
        assert got["linkinfo"]["info_data"]["mode"] == "l3"


def test_tap_in_a_namespace(pair):
    host, ctr = pair
    netns.run_in(ctr.path, tuntap.create, "tap0", owner=65534)
    got = ip_json("-d", "link", "show", "tap0", ns=ctr.name)[0]
    assert got["linkinfo"]["info_kind"] == "tun" and got["linkinfo"]["info_data"]["type"] == "tap"
    assert got["linkinfo"]["info_data"]["user"] in ("nobody", 65534, "65534")
    with pytest.raises(OSError):  # the name is taken
        netns.run_in(ctr.path, tuntap.create, "tap0")


def _result(with_v6: bool = True) -> Result:
    ips = [IPConfig(parse_cidr("10.55.0.5/24"), parse_ip("10.55.0.1"), 0)]
    routes = [Route(parse_cidr("0.0.0.0/0")), Route(parse_cidr("10.200.0.0/16"), parse_ip("10.55.0.254"), priority=7),
              Route(parse_cidr("10.201.0.0/16"), table=100)]
    if with_v6:
        ips.append(IPConfig(parse_cidr("fd55::5/64"), parse_ip("fd55::1"), 0))
        routes.append(Route(parse_cidr("::/0")))
    return Result("1.1.0", [Interface("eth0", "", "/x")], ips, routes)


def test_configure_then_check_expected(pair):
    """An IPAM result applied inside the container, read back and checked; a route taken
    away behind its back is code 102."""
    host, ctr = pair
    host.run("ip", "link", "set", "up1", "netns", ctr.name)
    ctr.run("ip", "link", "set", "up1", "name", "eth0")
    res = _result()

    def apply():
        with nl.Socket() as s:
            lk = link.get(s, "eth0")
            ifconfig.configure(s, "eth0", lk.index, res, ndisc_notify=True)
            return ifconfig.inspect(s, "eth0")

    seen = netns.run_in(ctr.path, apply)
    ifconfig.check_expected(res, "eth0", seen)
    addrs = {f"{a['local']}/{a['prefixlen']}" for l in ip_json("addr", "show", "eth0", ns=ctr.name)
             for a in l["addr_info"]}
    assert {"10.55.0.5/24", "fd55::5/64"} <= addrs
    routes = ip_json("route", "show", "table", "all", ns=ctr.name)
    assert any(r["dst"] == "default" and r.get("gateway") == "10.55.0.1" for r in routes)
    assert any(r["dst"] == "10.200.0.0/16" and r.get("metric") == 7 for r in routes)
    assert any(r["dst"] == "10.201.0.0/16" and r.get("table") == "100" for r in routes)
    for path, want in (("ipv4/conf/eth0/arp_notify", "1"), ("ipv6/conf/eth0/ndisc_notify", "1"),
                       ("ipv6/conf/eth0/keep_addr_on_down", "1"), ("ipv6/conf/eth0/accept_dad", "0")):
        assert ctr.run("cat", f"/proc/sys/net/{path}").strip() == want, path
    ctr.run("ip", "route", "del", "10.200.0.0/16")
    def look():
        with nl.Socket() as s:
            return ifconfig.inspect(s, "eth0")

    seen = netns.run_in(ctr.path, look)
    with pytest.raises(CNIError) as e:
        ifconfig.check_expected(res, "eth0", seen)
    assert e.value.code == NOT_FOUND and "10.200.0.0/16" in e.value.msg


def test_ensure_gateway_address(pair):
    host, _ = pair

    def put(gw: str, force: bool = False) -> bool:
        with nl.Socket() as s:
            return gateway.ensure_addr(s, link.get(s, "up0"), parse_cidr(gw), force)

    assert _in_host(host, put, "10.66.0.1/24") is True
    assert _in_host(host, put, "10.66.0.1/24") is False  # already there
    with pytest.raises(CNIError) as e:
        _in_host(host, put, "10.67.0.1/24")
    assert e.value.code == INVALID_CONFIG and "forceAddress" in e.value.details
    assert _in_host(host, put, "10.67.0.1/24", True) is True
    v4 = [a["local"] for l in ip_json("-4", "addr", "show", "up0", ns=host.name) for a in l["addr_info"]]
    assert v4 == ["10.67.0.1"]


def test_undo_runs_newest_first_and_survives_failures(capsys):
    done: list[str] = []
    u = Undo("test")
    u.push("a", done.append, "a")
    u.push("boom", lambda: 1 / 0)
    u.push("c", done.append, "c")
    u.run()
    assert done == ["c", "a"] and not u.steps
    assert "test: undo boom failed" in capsys.readouterr().err
