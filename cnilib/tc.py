"""Traffic control over rtnetlink: qdiscs and u32 filters, packed and read by hand.

pyroute2's ``tcmsg`` package cannot be loaded the lean way ``cnilib.nl.load()`` loads the
link, address and route messages: its classifier modules import ``pyroute2.protocols``,
which runs the package root (IPRoute, NDB, asyncio...: the ~300 ms ``cnilib.nl`` exists to
avoid). The few tc messages a plugin needs (a TBF or ingress qdisc, a match-all u32 filter
redirecting to another device, their dumps) are small fixed structures, so this module
packs them itself (``linux/pkt_sched.h``, ``pkt_cls.h``, ``tc_act/tc_mirred.h``) and sends
them through ``cnilib.nl.Socket``: ``Message`` has the shape of the pyroute2 message that
``nl.encode`` fills (``m["header"]``, ``reset()``, ``encode()``, ``data``).

Like ``cnilib.link``, every function takes a socket (which decides the namespace) and
raises ``nl.NetlinkError`` when the kernel refuses; ``*_request`` functions build a message
without sending it. Standard library C modules only (``_struct``).
"""

from __future__ import annotations

import _struct

from cnilib import nl

RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000  # "ffff:", the ingress qdisc's handle
ETH_P_ALL = 0x0003
TC_LINKLAYER_ETHERNET = 1
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1
TC_U32_TERMINAL = 1

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
TCA_U32_CLASSID = 1
TCA_U32_SEL = 5
TCA_U32_ACT = 7
TCA_ACT_KIND = 1
TCA_ACT_OPTIONS = 2
TCA_MIRRED_PARMS = 2

ENOENT, ENODEV, EINVAL = 2, 19, 22
U32_MAX = 0xFFFFFFFF

_TCMSG = _struct.Struct("<BxxxiIII")  # family, ifindex, handle, parent, info
_NLMSGHDR = _struct.Struct("<IHHII")
_RATESPEC = _struct.Struct("<BBHhHI")  # cell_log, linklayer, overhead, cell_align, mpu, rate
_TBF_TAIL = _struct.Struct("<III")  # limit, buffer, mtu
_U32_SEL = _struct.Struct("<BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = _struct.Struct("<IIii")  # mask, val, off, offmask
_MIRRED = _struct.Struct("<IIiiiiI")  # index, capab, action, refcnt, bindcnt, eaction, ifindex


def handle(major: int, minor: int = 0) -> int:
    """A tc handle ``major:minor``."""
    return (major & 0xFFFF) << 16 | (minor & 0xFFFF)


def handle_text(h: int) -> str:
    """A handle as tc prints it (``1:``, ``ffff:``, ``1:1``)."""
    major, minor = h >> 16, h & 0xFFFF
    return f"{major:x}:{minor:x}" if minor else f"{major:x}:"


class Message:
    """One request packed by hand: a ``tcmsg`` (or another rtnetlink header, such as an
    ``ifinfomsg``) and its attributes. Shaped like the pyroute2 message ``cnilib.nl.encode``
    expects (header fields set there)."""

    __slots__ = ("body", "data", "header")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.header: dict = {}
        self.data = b""

    def __getitem__(self, key: str) -> dict:
        if key != "header":
            raise KeyError(key)
        return self.header

    def reset(self) -> None:
        self.data = b""

    def encode(self) -> None:
        h = self.header
        self.data = _NLMSGHDR.pack(16 + len(self.body), h["type"], h["flags"], h.get("sequence_number", 0),
                                   h.get("pid", 0)) + self.body


def nla(atype: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return n.to_bytes(2, "little") + atype.to_bytes(2, "little") + payload + b"\0" * (-n % 4)


def attrs(payload) -> dict[int, bytes]:
    """The attributes of ``payload`` by type (the last of a type wins; nested flags
    masked off)."""
    out: dict[int, bytes] = {}
    for atype, value in attr_list(payload):
        out[atype] = value
    return out


def attr_list(payload) -> list[tuple[int, bytes]]:
    """(type, payload) of each attribute, in order."""
    out = []
    pos, end = 0, len(payload)
    while pos + 4 <= end:
        alen = int.from_bytes(payload[pos:pos + 2], "little")
        atype = int.from_bytes(payload[pos + 2:pos + 4], "little") & 0x3FFF
        if alen < 4 or pos + alen > end:
            break
        out.append((atype, bytes(payload[pos + 4:pos + alen])))
        pos += (alen + 3) & ~3
    return out


def _tcmsg(ifindex: int, handle_: int = 0, parent: int = 0, info: int = 0) -> bytes:
    return _TCMSG.pack(0, ifindex, handle_, parent, info)


def _kind(text: str) -> bytes:
    return nla(TCA_KIND, text.encode() + b"\0")


# -- qdiscs ---------------------------------------------------------------------------------

class Tbf:
    """A TBF qdisc's parameters as the kernel reports them: ``rate`` in bytes/s (64 bit),
    ``buffer`` in scheduler ticks, ``limit`` in bytes."""

    __slots__ = ("buffer", "limit", "rate")

    def __init__(self, rate: int, buffer: int, limit: int) -> None:
        self.rate = rate
        self.buffer = buffer
        self.limit = limit

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tbf) and (self.rate, self.buffer, self.limit) == (other.rate, other.buffer,
                                                                                   other.limit)

    def __repr__(self) -> str:
        return f"Tbf(rate={self.rate}, buffer={self.buffer}, limit={self.limit})"


class Qdisc:
    """One qdisc of a dump."""

    __slots__ = ("handle", "ifindex", "kind", "parent", "tbf")

    def __init__(self, ifindex: int, handle_: int, parent: int, kind: str, tbf: Tbf | None) -> None:
        self.ifindex = ifindex
        self.handle = handle_
        self.parent = parent
        self.kind = kind
        self.tbf = tbf

    def __repr__(self) -> str:
        return f"Qdisc({self.kind} {handle_text(self.handle)} dev {self.ifindex} parent {self.parent:#x})"


def tbf_options(rate: int, buffer: int, limit: int) -> bytes:
    """TCA_OPTIONS of a TBF: ``rate`` bytes/s (TCA_TBF_RATE64 from 2^32 on, as tc sends
    it), ``buffer`` ticks, ``limit`` bytes; no peak rate."""
    spec = _RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, 0, 0, min(rate, U32_MAX))
    parms = spec + _RATESPEC.pack(0, 0, 0, 0, 0, 0) + _TBF_TAIL.pack(limit, buffer, 0)
    out = nla(TCA_TBF_PARMS, parms)
    if rate > U32_MAX:
        out += nla(TCA_TBF_RATE64, rate.to_bytes(8, "little"))
    return out


def qdisc_request(ifindex: int, kind: str, handle_: int, parent: int, options: bytes | None = None) -> Message:
    """RTM_NEWQDISC/RTM_DELQDISC body for ``kind`` at ``parent`` (TC_H_ROOT, TC_H_INGRESS)."""
    body = _tcmsg(ifindex, handle_, parent) + _kind(kind)
    if options is not None:
        body += nla(TCA_OPTIONS, options)
    return Message(body)


def tbf_request(ifindex: int, rate: int, buffer: int, limit: int, handle_: int = 0x10000) -> Message:
    """A root TBF (handle ``1:`` unless told)."""
    return qdisc_request(ifindex, "tbf", handle_, TC_H_ROOT, tbf_options(rate, buffer, limit))


def ingress_request(ifindex: int) -> Message:
    """The ingress qdisc (``ffff:``), where filters see what arrives on the device."""
    return qdisc_request(ifindex, "ingress", INGRESS_HANDLE, TC_H_INGRESS, b"")


def add_qdisc(sock: nl.Socket, request: Message) -> None:
    """Create a qdisc, exclusively: NetlinkError EEXIST when one is already there."""
    sock.request(request, RTM_NEWQDISC, nl.NLM_F_CREATE | nl.NLM_F_EXCL)


def delete_qdisc(sock: nl.Socket, ifindex: int, handle_: int, parent: int) -> bool:
    """Delete the qdisc ``handle_`` at ``parent``; False when it (or the device) is gone."""
    try:
        sock.request(Message(_tcmsg(ifindex, handle_, parent)), RTM_DELQDISC)
    except nl.NetlinkError as e:
        if e.errno in (ENOENT, ENODEV, EINVAL):
            return False
        raise
    return True


def parse_qdisc(raw: bytes) -> Qdisc:
    """A qdisc from one raw RTM_NEWQDISC message (netlink header included)."""
    _fam, ifindex, handle_, parent, _info = _TCMSG.unpack_from(raw, 16)
    a = attrs(memoryview(raw)[36:_NLMSGHDR.unpack_from(raw, 0)[0]])
    kind = a.get(TCA_KIND, b"").rstrip(b"\0").decode(errors="replace")
    tbf = None
    if kind == "tbf" and TCA_OPTIONS in a:
        o = attrs(a[TCA_OPTIONS])
        p = o.get(TCA_TBF_PARMS, b"")
        if len(p) >= 2 * _RATESPEC.size + _TBF_TAIL.size:
            rate = _RATESPEC.unpack_from(p, 0)[5]
            limit, buffer, _mtu = _TBF_TAIL.unpack_from(p, 2 * _RATESPEC.size)
            r64 = o.get(TCA_TBF_RATE64)
            if r64 is not None and len(r64) == 8:
                rate = int.from_bytes(r64, "little")
            tbf = Tbf(rate, buffer, limit)
    return Qdisc(ifindex, handle_, parent, kind, tbf)


def qdiscs(sock: nl.Socket, ifindex: int) -> list[Qdisc]:
    """Every qdisc of device ``ifindex`` (the kernel's default ones included)."""
    out = []
    for raw in sock.dump(Message(_tcmsg(ifindex)), RTM_GETQDISC, "tcmsg", raw=True):
        q = parse_qdisc(raw)
        if q.ifindex == ifindex:
            out.append(q)
    return out


def root_qdisc(qs: list[Qdisc]) -> Qdisc | None:
    return next((q for q in qs if q.parent == TC_H_ROOT), None)


def ingress_qdisc(qs: list[Qdisc]) -> Qdisc | None:
    return next((q for q in qs if q.parent == TC_H_INGRESS and q.kind == "ingress"), None)


# -- u32 filters with a mirred redirect -----------------------------------------------------

class Filter:
    """One filter of a dump: for u32 its class ID, whether its selector matches every
    packet, and its mirred actions as (eaction, ifindex, action)."""

    __slots__ = ("classid", "handle", "ifindex", "kind", "match_all", "mirred", "parent", "prio", "protocol")

    def __init__(self, ifindex: int, parent: int, handle_: int, prio: int, protocol: int, kind: str) -> None:
        self.ifindex = ifindex
        self.parent = parent
        self.handle = handle_
        self.prio = prio
        self.protocol = protocol
        self.kind = kind
        self.classid = 0
        self.match_all = False
        self.mirred: list[tuple[int, int, int]] = []

    def redirects_to(self, target: int) -> bool:
        """A match-all filter whose actions redirect every packet to device ``target``."""
        return (self.match_all and bool(self.mirred)
                and self.mirred[0] == (TCA_EGRESS_REDIR, target, TC_ACT_STOLEN))

    def __repr__(self) -> str:
        return (f"Filter({self.kind} dev {self.ifindex} parent {handle_text(self.parent)} prio {self.prio} "
                f"handle {self.handle:#x} mirred {self.mirred})")


def u32_redirect_request(ifindex: int, target: int, parent: int = INGRESS_HANDLE, prio: int = 1,
                         classid: int = 0x10001) -> Message:
    """A u32 filter matching every packet (protocol all) that redirects it to the egress
    of device ``target`` (mirred, stolen): what ``tc filter add dev X parent ffff: protocol
    all prio 1 u32 match u32 0 0 flowid 1:1 action mirred egress redirect dev T`` sends.
    One action (the reference adds the same redirect twice, #8 of more-plugins.md)."""
    sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
    mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, target)
    action = nla(1, _kind_act("mirred") + nla(TCA_ACT_OPTIONS, nla(TCA_MIRRED_PARMS, mirred)))
    options = (nla(TCA_U32_CLASSID, classid.to_bytes(4, "little")) + nla(TCA_U32_SEL, sel)
               + nla(TCA_U32_ACT, action))
    info = (prio << 16) | int.from_bytes(ETH_P_ALL.to_bytes(2, "big"), "little")  # protocol in network order
    return Message(_tcmsg(ifindex, 0, parent, info) + _kind("u32") + nla(TCA_OPTIONS, options))


def _kind_act(text: str) -> bytes:
    return nla(TCA_ACT_KIND, text.encode() + b"\0")


def add_filter(sock: nl.Socket, request: Message) -> None:
    """Create a filter (NetlinkError when the kernel refuses)."""
    sock.request(request, RTM_NEWTFILTER, nl.NLM_F_CREATE | nl.NLM_F_EXCL)


def parse_filter(raw: bytes) -> Filter:
    """A filter from one raw RTM_NEWTFILTER message (netlink header included)."""
    _fam, ifindex, handle_, parent, info = _TCMSG.unpack_from(raw, 16)
    a = attrs(memoryview(raw)[36:_NLMSGHDR.unpack_from(raw, 0)[0]])
    kind = a.get(TCA_KIND, b"").rstrip(b"\0").decode(errors="replace")
    proto = int.from_bytes((info & 0xFFFF).to_bytes(2, "little"), "big")
    f = Filter(ifindex, parent, handle_, info >> 16, proto, kind)
    if kind != "u32" or TCA_OPTIONS not in a:
        return f
    o = attrs(a[TCA_OPTIONS])
    if TCA_U32_CLASSID in o:
        f.classid = int.from_bytes(o[TCA_U32_CLASSID][:4], "little")
    sel = o.get(TCA_U32_SEL)
    if sel is not None and len(sel) >= _U32_SEL.size:
        nkeys = sel[2]
        keys = [_U32_KEY.unpack_from(sel, _U32_SEL.size + i * _U32_KEY.size) for i in range(nkeys)
                if len(sel) >= _U32_SEL.size + (i + 1) * _U32_KEY.size]
        f.match_all = len(keys) == nkeys and all(k[0] == 0 for k in keys)
    for _order, act in attr_list(o.get(TCA_U32_ACT, b"")):
        aa = attrs(act)
        if aa.get(TCA_ACT_KIND, b"").rstrip(b"\0") != b"mirred":
            f.mirred.append((-1, 0, -1))  # another action: not a plain redirect
            continue
        parms = attrs(aa.get(TCA_ACT_OPTIONS, b"")).get(TCA_MIRRED_PARMS, b"")
        if len(parms) >= _MIRRED.size:
            _i, _c, action, _r, _b, eaction, target = _MIRRED.unpack_from(parms, 0)
            f.mirred.append((eaction, target, action))
    return f


def filters(sock: nl.Socket, ifindex: int, parent: int = INGRESS_HANDLE) -> list[Filter]:
    """The filters attached to qdisc ``parent`` of device ``ifindex`` (u32's hash-table
    entries, which have no selector, included); [] when there is no such qdisc."""
    try:
        raws = sock.dump(Message(_tcmsg(ifindex, 0, parent)), RTM_GETTFILTER, "tcmsg", raw=True)
    except nl.NetlinkError as e:
        if e.errno in (ENOENT, ENODEV, EINVAL):
            return []
        raise
    return [f for f in (parse_filter(r) for r in raws) if f.ifindex == ifindex]
