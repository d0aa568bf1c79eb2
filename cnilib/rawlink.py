"""Links read and made over rtnetlink packed and read by hand (bandwidth's needs).

bandwidth needs a handful of link operations: read a link by name or index (its index,
name, kind, MAC, MTU, flags, veth peer index and alias), list the IFBs, find a veth by its
alias, create an IFB, set an alias, delete a link. ``cnilib.link`` does these with
pyroute2's ``ifinfmsg``, whose import (``cnilib.nl.load()``: ~22 of the ~36 ms a DEL spent
importing, ``python -X importtime`` here) was the largest part of a bandwidth DEL's CPU
time; with ten pods torn down at once on two cores, CPU time is what each DEL waits for.
The messages are small fixed structures (``linux/rtnetlink.h``, ``if_link.h``), so this
module packs them itself, as ``cnilib.tc`` packs the tc messages, and sends them through
``cnilib.nl``'s socket: the requests are byte for byte what ``cnilib.link`` sends, and
``Link`` has the attribute names of ``cnilib.link.Link`` that bandwidth reads.

Every function takes a ``Socket`` (which decides the namespace) and raises
``nl.NetlinkError`` when the kernel refuses. Standard library C modules only.
"""

from __future__ import annotations

import _struct

from cnilib import nl
from cnilib.tc import Message, attr_list, nla

IFF_UP = 0x1
ENOENT, ENODEV = 2, 19

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_TXQLEN = 13
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_INFO_KIND = 1

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
    """What bandwidth reads of a link (one RTM_NEWLINK answer)."""

    __slots__ = ("alias", "flags", "index", "kind", "mac", "mtu", "name", "peer_index")

    def __init__(self, index: int, flags: int) -> None:
        self.index = index
        self.flags = flags
        self.name = self.kind = self.mac = self.alias = ""
        self.mtu = self.peer_index = 0

    def __repr__(self) -> str:
        return f"Link({self.name!r}, index={self.index}, kind={self.kind!r})"


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
            lk.mtu = int.from_bytes(payload[:4], "little")
        elif atype == IFLA_LINK and len(payload) >= 4:
            lk.peer_index = int.from_bytes(payload[:4], "little")
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
