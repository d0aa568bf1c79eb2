"""bridge: unit tests of what we ask the kernel (netlink requests as bytes), the config
parser, the VLAN plan and the gateway calculation. No kernel involved; the real-kernel
tests are in test_bridge.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnilib import link, nl
from cnilib.ip import parse_cidr, parse_ip

SEQ = 7
REQ_ACK = nl.NLM_F_REQUEST | nl.NLM_F_ACK


def _hdr(length: int, mtype: int, flags: int, seq: int = SEQ) -> bytes:
    return (length.to_bytes(4, "little") + mtype.to_bytes(2, "little") + flags.to_bytes(2, "little")
            + seq.to_bytes(4, "little") + bytes(4))


def _ifinfomsg(family: int, index: int, flags: int = 0, change: int = 0) -> bytes:
    return bytes([family, 0]) + bytes(2) + index.to_bytes(4, "little", signed=True) + \
        flags.to_bytes(4, "little") + change.to_bytes(4, "little")


def _attr(atype: int, payload: bytes) -> bytes:
    raw = (4 + len(payload)).to_bytes(2, "little") + atype.to_bytes(2, "little") + payload
    return raw + bytes(-len(raw) % 4)


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "little")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def _msg(mtype: int, flags: int, body: bytes) -> bytes:
    return _hdr(16 + len(body), mtype, flags) + body


# -- VLAN requests: exactly what vishvananda/netlink's BridgeVlanAdd/Del send ------------

IFLA_AF_SPEC = 26
IFLA_BRIDGE_FLAGS = 0
IFLA_BRIDGE_VLAN_INFO = 2


@pytest.mark.parametrize("pvid,untagged,flags", [(True, True, 0x6), (False, False, 0x0), (True, False, 0x2),
                                                  (False, True, 0x4)])
def test_vlan_add_request_bytes(pvid, untagged, flags):
    m = link.vlan_request(5, 100, pvid=pvid, untagged=untagged)
    spec = _attr(IFLA_BRIDGE_FLAGS, _u16(link.BRIDGE_FLAGS_MASTER)) + \
        _attr(IFLA_BRIDGE_VLAN_INFO, _u16(flags) + _u16(100))
    want = _msg(nl.RTM_SETLINK, REQ_ACK, _ifinfomsg(link.AF_BRIDGE, 5) + _attr(IFLA_AF_SPEC, spec))
    assert nl.encode(m, nl.RTM_SETLINK, REQ_ACK, SEQ) == want


def test_vlan_del_request_is_the_same_message_as_dellink():
    m = link.vlan_request(9, 4094)
    spec = _attr(IFLA_BRIDGE_FLAGS, _u16(1)) + _attr(IFLA_BRIDGE_VLAN_INFO, _u16(0) + _u16(4094))
    want = _msg(nl.RTM_DELLINK, REQ_ACK, _ifinfomsg(link.AF_BRIDGE, 9) + _attr(IFLA_AF_SPEC, spec))
    assert nl.encode(m, nl.RTM_DELLINK, REQ_ACK, SEQ) == want


@pytest.mark.parametrize("vid", [0, 4095, -1])
def test_vlan_request_refuses_out_of_range_ids(vid):
    with pytest.raises(ValueError):
        link.vlan_request(5, vid)


def test_vlan_dump_request_bytes():
    m = link.vlan_dump_request()
    flags = nl.NLM_F_REQUEST | nl.NLM_F_DUMP
    want = _msg(nl.RTM_GETLINK, flags, _ifinfomsg(link.AF_BRIDGE, 0) + _attr(29, _u32(link.RTEXT_FILTER_BRVLAN)))
    assert nl.encode(m, nl.RTM_GETLINK, flags, SEQ) == want


def test_vlans_from_a_kernel_dump_answer():
    # What the kernel answers for a port with VLAN 1 (PVID, untagged) and 100 (tagged).
    spec = _attr(IFLA_BRIDGE_VLAN_INFO, _u16(0x6) + _u16(1)) + _attr(IFLA_BRIDGE_VLAN_INFO, _u16(0) + _u16(100))
    raw = _msg(nl.RTM_NEWLINK, nl.NLM_F_MULTI, _ifinfomsg(link.AF_BRIDGE, 12) + _attr(3, b"veth0\0")
               + _attr(IFLA_AF_SPEC, spec))
    m = nl.load()["ifinfmsg"](bytearray(raw))
    m.decode()
    assert link.vlans_from_dump([m]) == {12: [(1, 0x6), (100, 0)]}


def test_bridge_request_with_vlan_filtering():
    m = link.bridge_request("br0", mtu=1400, vlan_filtering=True)
    info = _attr(1, b"bridge\0") + _attr(2, _attr(7, b"\x01"))  # IFLA_INFO_KIND, IFLA_INFO_DATA{VLAN_FILTERING}
    body = _ifinfomsg(0, 0) + _attr(3, b"br0\0") + _attr(4, _u32(1400)) + _attr(18, info)
    flags = REQ_ACK | nl.NLM_F_CREATE | nl.NLM_F_EXCL
    assert nl.encode(m, nl.RTM_NEWLINK, flags, SEQ) == _msg(nl.RTM_NEWLINK, flags, body)


def test_bridge_request_without_vlans_asks_for_nothing_else():
    m = link.bridge_request("cni0")
    body = _ifinfomsg(0, 0) + _attr(3, b"cni0\0") + _attr(18, _attr(1, b"bridge\0"))
    assert nl.encode(m, nl.RTM_NEWLINK, REQ_ACK, SEQ) == _msg(nl.RTM_NEWLINK, REQ_ACK, body)


def test_bridge_port_request_sets_hairpin_isolation_alias_via_master():
    m = link.bridge_port_request(5, hairpin=True, isolated=False, alias="cnipy:n:c:eth0")
    slave = _attr(4, b"bridge\0") + _attr(5, _attr(4, b"\x01") + _attr(33, b"\x00"))  # BRPORT_MODE, ISOLATED
    body = _ifinfomsg(0, 5) + _attr(20, b"cnipy:n:c:eth0\0") + _attr(18, slave)
    assert nl.encode(m, nl.RTM_NEWLINK, REQ_ACK, SEQ) == _msg(nl.RTM_NEWLINK, REQ_ACK, body)


def test_veth_request_creates_the_peer_in_the_container_namespace():
    m = link.veth_request("veth1234abcd", "eth0", 42, mtu=1400, peer_mac="0a:58:0a:00:00:05", master=3, up=True)
    peer = _ifinfomsg(0, 0) + _attr(3, b"eth0\0") + _attr(28, _u32(42)) + _attr(4, _u32(1400)) + \
        _attr(1, bytes.fromhex("0a580a000005"))
    info = _attr(1, b"veth\0") + _attr(2, _attr(1, peer))  # VETH_INFO_PEER
    body = _ifinfomsg(0, 0, flags=link.IFF_UP, change=link.IFF_UP) + _attr(3, b"veth1234abcd\0") + \
        _attr(4, _u32(1400)) + _attr(10, _u32(3)) + _attr(18, info)
    assert nl.encode(m, nl.RTM_NEWLINK, REQ_ACK, SEQ) == _msg(nl.RTM_NEWLINK, REQ_ACK, body)


def test_addr_request_v4_has_broadcast_v6_not():
    m = link.addr_request(2, parse_cidr("10.1.2.5/24"))
    want = bytes([2, 24, 0, 0]) + _u32(2) + _attr(2, bytes([10, 1, 2, 5])) + _attr(1, bytes([10, 1, 2, 5])) + \
        _attr(4, bytes([10, 1, 2, 255]))
    assert nl.encode(m, nl.RTM_NEWADDR, REQ_ACK, SEQ) == _msg(nl.RTM_NEWADDR, REQ_ACK, want)
    m6 = link.addr_request(2, parse_cidr("fd00::5/64"))
    a6 = bytes.fromhex("fd000000000000000000000000000005")
    want6 = bytes([10, 64, 0, 0]) + _u32(2) + _attr(2, a6) + _attr(1, a6)
    assert nl.encode(m6, nl.RTM_NEWADDR, REQ_ACK, SEQ) == _msg(nl.RTM_NEWADDR, REQ_ACK, want6)


def test_route_request_with_1_1_fields():
    m = link.route_request(3, parse_cidr("10.40.0.0/16"), parse_ip("10.1.2.1"), mtu=1400, advmss=1360,
                           priority=10, table=100)
    body = bytes([2, 16, 0, 0, 100, link.RTPROT_BOOT, 0, link.RTN_UNICAST]) + _u32(0) + \
        _attr(1, bytes([10, 40, 0, 0])) + _attr(4, _u32(3)) + _attr(5, bytes([10, 1, 2, 1])) + \
        _attr(6, _u32(10)) + _attr(8, _attr(2, _u32(1400)) + _attr(8, _u32(1360)))
    assert nl.encode(m, nl.RTM_NEWROUTE, REQ_ACK, SEQ) == _msg(nl.RTM_NEWROUTE, REQ_ACK, body)


def test_netlink_error_with_extended_ack_message():
    # NLMSG_ERROR -95 with NETLINK_CAP_ACK (original header only) and an extack message.
    ext = _attr(1, b"Operation not supported by kernel\0")
    body = (-95).to_bytes(4, "little", signed=True) + _hdr(52, nl.RTM_SETLINK, REQ_ACK) + ext
    raw = _hdr(16 + len(body), nl.NLMSG_ERROR, 0x100 | 0x200) + body
    assert nl.parse_error(raw, 0, len(raw)) == (95, "Operation not supported by kernel")
    ack = _hdr(36, nl.NLMSG_ERROR, 0x100) + bytes(4) + _hdr(52, nl.RTM_SETLINK, REQ_ACK)
    assert nl.parse_error(ack, 0, len(ack)) == (0, "")


def test_lean_import_leaves_the_full_pyroute2_usable():
    # In a fresh interpreter: the lean load must not import the package root, and a later
    # `from pyroute2 import IPRoute` must still work.
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    # As the launchers run plugins: -IS, the project first, the venv's site-packages last.
    code = (f"import sys; sys.path.insert(0, {root!r}); sys.path.append({site!r})\n"
            "from cnilib import nl; nl.load()\n"
            "assert 'pyroute2.iproute' not in sys.modules and 'asyncio' not in sys.modules\n"
            "assert 'multiprocessing' not in sys.modules\n"
            # the standard modules stood in for during the import are gone, and real later
            "assert not {'logging', 'typing', 're', 'socket', 'threading'} & set(sys.modules)\n"
            "from cnilib import link; from cnilib.ip import parse_cidr\n"
            "m = link.addr_request(2, parse_cidr('fd00::5/64')); m.encode()\n"
            "d = nl.load()['ifaddrmsg'](m.data); d.decode(); assert d.get_attr('IFA_ADDRESS') == 'fd00::5'\n"
            "import typing, logging; assert typing.Optional[int] == typing.Union[int, None]\n"
            "assert logging.getLogger('x').name == 'x'\n"
            "from pyroute2 import IPRoute; import pyroute2\n"
            "assert pyroute2.IPRoute is IPRoute and pyroute2.config.AF_BRIDGE == 7\n"
            "print('ok')\n")
    p = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


# -- VLAN plan ---------------------------------------------------------------------------

from plugins.bridge import vlan as _vlan  # noqa: E402


def test_port_plan_access_port_removes_default_only_when_asked():
    assert _vlan.port_plan(100, [], True, [(1, 6)]) == [("add", 100, True, True)]
    assert _vlan.port_plan(100, [], False, [(1, 6)]) == [("del", 1, False, False), ("add", 100, True, True)]


def test_port_plan_trunk_with_native_vlan():
    assert _vlan.port_plan(0, [10, 20], True, []) == [("add", 10, False, False), ("add", 20, False, False)]
    # vlan with vlanTrunk: vlan is the native VLAN (PVID, untagged) and keeps those flags.
    assert _vlan.port_plan(10, [10, 20], True, []) == [("add", 10, True, True), ("add", 20, False, False)]


def test_port_plan_without_vlans_is_empty():
    assert _vlan.port_plan(0, [], False, [(1, 6)]) == []


# -- config ------------------------------------------------------------------------------

from cnilib.conf import NetConf  # noqa: E402
from cnilib.errors import CNIError  # noqa: E402
from cnilib.skel import CmdArgs  # noqa: E402
from plugins.bridge import config as _config  # noqa: E402


def _cmd(conf: dict, args: dict | None = None) -> CmdArgs:
    import json

    data = dict({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}, **conf)
    c = CmdArgs("ADD", "c1", "/x", "eth0", "", [], json.dumps(data).encode())
    c.conf = NetConf.parse(c.stdin)
    c.conf.validate()
    c.args = args or {}
    return c


def test_defaults_match_the_reference():
    c = _config.load(_cmd({}))
    assert c.bridge == "cni0" and c.preserve_default_vlan is True and c.mtu == 0 and c.vlan == 0
    assert not (c.is_gw or c.ipmasq or c.hairpin or c.promisc or c.macspoofchk or c.enable_dad)
    assert not c.layer3 and c.dns is None and c.mac == ""


def test_is_default_gateway_implies_gateway():
    assert _config.load(_cmd({"isDefaultGateway": True})).is_gw


def test_trunk_is_merged_and_sorted():
    c = _config.load(_cmd({"vlanTrunk": [{"id": 7}, {"minID": 3, "maxID": 5}, {"id": 4}]}))
    assert c.vlans == [3, 4, 5, 7] and c.needs_vlans


def test_mac_sources_later_wins():
    c = _config.load(_cmd({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}}, {"MAC": "0a:00:00:00:00:01"}))
    assert (c.mac, c.mac_source) == ("0a:00:00:00:00:02", "args.cni.mac")
    c = _config.load(_cmd({"args": {"cni": {"mac": "0a:00:00:00:00:02"}},
                           "runtimeConfig": {"mac": "0A-00-00-00-00-03"}}, {"MAC": "0a:00:00:00:00:01"}))
    assert (c.mac, c.mac_source) == ("0a:00:00:00:00:03", "runtimeConfig.mac")


@pytest.mark.parametrize("text,want", [("0a:58:0A:f4:00:05", "0a:58:0a:f4:00:05"),
                                       ("0a-58-0a-f4-00-05", "0a:58:0a:f4:00:05"),
                                       ("0a58.0af4.0005", "0a:58:0a:f4:00:05"),
                                       ("0a:58:0a:f4:00", None), ("zz:58:0a:f4:00:05", None), ("", None)])
def test_parse_mac(text, want):
    from cnilib.confread import parse_mac

    assert parse_mac(text) == want


def test_lenient_load_never_raises_on_values():
    c = _config.load(_cmd({"vlan": 9999, "mtu": "big", "ipMasq": True, "hairpinMode": True, "promiscMode": True,
                           "ipMasqBackend": "pf"}), strict=False)
    assert c.ipmasq and c.vlan == 0 and c.mtu == 0 and c.ipmasq_backend is None


def test_strict_load_names_key_and_value():
    with pytest.raises(CNIError) as e:
        _config.load(_cmd({"vlanTrunk": [{"minID": 5}]}))
    assert e.value.code == 7 and "vlanTrunk[0]" in e.value.msg and "maxID is missing" in e.value.msg


# -- gateways ----------------------------------------------------------------------------

def test_gateway_calc_like_the_reference():
    from cnilib.types import IPConfig, Result, Route

    from plugins.bridge import gateway

    cfg = _config.load(_cmd({"isDefaultGateway": True}))
    r = Result(ips=[IPConfig(parse_cidr("10.1.2.5/24")), IPConfig(parse_cidr("fd00::5/64"), parse_ip("fd00::fe"))],
               routes=[Route(parse_cidr("::/0"), parse_ip("fd00::fe"))])
    gws = gateway.calc(r, cfg)
    assert [str(i.gateway) for i in r.ips] == ["10.1.2.1", "fd00::fe"]
    assert [i.interface for i in r.ips] == [2, 2]
    # IPAM already gave a v6 default route with a gateway: only the v4 one is added.
    assert [(str(x.dst), str(x.gw)) for x in r.routes] == [("::/0", "fd00::fe"), ("0.0.0.0/0", "10.1.2.1")]
    assert {k: [str(n) for n in v] for k, v in gws.items()} == {4: ["10.1.2.1/24"], 6: ["fd00::fe/64"]}


def test_spoofcheck_commands_follow_the_reference_layout():
    from cnilib.firewall.nftables import spoofcheck

    cmds = spoofcheck.setup_commands("veth0", "0a:00:00:00:00:01", "c1-eth0")
    chains = [c["add"]["chain"]["name"] for c in cmds if "add" in c and "chain" in c["add"]]
    assert chains == ["PREROUTING", "cni-br-iface-c1-eth0", "cni-br-iface-c1-eth0-mac"]
    base = cmds[1]["add"]["chain"]
    assert (base["type"], base["hook"], base["prio"], base["policy"]) == ("filter", "prerouting", -300, "accept")
    rules = [c["add"]["rule"] for c in cmds if "add" in c and "rule" in c["add"]]
    assert {r["comment"] for r in rules} == {"macspoofchk-c1-eth0"}
    assert rules[-1]["expr"] == [{"drop": None}]
