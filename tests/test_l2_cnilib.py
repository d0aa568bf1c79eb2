"""The cnilib pieces macvlan, ipvlan and vlan share, on the real kernel in throwaway
namespaces: the link-kind probe (agrees with ``ip link add``, creates nothing), the
default-route interface, and the create-under-a-temporary-name-and-rename step."""

from __future__ import annotations

import posix

import pytest

from cnilib import ctrlink, defroute, link, linkkind, netns, nl
from cnilib.errors import CNIError
from tests.helpers import Netns, ip_json
from tests.kernel_features import probe


@pytest.fixture
def pair():
    host, ctr = Netns("cnih"), Netns("cnic")
    host.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    host.run("ip", "link", "set", "up0", "up")
    try:
        yield host, ctr
    finally:
        ctr.delete()
        host.delete()


@pytest.mark.parametrize("kind", sorted(linkkind.FEATURES))
def test_link_kind_probe_agrees_with_the_kernel_and_creates_nothing(pair, kind):
    host, _ = pair
    before = ip_json("link", "show", ns=host.name)

    def ask():
        with nl.Socket() as s:
            return linkkind.has_kind(s, kind)

    assert netns.run_in(host.path, ask) == probe(kind)[0]
    assert ip_json("link", "show", ns=host.name) == before


def test_default_route_link(pair):
    host, _ = pair

    def ask():
        with nl.Socket() as s:
            lk = defroute.default_route_link(s)
            return lk.name if lk else None

    assert netns.run_in(host.path, ask) is None
    host.run("ip", "addr", "add", "fd00:5::1/64", "dev", "up0", "nodad")
    host.run("ip", "-6", "route", "add", "default", "via", "fd00:5::2", "dev", "up0")
    assert netns.run_in(host.path, ask) == "up0"  # IPv6 counts when IPv4 has none
    host.run("ip", "link", "add", "up2", "type", "veth", "peer", "name", "up3")
    host.run("ip", "link", "set", "up2", "up")
    host.run("ip", "addr", "add", "10.5.0.1/24", "dev", "up2")
    host.run("ip", "route", "add", "default", "via", "10.5.0.2")
    assert netns.run_in(host.path, ask) == "up2"  # IPv4 first


def _create(host: Netns, ctr: Netns, ifname: str, alias: str) -> str:
    fd = netns.open_fd(ctr.path)
    try:
        ctr_sock = netns.run_in(ctr.path, nl.Socket)
        with ctr_sock, nl.Socket() as hs:
            parent = link.get(hs, "up0").index
            made = ctrlink.create_and_rename(hs, ctr_sock, lambda n: link.macvlan_request(n, parent, netns_fd=fd),
                                             ifname, alias)
            return made.name
    finally:
        posix.close(fd)


def test_created_in_the_container_renamed_and_tagged(pair):
    host, ctr = pair
    assert netns.run_in(host.path, _create, host, ctr, "eth0", "cnipy:n:c:eth0") == "eth0"
    got = ip_json("-d", "link", "show", "eth0", ns=ctr.name)[0]
    assert got["linkinfo"]["info_kind"] == "macvlan" and got["ifalias"] == "cnipy:n:c:eth0"
    assert sorted(l["ifname"] for l in ip_json("link", "show", ns=host.name)) == ["lo", "up0", "up1"]


def test_a_failed_rename_leaves_no_temporary_link(pair):
    host, ctr = pair
    ctr.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    with pytest.raises(CNIError) as e:
        netns.run_in(host.path, _create, host, ctr, "eth0", "t")
    assert e.value.code == 4 and "already exists" in e.value.msg
    assert sorted(l["ifname"] for l in ip_json("link", "show", ns=ctr.name)) == ["eth0", "lo", "x0"]


def test_delete_if_ours_spares_foreign_links(pair):
    host, ctr = pair
    netns.run_in(host.path, _create, host, ctr, "eth0", "cnipy:n:c:eth0")

    def delete(kind: str, alias: str) -> bool:
        with nl.Socket() as s:
            return ctrlink.delete_if_ours(s, "eth0", kind, alias)

    assert not netns.run_in(ctr.path, delete, "ipvlan", "cnipy:n:c:eth0")  # another kind
    assert not netns.run_in(ctr.path, delete, "macvlan", "cnipy:n:other:eth0")  # another attachment
    assert netns.run_in(ctr.path, delete, "macvlan", "cnipy:n:c:eth0")
    assert "eth0" not in [l["ifname"] for l in ip_json("link", "show", ns=ctr.name)]
