"""Gateways: which addresses the bridge holds, the default routes, IP forwarding.

``calc`` is the reference's calcGateways: every IP points at the container interface
(index 2); with isGateway a missing gateway becomes network+1; with isDefaultGateway a
default route per family is added unless IPAM already returned one with a gateway.
``ensure_addr`` is its ensureAddr: an IPv4 bridge holds one address (another one is an
error unless forceAddress, which replaces it); IPv6 bridges may hold several as long as
their prefixes do not overlap.
"""

from __future__ import annotations

from cnilib import link, sysctl
from cnilib.errors import INTERNAL, INVALID_CONFIG, CNIError
from cnilib.ip import IP, Net

if False:  # type checking only
    from cnilib import nl
    from cnilib.types import Result

    from .config import BridgeConf

CONTAINER_IFACE_INDEX = 2
_DEFAULT = {4: Net(IP(4, 0), 0), 6: Net(IP(6, 0), 0)}


def calc(result: "Result", cfg: "BridgeConf") -> dict[int, list[Net]]:
    """Fill in interface indexes, gateways and default routes in ``result``; return the
    gateway addresses (with the container's prefix length) to put on the bridge, per family."""
    from cnilib.types import Route

    gws: dict[int, list[Net]] = {4: [], 6: []}
    default_found = {4: False, 6: False}
    for ipc in result.ips:
        fam = ipc.version
        ipc.interface = CONTAINER_IFACE_INDEX
        if ipc.gateway is None and cfg.is_gw:
            ipc.gateway = ipc.address.network + 1
        if cfg.is_default_gw and not default_found[fam]:
            for r in result.routes:
                if r.gw is not None and r.dst.version == fam and r.dst.prefixlen == 0 and r.dst.ip.value == 0:
                    default_found[fam] = True
                    break
            if not default_found[fam]:
                result.routes.append(Route(_DEFAULT[fam], ipc.gateway))
                default_found[fam] = True
        if cfg.is_gw:
            gws[fam].append(Net(ipc.gateway, ipc.address.prefixlen))
    return gws


def ensure_addr(sock: "nl.Socket", dev: "link.Link", gw: Net, force: bool, dad: bool = False) -> bool:
    """Put gateway ``gw`` on ``dev``; True if this call added it. An IPv6 gateway skips
    duplicate address detection unless ``dad`` (enabledad): the reference's gateway stays
    tentative for a second or two after the first ADD, and unreachable meanwhile."""
    for a in link.addrs(sock, dev.index, gw.version):
        if a.net == gw:
            return False
        if gw.version == 6 and a.scope == 253:
            continue  # link-local (fe80::/64) never conflicts with a gateway prefix
        if gw.version == 4 or a.net.contains(gw.ip) or gw.contains(a.net.ip):
            if not force:
                raise CNIError(INVALID_CONFIG, f"{dev.name!r} already has an IP address different from {gw}",
                               f"it holds {a.net}; set forceAddress to replace it")
            link.addr_del(sock, dev.index, a.net)
    try:
        return link.addr_add(sock, dev.index, gw, 0 if dad or gw.version == 4 else link.IFA_F_NODAD)
    except OSError as e:
        raise CNIError(INTERNAL, f"could not add IP address {gw} to {dev.name!r}: {e.strerror}") from None


def enable_forwarding(version: int) -> None:
    """ip_forward (IPv4) or conf/all/forwarding (IPv6) in the host namespace."""
    path = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    try:
        sysctl.ensure(path, "1")
    except OSError as e:
        raise CNIError(INTERNAL, f"failed to enable forwarding ({path}): {e.strerror}") from None
