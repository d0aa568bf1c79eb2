"""A container link created under a temporary name inside the container's namespace and
renamed to CNI_IFNAME there (the reference's pattern for macvlan, ipvlan and vlan).

Why a temporary name: the link is created by a request sent in the master's namespace (the
host's, usually) with IFLA_NET_NS_FD, so it is born in the container and never shows up
in the host; but the kernel checks the requested name in the namespace it creates the
link in, and a runtime's CNI_IFNAME (``eth0``) may also be a host device's name. A random
name that cannot clash, then a rename inside the container, avoids both. The rename also
sets the link's alias to the attachment's tag (``cnilib.owner``), so DEL deletes only a
link this network attached.
"""

from __future__ import annotations

from cnilib import link, nl
from cnilib.errors import INTERNAL, INVALID_ENVIRONMENT, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

TEMP_PREFIX = "cnit"
ATTEMPTS = 5


def temp_name() -> str:
    """``cnit`` + 10 random hex digits: 14 bytes, under IFNAMSIZ."""
    import posix

    return TEMP_PREFIX + posix.urandom(5).hex()


def create_and_rename(master_sock: nl.Socket, ctr_sock: nl.Socket, build: "Callable[[str], object]", ifname: str,
                      alias: str | None = None) -> link.Link:
    """Create a link with ``build(temp name)`` (a ``link.*_request`` placing it in the
    container) sent on ``master_sock``, rename it to ``ifname`` in the container (socket
    ``ctr_sock``) and return it as the container sees it. A failed rename deletes the link.
    NetlinkError from the create is raised as is (EEXIST for a name clash only when the
    temporary name was not the reason: a VLAN ID already used on the master, say)."""
    for _ in range(ATTEMPTS):
        tmp = temp_name()
        try:
            link.create(master_sock, build(tmp))
        except nl.NetlinkError as e:
            if e.errno == link.EEXIST and (link.get(ctr_sock, tmp) is not None or link.get(master_sock, tmp) is not None):
                continue  # the random name is taken (astronomically rare): draw another
            raise
        break
    else:
        raise CNIError(INTERNAL, f"no free temporary link name after {ATTEMPTS} attempts")
    made = link.get(ctr_sock, tmp)
    if made is None:
        raise CNIError(INTERNAL, f"the new link {tmp} is not in the container's namespace")
    try:
        link.rename(ctr_sock, made.index, ifname, alias)
    except nl.NetlinkError as e:
        link.delete(ctr_sock, made.index)
        if e.errno == link.EEXIST:
            raise CNIError(INVALID_ENVIRONMENT, f"container interface {ifname!r} already exists") from None
        raise CNIError(INTERNAL, f"failed to rename {tmp} to {ifname!r} in the container: {e.strerror}") from None
    got = link.get(ctr_sock, ifname)
    if got is None or got.index != made.index:
        raise CNIError(INTERNAL, f"container interface {ifname!r} vanished right after its creation")
    return got


def delete_if_ours(ctr_sock: nl.Socket, ifname: str, kind: str, alias: str) -> bool:
    """Delete container link ``ifname`` if it is of ``kind`` and carries ``alias`` (or no
    alias at all: a link the reference plugin made). A foreign interface of the same name
    (an ADD refused because CNI_IFNAME was taken, then the runtime's DEL) is left alone.
    True if a link was deleted."""
    lk = link.get(ctr_sock, ifname)
    if lk is None or lk.kind != kind or (lk.alias and lk.alias != alias):
        return False
    return link.delete(ctr_sock, lk.index)
