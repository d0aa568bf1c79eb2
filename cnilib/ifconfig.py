"""An IPAM result applied to, and checked against, an interface inside the container's
network namespace (run these through ``netns.run_in``): the reference's
``ipam.ConfigureIface`` and ``ip.ValidateExpectedInterfaceIPs``/``ValidateExpectedRoute``,
which every plugin creating an interface shares.

``configure``: accept_dad / enhanced_dad, arp_notify (and ndisc_notify where the plugin
asks), disable_ipv6=0 on ``lo`` and the interface and keep_addr_on_down=1 where IPv6 is
used, addresses, link up, routes with their 1.1.0 fields (a route without gw goes via the
family's first gateway), and a wait for tentative IPv6 addresses (DADFAILED is an error).
``inspect`` reads back what CHECK compares; ``check_expected`` compares it. The netlink
socket is one opened in the container's namespace by the caller.
"""

from __future__ import annotations

from cnilib import link, sysctl
from cnilib.errors import DAD_FAILED, INTERNAL, NOT_FOUND, CNIError
from cnilib.types import on_interface

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib import nl
    from cnilib.types import Result

SETTLE_TIMEOUT = 5.0


def configure(sock: "nl.Socket", ifname: str, index: int, result: "Result | None", *, enable_dad: bool = False,
              link_up: bool = True, ndisc_notify: bool = False) -> None:
    """Configure interface ``ifname`` (link ``index``) with ``result``'s addresses and
    routes (only bring it up, if ``link_up``, when ``result`` is None: L2 only)."""
    if result is None:
        if link_up:
            link.set_link(sock, index, up=True)
        return
    if enable_dad:
        sysctl.try_set(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        sysctl.try_set(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    else:
        sysctl.try_set(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    sysctl.try_set(f"net/ipv4/conf/{ifname}/arp_notify", "1")
    if ndisc_notify:
        sysctl.try_set(f"net/ipv6/conf/{ifname}/ndisc_notify", "1")

    gw = {4: None, 6: None}
    v6 = False
    for ipc in result.ips:
        if ipc.version == 6 and not v6:
            v6 = True
            for dev in ("lo", ifname):
                path = f"net/ipv6/conf/{dev}/disable_ipv6"
                try:
                    sysctl.ensure(path, "0")
                except OSError as e:
                    raise CNIError(INTERNAL, f"failed to enable IPv6 on {dev!r} ({path}): {e.strerror}") from None
            sysctl.try_set(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")
        try:
            link.addr_add(sock, index, ipc.address)
        except OSError as e:
            raise CNIError(INTERNAL, f"failed to add IP address {ipc.address} to {ifname!r}: {e.strerror}") from None
        if ipc.gateway is not None and gw[ipc.gateway.version] is None:
            gw[ipc.gateway.version] = ipc.gateway
    # Up only once addressed, as the reference: arp_notify then announces the address
    # (gratuitous ARP), and the kernel's work for a link coming up no longer delays our
    # address requests (IPv6 link-local DAD completion runs under the global rtnl lock and
    # sends the first MLD report, which a bridge without a querier floods to every port:
    # with 500 pods our address add waited ~5 ms for it, measured).
    link.set_link(sock, index, up=True)
    if v6:
        settle(sock, ifname, index)
    for r in result.routes:
        via = r.gw if r.gw is not None else gw[r.dst.version]
        try:
            link.route_add(sock, index, r.dst, via, mtu=r.mtu, advmss=r.advmss, priority=r.priority,
                           table=r.table, scope=r.scope)
        except OSError as e:
            raise CNIError(INTERNAL, f"failed to add route '{r.dst} via {via} dev {ifname}': {e.strerror}") from None


def settle(sock: "nl.Socket", ifname: str, index: int, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the link's IPv6 addresses are past duplicate address detection."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        tentative = False
        for a in link.addrs(sock, index, 6):
            if a.flags & link.IFA_F_DADFAILED:
                raise CNIError(DAD_FAILED, f"IPv6 address {a.net} on {ifname!r} failed duplicate address detection")
            if a.flags & link.IFA_F_TENTATIVE:
                tentative = True
        if not tentative:
            return
        if time.monotonic() > deadline:
            raise CNIError(DAD_FAILED, f"{ifname!r} still has tentative IPv6 addresses after {timeout:g} s")
        time.sleep(0.05)


def inspect(sock: "nl.Socket", ifname: str) -> dict:
    """What CHECK needs from the container side: the link (None if missing), its
    addresses and the routes of both families."""
    lk = link.get(sock, ifname)
    if lk is None:
        return {"link": None}
    return {"link": lk, "addrs": link.addrs(sock, lk.index),
            "routes": {4: link.routes(sock, 4), 6: link.routes(sock, 6)}}


def check_expected(result: "Result", ifname: str, seen: dict) -> None:
    """Code 102 unless every address ``result`` puts on ``ifname`` and every route of
    ``result`` is in ``seen`` (``inspect``'s answer)."""
    have = {(a.net.ip, a.net.prefixlen) for a in seen["addrs"]}
    for ipc in result.ips:
        if not on_interface(result, ipc, ifname):
            continue
        if (ipc.address.ip, ipc.address.prefixlen) not in have:
            raise CNIError(NOT_FOUND, f"Failed to match addr {ipc.address} on interface {ifname}")
    for r in result.routes:
        dst = r.dst.masked()
        table = link.RT_TABLE_MAIN if r.table is None else r.table
        ok = any(x.dst == dst and x.table == table and (r.gw is None or x.gw == r.gw)
                 for x in seen["routes"][dst.version])
        if not ok:
            raise CNIError(NOT_FOUND, f"Expected Route {r.dst} via {r.gw} not found in the container's routing table")
