"""VLANs on the host port: what to ask the kernel for, and refusing kernels without 802.1Q.

Semantics (the reference's, including upstream's native-VLAN change, PR #1180): ``vlan``
is the port's access VLAN, or the trunk's native VLAN when ``vlanTrunk`` is also set (PVID,
egress untagged); ``vlanTrunk`` VIDs are added tagged; unless ``preserveDefaultVlan`` (true
by default) the VLANs the port got from the bridge (the default PVID 1) are removed first.
A bridge created for a VLAN config gets ``vlan_filtering 1``; an existing bridge is not
changed (as the reference). With ``isGateway`` the gateway address lives on ``<bridge>.<vlan>``,
a veth whose peer is an access port of that VLAN.

A kernel built without bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING) is detected
before anything is created — an existing bridge does not report its default PVID, a new
one cannot be created with filtering — and the ADD is refused with code 50 naming the
option and the missing feature.
"""

from __future__ import annotations

from cnilib import link
from cnilib.errors import INTERNAL, NOT_AVAILABLE, CNIError

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib import nl

    from .config import BridgeConf

FEATURE = "bridge VLAN filtering (802.1Q; kernel option CONFIG_BRIDGE_VLAN_FILTERING)"


def unsupported(cfg: "BridgeConf", bridge: str) -> CNIError:
    """The refusal for a VLAN config on a kernel without VLAN filtering."""
    return CNIError(NOT_AVAILABLE,
                    f"{cfg.vlan_option()} on bridge {bridge!r} needs {FEATURE}, which this kernel does not support",
                    "configure the network without vlan/vlanTrunk, or run on a kernel with 802.1Q bridge support")


def port_plan(vlan: int, trunk: list[int], preserve_default: bool,
              existing: list[tuple[int, int]]) -> list[tuple[str, int, bool, bool]]:
    """The VLAN changes for a new host port, in order: ("del", vid, ...) for each VLAN the
    port already has when the default VLAN is not preserved, then ("add", vid, pvid,
    untagged) for the access/native VLAN and each trunk VID."""
    plan: list[tuple[str, int, bool, bool]] = []
    if not vlan and not trunk:
        return plan
    if not preserve_default:
        for vid, _flags in existing:
            plan.append(("del", vid, False, False))
    if vlan:
        plan.append(("add", vlan, True, True))
    for vid in trunk:
        if vid != vlan:  # the native VLAN keeps its PVID/untagged flags
            plan.append(("add", vid, False, False))
    return plan


def configure_port(sock: "nl.Socket", index: int, vlan: int, trunk: list[int], preserve_default: bool) -> None:
    """Apply ``port_plan`` to port ``index``."""
    if not vlan and not trunk:
        return
    existing = link.vlans(sock, index) if not preserve_default else []
    for op, vid, pvid, untagged in port_plan(vlan, trunk, preserve_default, existing):
        if op == "del":
            link.vlan_del(sock, index, vid)
        else:
            link.vlan_add(sock, index, vid, pvid, untagged)


def port_mismatch(cfg: "BridgeConf", have: list[tuple[int, int]]) -> str:
    """"" when port VLANs ``have`` hold what the config asks for, else what differs (CHECK)."""
    if not cfg.needs_vlans:
        return ""
    flags = dict(have)
    plan = port_plan(cfg.vlan, cfg.vlans, cfg.preserve_default_vlan, [])
    want = [(vid, pvid, untagged) for op, vid, pvid, untagged in plan if op == "add"]
    for vid, pvid, untagged in want:
        if vid not in flags:
            return f"VLAN {vid} is not configured on the host port"
        f = flags[vid]
        if pvid and not f & link.BRIDGE_VLAN_INFO_PVID:
            return f"VLAN {vid} is not the host port's PVID"
        if bool(f & link.BRIDGE_VLAN_INFO_UNTAGGED) != untagged:
            return f"VLAN {vid} is {'not ' if untagged else ''}untagged on the host port"
    return ""


def gateway_iface_name(bridge: str, vid: int) -> str:
    return f"{bridge}.{vid}"


def ensure_gateway_iface(sock: "nl.Socket", br: "link.Link", cfg: "BridgeConf") -> "link.Link":
    """``<bridge>.<vlan>`` for the gateway address: a veth in the host namespace whose peer
    is an access port of the VLAN on the bridge (the reference's ensureVlanInterface)."""
    import posix

    from . import naming

    name = gateway_iface_name(br.name, cfg.vlan)
    found = link.get(sock, name)
    if found is not None:
        return found
    fd = posix.open("/proc/thread-self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        for _ in range(10):
            port = naming.random_veth_name()
            try:
                link.create_veth(sock, port, name, fd, mtu=br.mtu, master=br.index, up=True)
                break
            except OSError as e:
                if e.errno != link.EEXIST or link.get(sock, name) is not None:
                    raise
        else:
            raise CNIError(INTERNAL, f"no free veth name for the VLAN gateway {name}")
    finally:
        posix.close(fd)
    p = link.get(sock, port)
    # The gateway's port is an access port of the VLAN only.
    configure_port(sock, p.index, cfg.vlan, [], cfg.preserve_default_vlan)
    gw = link.get(sock, name)
    link.set_link(sock, gw.index, up=True)
    return link.get(sock, name)
