"""bridge: every invalid config value is code 7 naming the key and the value, and nothing
is created (no bridge, no veth, no lease, no rule, the container untouched)."""

from __future__ import annotations

import pytest

from tests.test_bridge_common import BRIDGE, host  # noqa: F401 - host is a fixture

BAD = [
    # (config changes, text the message must contain: key, value)
    ({"ipMasq": True, "ipMasqBackend": "pf"}, ["ipMasqBackend", "'pf'"]),
    ({"vlan": 4095}, ["vlan", "4095"]),
    ({"vlan": -1}, ["vlan", "-1"]),
    ({"vlan": "100"}, ["vlan", "'100'"]),
    ({"vlanTrunk": [{"minID": 5}]}, ["vlanTrunk[0]", "minID", "maxID is missing"]),
    ({"vlanTrunk": [{"maxID": 5}]}, ["vlanTrunk[0]", "minID is missing"]),
    ({"vlanTrunk": [{"minID": 9, "maxID": 5}]}, ["vlanTrunk[0]", "minID is greater than maxID"]),
    ({"vlanTrunk": [{"id": 0}]}, ["vlanTrunk[0].id", "0"]),
    ({"vlanTrunk": [{"id": 4095}]}, ["vlanTrunk[0].id", "4095"]),
    ({"vlanTrunk": [{"minID": 1, "maxID": 5000}]}, ["vlanTrunk[0].maxID", "5000"]),
    ({"vlanTrunk": {"id": 5}}, ["vlanTrunk", "'id': 5"]),
    ({"promiscMode": True, "hairpinMode": True}, ["promiscMode", "hairpinMode"]),
    ({"disableContainerInterface": True}, ["disableContainerInterface", "host-local"]),
    ({"mtu": 10}, ["mtu", "10"]),
    ({"mtu": 70000}, ["mtu", "70000"]),
    ({"mtu": -1}, ["mtu", "-1"]),
    ({"mtu": 1500.5}, ["mtu", "1500.5"]),
    ({"isGateway": "yes"}, ["isGateway", "'yes'"]),
    ({"hairpinMode": 1}, ["hairpinMode", "1"]),
    ({"bridge": "a-very-long-bridge-name"}, ["bridge", "a-very-long-bridge-name", "too long"]),
    ({"bridge": "br/0"}, ["bridge", "br/0"]),
    ({"runtimeConfig": {"mac": "not-a-mac"}}, ["runtimeConfig.mac", "not-a-mac"]),
    ({"args": {"cni": {"mac": "01:00:5e:00:00:01"}}}, ["args.cni.mac", "01:00:5e:00:00:01", "unicast"]),
    ({"ipam": {"type": 7}}, ["ipam.type", "7"]),
]


@pytest.mark.parametrize("changes,mentions", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_value_is_code_7_and_creates_nothing(host, changes, mentions):
    c = host.container()
    conf = host.conf(isGateway=True)
    conf.update(changes)
    before = host.state([c])
    out = host.run("ADD", conf, c)
    assert not out.ok and out.code == 7, out
    for m in mentions:
        assert m in out.doc["msg"], f"{m!r} not in {out.doc['msg']!r}"
    assert host.state([c]) == before
    assert host.link(BRIDGE) is None
    # DEL of that config still works (lenient), as libcni sends it after a failed ADD.
    host.delete(conf, c)


def test_bad_mac_in_cni_args(host):
    c = host.container()
    out = host.run("ADD", host.conf(), c, args="MAC=zz:zz")
    assert out.code == 7 and "CNI_ARGS MAC" in out.doc["msg"] and "zz:zz" in out.doc["msg"], out


def test_unknown_cni_args_key_is_code_2_unless_ignored(host):
    c = host.container()
    out = host.run("ADD", host.conf(), c, args="FOO=bar")
    assert out.code == 2 and "FOO" in out.doc["msg"], out
    res = host.add(host.conf(), c, args="IgnoreUnknown=1;FOO=bar")
    # IP alone is accepted (the reference bridge fails on it): host-local takes the address.
    host.delete(host.conf(), c)
    c2 = host.container()
    res = host.add(host.conf(), c2, cid="c2", args="IP=10.99.0.77")
    assert res["ips"][0]["address"] == "10.99.0.77/24"
    host.delete(host.conf(), c2, cid="c2")


@pytest.mark.parametrize("kind", [["type", "veth", "peer", "name", "xpeer"], ["type", "macvlan", "mode", "bridge"]])
def test_existing_non_bridge_link_with_the_bridge_name(host, kind):
    c = host.container()
    if kind[1] == "macvlan":
        host.ns.run("ip", "link", "add", "lowr", "type", "veth", "peer", "name", "lowp")
        host.ns.run("ip", "link", "add", BRIDGE, "link", "lowr", *kind)
    else:
        host.ns.run("ip", "link", "add", BRIDGE, *kind)
    before = host.state([c])
    out = host.run("ADD", host.conf(isGateway=True), c)
    assert out.code == 7 and f"invalid bridge '{BRIDGE}'" in out.doc["msg"] and "not a bridge" in out.doc["msg"], out
    assert host.state([c]) == before


def test_ipam_failure_keeps_its_code_and_leaves_nothing(host):
    c = host.container()
    conf = host.conf(ipMasq=True, ipam=host.ipam(ranges=[[{"subnet": "10.99.0.0/31"}]]))
    before = host.state([c])
    out = host.run("ADD", conf, c)
    assert out.code == 7 and "10.99.0.0/31" in out.doc["msg"], out  # host-local's own error
    assert host.state([c]) == before
    assert host.link(BRIDGE) is None
