"""Gateway addresses on a host-side device, and IP forwarding in the host namespace.

``ensure_addr`` is the reference bridge's ensureAddr, usable by any plugin that holds its
containers' gateway (bridge, ptp): an IPv4 device holds one address (another one is an
error unless ``force``, which replaces it); IPv6 devices may hold several as long as their
prefixes do not overlap.
"""

from __future__ import annotations

from cnilib import link, sysctl
from cnilib.errors import INTERNAL, INVALID_CONFIG, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib import nl
    from cnilib.ip import Net


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
