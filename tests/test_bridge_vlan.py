"""bridge VLAN options (vlan, vlanTrunk, preserveDefaultVlan) against the real kernel.

On a kernel without bridge VLAN filtering (802.1Q) — this machine's — every ADD that needs
VLANs must be refused with code 50 naming the option and the missing feature, leaving
nothing behind. The traffic tests need the feature: `make test` runs them in the VM lane
(tests/vm/lane.py, Debian's stock kernel) when this kernel lacks it. The refusal tests run
wherever the feature is missing and skip where there is nothing to refuse.
What the VLAN code asks the kernel is unit-tested in test_bridge_units.py.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import sh
from tests.kernel_features import needs, probe
from tests.test_bridge_common import (  # noqa: F401 - host is a fixture
    BRIDGE,
    host,
    ping,
    result_ip,
)

SUPPORTED, _ = probe("bridge_vlan")
needs_vlans = needs("bridge_vlan")
needs_no_vlans = pytest.mark.skipif(SUPPORTED, reason="this kernel has bridge VLAN filtering: nothing to refuse")

VLAN_CONFIGS = [
    ({"vlan": 100}, "vlan 100"),
    ({"vlanTrunk": [{"id": 10}, {"minID": 20, "maxID": 22}]}, "vlanTrunk"),
    ({"vlan": 100, "preserveDefaultVlan": False}, "preserveDefaultVlan false"),
    ({"vlan": 100, "vlanTrunk": [{"id": 200}]}, "vlan 100, vlanTrunk"),
]


@needs_no_vlans
@pytest.mark.parametrize("extra,option", VLAN_CONFIGS)
@pytest.mark.parametrize("bridge_exists", [False, True])
def test_vlan_config_refused_cleanly_without_kernel_support(host, extra, option, bridge_exists):
    c = host.container()
    if bridge_exists:
        host.ns.run("ip", "link", "add", BRIDGE, "type", "bridge")
    before = host.state([c])
    out = host.run("ADD", host.conf(isGateway=True, ipMasq=True, **extra), c)
    assert not out.ok and out.code == 50, out
    msg = out.doc["msg"]
    assert option in msg and "802.1Q" in msg and "VLAN filtering" in msg, msg
    assert host.state([c]) == before, "a refused VLAN ADD changed something"
    # The runtime's DEL after the failed ADD is fine too.
    host.delete(host.conf(**extra), c)


@needs_vlans
def test_access_vlans_separate_containers(host):
    a1, a2, b1 = host.container(), host.container(), host.container()
    conf_a = host.conf(vlan=100, preserveDefaultVlan=False)
    conf_b = host.conf(vlan=200, preserveDefaultVlan=False)
    ra1 = host.add(conf_a, a1, cid="a1")
    ra2 = host.add(conf_a, a2, cid="a2")
    rb1 = host.add(conf_b, b1, cid="b1")
    assert ping(a1, result_ip(ra2))
    assert not ping(a1, result_ip(rb1)), "containers on VLANs 100 and 200 reached each other"
    vlans = {e["ifname"]: e["vlans"] for e in json.loads(sh("bridge", "-j", "vlan", "show", ns=host.name))}
    port = vlans[ra1["interfaces"][1]["name"]]
    assert [v["vlan"] for v in port] == [100] and {"PVID", "Egress Untagged"} <= set(port[0]["flags"])
    assert json.loads(sh("ip", "-j", "-d", "link", "show", BRIDGE, ns=host.name))[0]["linkinfo"]["info_data"][
        "vlan_filtering"] == 1
    assert host.check(conf_a, ra1, a1, cid="a1").ok
    for cid, ns, conf in (("a1", a1, conf_a), ("a2", a2, conf_a), ("b1", b1, conf_b)):
        host.delete(conf, ns, cid=cid)


@needs_vlans
def test_trunk_with_native_vlan(host):
    c = host.container()
    conf = host.conf(vlan=10, vlanTrunk=[{"id": 10}, {"minID": 20, "maxID": 21}])
    res = host.add(conf, c)
    vlans = {e["ifname"]: e["vlans"] for e in json.loads(sh("bridge", "-j", "vlan", "show", ns=host.name))}
    port = {v["vlan"]: set(v.get("flags", [])) for v in vlans[res["interfaces"][1]["name"]]}
    assert {"PVID", "Egress Untagged"} <= port[10] and port[20] == set() and port[21] == set()
    assert 1 in port  # preserveDefaultVlan defaults to true
    assert host.check(conf, res, c).ok
    host.delete(conf, c)


@needs_vlans
def test_vlan_gateway_interface(host):
    c = host.container()
    conf = host.conf(vlan=100, isGateway=True)
    res = host.add(conf, c)
    assert [i["name"] for i in res["interfaces"]][3] == f"{BRIDGE}.100"
    assert ping(c, "10.99.0.1")
    host.delete(conf, c)
