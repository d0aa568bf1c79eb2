"""CHECK: the attachment still has the addresses static gives it.

The reference checks only that each configured address found in prevResult has the
configured gateway; an address missing from prevResult passes, and the kernel is never
looked at. Here, for the addresses ``resolve`` gives (the same sources as ADD):

* prevResult is required (code 7);
* each address is in prevResult with its prefix and, when static gives it a gateway, that
  gateway (code 102 when missing, 103 when different; an interface plugin may add a
  gateway static did not give, as bridge with ``isGateway`` does);
* each address is on CNI_IFNAME in CNI_NETNS, with its prefix (code 102 when the interface
  or an address is missing, 103 for an address that failed IPv6 duplicate address
  detection).

The container's addresses are read with one RTM_GETADDR dump packed by hand
(``cnilib.rawaddr``), not pyroute2: CHECK stays standard library only.
"""

from __future__ import annotations

from cnilib import netns
from cnilib.errors import INVALID_CONFIG, NOT_AS_ADDED, NOT_FOUND, CNIError

from . import config
from .resolve import addresses

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def check(cmd: CmdArgs) -> None:
    entries = addresses(config.load(cmd.conf), cmd.conf, cmd.args)
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "static: Required prevResult missing")
    prev = cmd.conf.prev_result()
    by_ip = {}
    for ipc in prev.ips:
        by_ip.setdefault(ipc.address.ip, ipc)
    for e in entries:
        ipc = by_ip.get(e.net.ip)
        if ipc is None:
            raise CNIError(NOT_FOUND, f"static: address {e.net} ({e.where}) is not in prevResult")
        if ipc.address.prefixlen != e.net.prefixlen:
            raise CNIError(NOT_AS_ADDED, f"static: address {e.net.ip} is {ipc.address} in prevResult, "
                           f"{e.net} in {e.where}")
        if e.gateway is not None and ipc.gateway != e.gateway:
            raise CNIError(NOT_AS_ADDED, f"static: Failed to match addr {e.net.ip} on interface {cmd.ifname}: "
                           f"gateway {ipc.gateway} in prevResult, {e.gateway} in {e.gw_where}")
    held = netns.run_in(cmd.netns, _container_addresses, cmd.ifname)
    if held is None:
        raise CNIError(NOT_FOUND, f"static: interface {cmd.ifname} is not in the container's network namespace "
                       f"{cmd.netns}")
    have = {(a.net.ip, a.net.prefixlen): a for a in held}
    from cnilib.rawaddr import IFA_F_DADFAILED

    for e in entries:
        a = have.get((e.net.ip, e.net.prefixlen))
        if a is None:
            raise CNIError(NOT_FOUND, f"static: address {e.net} ({e.where}) is not on interface {cmd.ifname} "
                           "in the container")
        if a.flags & IFA_F_DADFAILED:
            raise CNIError(NOT_AS_ADDED, f"static: address {e.net} on interface {cmd.ifname} failed IPv6 "
                           "duplicate address detection")


def _container_addresses(ifname: str) -> list | None:
    """In the container's namespace: the addresses of ``ifname``, None if it is missing."""
    from cnilib import rawaddr, rawlink

    with rawlink.Socket() as sock:
        lk = rawlink.get(sock, ifname)
        if lk is None:
            return None
        return rawaddr.addresses(sock, lk.index)
