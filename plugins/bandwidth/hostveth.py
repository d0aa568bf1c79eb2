"""Finding the host end of the container's veth.

ADD and CHECK, as the reference: CNI_IFNAME in the container must be a veth; its peer
(IFLA_LINK) must be a veth in this (the runtime's) namespace whose own peer is CNI_IFNAME,
and, when prevResult lists interfaces (0.3.0 and later), be listed there without a
sandbox. DEL (best effort, nothing of this is required): the peer when the container's
namespace is still there; else the one veth prevResult lists without a sandbox; else the
veth carrying the attachment's owner tag as its alias (our bridge tags its host veth so).
When none is found the veth is gone (a veth pair dies with the container's namespace,
and its qdiscs and filters with it) or belongs to a main plugin whose DEL will delete it.
"""

from __future__ import annotations

from cnilib import netns
from cnilib.errors import INVALID_CONFIG, NO_SUCH_INTERFACE, CNIError
from cnilib import rawlink as links


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from cnilib.types import Result


def _container_link(ifname: str) -> links.Link | None:
    with links.Socket() as s:
        return links.get(s, ifname)


def peer(sock: links.Socket, netns_path: str, ifname: str) -> links.Link:
    """The host veth of CNI_IFNAME (code 104 when CNI_IFNAME is missing, 7 when it is no
    veth with its peer here)."""
    ctr = netns.run_in(netns_path, _container_link, ifname)
    if ctr is None:
        raise CNIError(NO_SUCH_INTERFACE, f"interface {ifname} is not in the container's network namespace "
                                          f"{netns_path}")
    if ctr.kind != "veth" or not ctr.peer_index:
        raise CNIError(INVALID_CONFIG, f"container interface {ifname} has no veth peer (it is a "
                                       f"{ctr.kind or 'device'}): bandwidth shapes veth-attached containers "
                                       "only (bridge, ptp...), as the reference")
    host = links.get_by_index(sock, ctr.peer_index)
    if host is None or host.kind != "veth" or host.peer_index != ctr.index:
        raise CNIError(NO_SUCH_INTERFACE, f"the veth peer of container interface {ifname} (ifindex "
                                          f"{ctr.peer_index}) is not in this network namespace")
    return host


def check_listed(prev: Result, host: links.Link) -> None:
    """Code 7 when prevResult lists interfaces but not the host veth (outside a sandbox)."""
    if not prev.interfaces:
        return  # 0.1.0/0.2.0 results have no interface list
    if not any(i.name == host.name and not i.sandbox for i in prev.interfaces):
        raise CNIError(INVALID_CONFIG, f"the host veth {host.name} of the container interface is not in "
                                       "prevResult's interfaces (without a sandbox)")


def for_delete(sock: links.Socket, netns_path: str, ifname: str, prev_result: Callable[[], Result | None],
               tag: str) -> links.Link | None:
    """The host veth to clean at DEL, or None (see the module docstring). ``prev_result``
    gives prevResult (or None) and is called only when the namespace does not answer: a
    DEL that finds the peer never parses it."""
    if netns_path:
        try:
            return peer(sock, netns_path, ifname)
        except CNIError:
            pass  # namespace or interface gone: look elsewhere
    prev = prev_result()
    if prev is not None:
        veths = []
        for itf in prev.interfaces:
            if itf.sandbox:
                continue
            lk = links.get(sock, itf.name)
            if lk is not None and lk.kind == "veth":
                veths.append(lk)
        if len(veths) == 1:
            return veths[0]
    found = links.find_by_alias(sock, tag, "veth")
    if len(found) == 1:
        return links.get_by_index(sock, found[0][0])
    return None
