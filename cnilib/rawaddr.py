"""A link's addresses over rtnetlink (one RTM_GETADDR dump), packed and read by hand.

The static IPAM plugin's CHECK needs to know which addresses an interface in the container
holds, and nothing else from netlink. ``cnilib.link.addrs`` answers that through pyroute2's
``ifaddrmsg`` (``cnilib.nl.load()``: ~15-23 ms of imports, README "Start-up budget") and
``cnilib.ifaddr`` through ioctls, which see only an interface's primary IPv4 address. The
request is one fixed structure (``linux/if_addr.h``: ``struct ifaddrmsg`` and its
attributes), so this module packs it itself, as ``cnilib.rawlink`` packs the link requests,
and sends it through ``cnilib.nl``'s socket. ``Addr`` is the one address type: ``cnilib.link``
returns it too.

The socket decides the namespace (open it inside ``netns.run_in``). Standard library C
modules only.
"""

from __future__ import annotations

import _struct

from cnilib import nl
from cnilib.ip import IP, Net
from cnilib.tc import Message, attr_list

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

_IFADDR = _struct.Struct("<BBBBI")  # family, prefixlen, flags, scope, index
_NLMSG_LEN = 16


class Addr:
    """An address of a link: ``net`` (address/prefix), the IFA flags and the scope."""

    __slots__ = ("flags", "net", "scope")

    def __init__(self, net: Net, flags: int, scope: int) -> None:
        self.net = net
        self.flags = flags
        self.scope = scope

    def __repr__(self) -> str:
        return f"Addr({self.net}, flags={self.flags:#x})"


def request(index: int = 0, family: int = AF_UNSPEC) -> Message:
    """RTM_GETADDR's body: an ifaddrmsg of ``family`` (0: both) for link ``index``. Without
    strict checking the kernel ignores the index in a dump, so ``parse`` filters too."""
    return Message(_IFADDR.pack(family, 0, 0, 0, index))


def parse(raw: bytes) -> tuple[int, Addr] | None:
    """(link index, address) of one raw RTM_NEWADDR message (netlink header included);
    None for a family other than IPv4/IPv6 or a message without an address."""
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(raw, _NLMSG_LEN)
    if family not in (AF_INET, AF_INET6):
        return None
    end = int.from_bytes(raw[0:4], "little")
    local = address = None
    for atype, payload in attr_list(memoryview(raw)[_NLMSG_LEN + _IFADDR.size:end]):
        if atype == IFA_LOCAL:
            local = payload
        elif atype == IFA_ADDRESS:
            address = payload
        elif atype == IFA_FLAGS and len(payload) >= 4:
            flags = int.from_bytes(payload[:4], "little")  # the 32-bit flags (IFA_F_* above 0xff)
    # IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a
    # point-to-point link); IPv6 sends IFA_ADDRESS only.
    value = local if local is not None else address
    want = 4 if family == AF_INET else 16
    if value is None or len(value) != want:
        return None
    version = 4 if family == AF_INET else 6
    bits = want * 8
    if prefixlen > bits:
        return None
    return index, Addr(Net(IP(version, int.from_bytes(value, "big")), prefixlen), flags, scope)


def addresses(sock: nl.Socket, index: int, family: int = AF_UNSPEC) -> list[Addr]:
    """The addresses of link ``index`` (of ``family`` when given), in the kernel's order."""
    out = []
    for raw in sock.dump(request(index, family), nl.RTM_GETADDR, "ifaddrmsg", raw=True):
        got = parse(raw)
        if got is not None and got[0] == index:
            out.append(got[1])
    return out
