"""Links read, made and changed over rtnetlink, packed and read by hand (bandwidth's and
tuning's needs).

bandwidth needs a handful of link operations: read a link by name or index (its index,
name, kind, MAC, MTU, flags, veth peer index and alias), list the IFBs, find a veth by its
alias, create an IFB, set an alias, delete a link. tuning reads a link by name (MAC, MTU,
flags, txqueuelen; ``Link`` also carries the kernel's promiscuity and all-multicast
counts) and changes its MAC, MTU, txqueuelen, promiscuous and all-multicast modes
(``set_link``). ``cnilib.link`` does these with pyroute2's ``ifinfmsg``, whose import
(``cnilib.nl.load()``: ~22 of the ~36 ms a bandwidth DEL spent importing, ~19 of the ~33
a tuning ADD did; ``python -X importtime`` here) was the largest part of either plugin's
CPU time; with ten pods set up or torn down at once on two cores, CPU time is what each
call waits for. The messages are small fixed structures (``linux/rtnetlink.h``,
``if_link.h``), so this module packs them itself, as ``cnilib.tc`` packs the tc messages,
and sends them through ``cnilib.nl``'s socket: the requests are byte for byte what
``cnilib.link`` (and pyroute2's ``ifinfmsg`` for all-multicast and txqueuelen) sends, and
``Link`` has the attribute names of ``cnilib.link.Link`` that the plugins read.

Every function takes a ``Socket`` (which decides the namespace) and raises
``nl.NetlinkError`` when the kernel refuses. Standard library C modules only.
"""

from __future__ import annotations

import _struct

from cnilib import nl
from cnilib.tc import Message, attr_list, nla

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
ENOENT, ENODEV = 2, 19

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_TXQLEN = 13
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_PROMISCUITY = 30
IFLA_ALLMULTI = 61  # the all-multicast count, reported by newer kernels only
IFLA_INFO_KIND = 1
MAX_TXQLEN = 0xFFFFFFFF  # IFLA_TXQLEN is a u32

_IFINFO = _struct.Struct("<BxHiII")  # family, (pad), type, index, flags, change
_NLMSG_LEN = 16


class Socket(nl.Socket):
    """``cnilib.nl.Socket`` that also answers a single GET as raw bytes (no decoding)."""

    def get_raw(self, m, msg_type: int) -> bytes | None:
        """The one answer to a GET (no dump), netlink header included; None if none."""
        seq = self._send(m, msg_type, nl.NLM_F_REQUEST)
        for _mtype, data, off, length in self._replies(seq):
            return bytes(data[off:off + length])
        return None


class Link:
    """What the plugins read of a link (one RTM_NEWLINK answer).

    ``promisc`` and ``allmulti`` are the modes asked for through IFF_PROMISC/IFF_ALLMULTI
    (the kernel reports them in ifi_flags, ``ip link`` prints them, ``set_link`` changes
    them); ``promiscuity`` and ``allmulti_count`` are the kernel's counts of every user of
    the mode (a bridge port counts 1 without the flag), None when not reported."""

    __slots__ = ("alias", "allmulti_count", "flags", "index", "kind", "mac", "mtu", "name", "peer_index",
                 "promiscuity", "txqlen")

    def __init__(self, index: int, flags: int) -> None:
        self.index = index
        self.flags = flags
        self.name = self.kind = self.mac = self.alias = ""
        self.mtu = self.peer_index = self.txqlen = 0
        self.promiscuity: int | None = None
        self.allmulti_count: int | None = None

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def allmulti(self) -> bool:
        return bool(self.flags & IFF_ALLMULTI)

    def __repr__(self) -> str:
        return f"Link({self.name!r}, index={self.index}, kind={self.kind!r})"


def _u32(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "little")


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def parse(raw: bytes) -> Link:
    """A link from one raw RTM_NEWLINK message (netlink header included)."""
    _fam, _type, index, flags, _change = _IFINFO.unpack_from(raw, _NLMSG_LEN)
    lk = Link(index, flags)
    end = int.from_bytes(raw[0:4], "little")
    for atype, payload in attr_list(memoryview(raw)[_NLMSG_LEN + _IFINFO.size:end]):
        if atype == IFLA_IFNAME:
            lk.name = _text(payload)
        elif atype == IFLA_ADDRESS:
            lk.mac = ":".join(f"{b:02x}" for b in payload)
        elif atype == IFLA_MTU and len(payload) >= 4:
            lk.mtu = _u32(payload)
        elif atype == IFLA_LINK and len(payload) >= 4:
            lk.peer_index = _u32(payload)
        elif atype == IFLA_TXQLEN and len(payload) >= 4:
            lk.txqlen = _u32(payload)
        elif atype == IFLA_PROMISCUITY and len(payload) >= 4:
            lk.promiscuity = _u32(payload)
        elif atype == IFLA_ALLMULTI and len(payload) >= 4:
            lk.allmulti_count = _u32(payload)
        elif atype == IFLA_IFALIAS:
            lk.alias = _text(payload)
        elif atype == IFLA_LINKINFO:
            for itype, ipayload in attr_list(payload):
                if itype == IFLA_INFO_KIND:
                    lk.kind = _text(ipayload)
    return lk


def _ifinfo(index: int = 0, attrs: bytes = b"", flags: int = 0, change: int = 0) -> Message:
    return Message(_IFINFO.pack(0, 0, index, flags, change) + attrs)


def _name_attr(atype: int, text: str) -> bytes:
    return nla(atype, text.encode() + b"\0")


def _kind_attr(kind: str) -> bytes:
    # No NLA_F_NESTED flag: as pyroute2 (and so cnilib.link) sends it; the kernel takes both.
    return nla(IFLA_LINKINFO, _name_attr(IFLA_INFO_KIND, kind))


def _get(sock: Socket, m: Message) -> Link | None:
    try:
        raw = sock.get_raw(m, nl.RTM_GETLINK)
    except nl.NetlinkError as e:
        if e.errno in (ENODEV, ENOENT):
            return None
        raise
    return parse(raw) if raw is not None else None


def get(sock: Socket, name: str) -> Link | None:
    """The link called ``name``, or None."""
    return _get(sock, _ifinfo(attrs=_name_attr(IFLA_IFNAME, name)))


def get_by_index(sock: Socket, index: int) -> Link | None:
    """The link with ifindex ``index``, or None."""
    return _get(sock, _ifinfo(index))


def _dump(sock: nl.Socket, kind: str) -> list[bytes]:
    """Raw RTM_NEWLINK answers of a link dump filtered in the kernel by ``kind``."""
    return sock.dump(_ifinfo(attrs=_kind_attr(kind)), nl.RTM_GETLINK, "ifinfmsg", raw=True)


def list_links(sock: nl.Socket, kind: str) -> list[Link]:
    """Every link of ``kind``."""
    return [parse(raw) for raw in _dump(sock, kind)]


def find_by_alias(sock: nl.Socket, alias: str, kind: str) -> list[tuple[int, str]]:
    """(index, name) of the ``kind`` links whose alias is ``alias`` (only the name and
    alias attributes are read: a host with thousands of veths costs no full parse)."""
    out = []
    for raw in _dump(sock, kind):
        name, found = "", False
        end = int.from_bytes(raw[0:4], "little")
        for atype, payload in attr_list(memoryview(raw)[_NLMSG_LEN + _IFINFO.size:end]):
            if atype == IFLA_IFNAME:
                name = _text(payload)
            elif atype == IFLA_IFALIAS and _text(payload) == alias:
                found = True
        if found:
            out.append((_IFINFO.unpack_from(raw, _NLMSG_LEN)[2], name))
    return out


def ifb_request(name: str, mtu: int) -> Message:
    """RTM_NEWLINK for an IFB, up, with ``mtu`` (when not 0) and txqueuelen 0."""
    attrs = _name_attr(IFLA_IFNAME, name) + nla(IFLA_TXQLEN, (0).to_bytes(4, "little"))
    if mtu:
        attrs += nla(IFLA_MTU, mtu.to_bytes(4, "little"))
    return _ifinfo(attrs=attrs + _kind_attr("ifb"), flags=IFF_UP, change=IFF_UP)


def create(sock: nl.Socket, request: Message) -> None:
    """Create a link, exclusively: NetlinkError EEXIST when the name is taken."""
    sock.request(request, nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL)


def alias_request(index: int, alias: str) -> Message:
    """RTM_NEWLINK setting link ``index``'s alias."""
    return _ifinfo(index, _name_attr(IFLA_IFALIAS, alias))


def set_alias(sock: nl.Socket, index: int, alias: str) -> None:
    """Set link ``index``'s alias."""
    sock.request(alias_request(index, alias), nl.RTM_NEWLINK)


def delete(sock: nl.Socket, index: int) -> bool:
    """Delete link ``index``; False if it was already gone."""
    try:
        sock.request(_ifinfo(index), nl.RTM_DELLINK)
    except nl.NetlinkError as e:
        if e.errno in (ENODEV, ENOENT):
            return False
        raise
    return True


# -- changing a link (tuning's needs) ----------------------------------------------------

def _mac_bytes(mac: str) -> bytes:
    """``0a:58:0a:f4:00:05`` as its 6 bytes; ValueError for anything else (pyroute2's
    encoder refuses those too)."""
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def set_link_request(index: int, *, mac: str = "", mtu: int = 0, txqlen: int | None = None,
                     promisc: bool | None = None, allmulti: bool | None = None) -> Message:
    """RTM_NEWLINK changing link ``index``: MAC, MTU (0: unchanged), txqueuelen (0 to
    MAX_TXQLEN) as attributes, in that order; promiscuous and all-multicast mode as
    ifi_flags under the ifi_change mask (only the modes named change; the kernel counts
    the change once, in its promiscuity/all-multicast count, however often it is asked).
    One setting per request is byte for byte what ``cnilib.link.set_link`` (MAC, MTU,
    promisc) and pyroute2's ``ifinfmsg`` (txqueuelen, all-multicast) send."""
    flags = change = 0
    if promisc is not None:
        change |= IFF_PROMISC
        flags |= IFF_PROMISC if promisc else 0
    if allmulti is not None:
        change |= IFF_ALLMULTI
        flags |= IFF_ALLMULTI if allmulti else 0
    attrs = b""
    if mac:
        attrs += nla(IFLA_ADDRESS, _mac_bytes(mac))
    if mtu:
        attrs += nla(IFLA_MTU, mtu.to_bytes(4, "little"))
    if txqlen is not None:
        if not 0 <= txqlen <= MAX_TXQLEN:
            raise ValueError(f"txqlen {txqlen} out of range 0-{MAX_TXQLEN}")
        attrs += nla(IFLA_TXQLEN, txqlen.to_bytes(4, "little"))
    return _ifinfo(index, attrs, flags, change)


def set_link(sock: nl.Socket, index: int, *, mac: str = "", mtu: int = 0, txqlen: int | None = None,
             promisc: bool | None = None, allmulti: bool | None = None) -> None:
    """Change link ``index`` in one request (see ``set_link_request``)."""
    sock.request(set_link_request(index, mac=mac, mtu=mtu, txqlen=txqlen, promisc=promisc, allmulti=allmulti),
                 nl.RTM_NEWLINK)
