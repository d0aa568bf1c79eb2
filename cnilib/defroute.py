"""The default-route interface: where a plugin's ``master`` goes when the config names none.

The reference (macvlan, ipvlan: ``ip.GetDefaultRouteInterfaceName``) takes the output link
of the first route of the main table whose destination is all zeros, IPv4 routes before
IPv6 ones, in the namespace it looks in (the host's, or the container's with
``linkInContainer``). Multipath default routes name no single output link and are skipped.
"""

from __future__ import annotations

from cnilib import link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib import nl


def default_route_link(sock: "nl.Socket") -> "link.Link | None":
    """The link of the first default route (main table, IPv4 then IPv6), or None."""
    for version in (4, 6):
        for r in link.routes(sock, version):
            if r.table == link.RT_TABLE_MAIN and r.dst.prefixlen == 0 and r.oif:
                lk = link.get_by_index(sock, r.oif)
                if lk is not None:
                    return lk
    return None
