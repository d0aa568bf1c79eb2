"""Gateways: which addresses the bridge holds and the default routes.

``calc`` is the reference's calcGateways: every IP points at the container interface
(index 2); with isGateway a missing gateway becomes network+1; with isDefaultGateway a
default route per family is added unless IPAM already returned one with a gateway. Putting
the addresses on the bridge and enabling forwarding is cnilib.gateway's.
"""

from __future__ import annotations

from cnilib.ip import IP, Net

TYPE_CHECKING = False
if TYPE_CHECKING:
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
