"""Delete conntrack entries over ctnetlink, as the reference portmap plugin does for UDP.

After installing UDP host-port mappings the reference deletes the conntrack entries whose
original destination is the host port (``utils.DeleteConntrackEntriesForDstPort``):
conntrack keeps matching datagrams of a UDP "connection" that began before the DNAT rule
existed to that old entry (often one that went nowhere), so a client that keeps sending
would never reach the new container until the entry times out.

This speaks NETLINK_NETFILTER directly (subsystem ctnetlink) over ``_socket``: importing
pyroute2's ``NFCTSocket`` costs hundreds of times more than this module (README, "What the
code avoids, measured"). Like ``/proc/sys/net``, the
conntrack table is per network namespace, and the socket belongs to the namespace of the
thread that opens it (each call opens and closes its own), so inside ``netns.run_in`` these
act on the container's table.

Messages: ``nlmsghdr`` (host order) + ``nfgenmsg`` (family u8, version u8, res_id be16),
then attributes; conntrack attribute payloads are big-endian.
"""

from __future__ import annotations

import _socket
import _struct

AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
NLMSGERR_ATTR_MSG = 1

NFNETLINK_V0 = 0
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

# enum ctattr_type / ctattr_tuple / ctattr_ip / ctattr_l4proto (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG = 1
CTA_ID = 12
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3

IPPROTO_TCP = 6
IPPROTO_UDP = 17
# Protocols whose conntrack tuple is made of ports (DCCP, SCTP and UDP-Lite too); the
# others (ICMP: id/type/code, GRE: keys...) have no ports to match or to delete by.
_PORT_PROTOS = frozenset((IPPROTO_TCP, IPPROTO_UDP, 33, 132, 136))

_ENOENT = 2
_EINVAL = 22
_EMSGSIZE = 90
_EPROTONOSUPPORT = 93
_EOPNOTSUPP = 95
# What a kernel without (the netlink interface of) conntrack answers: no NETLINK_NETFILTER
# protocol at all, or no ctnetlink subsystem behind it.
_UNSUPPORTED = frozenset((_EPROTONOSUPPORT, _EOPNOTSUPP, _EINVAL))

_FAMILY_NAMES = {0: "all", AF_INET: "IPv4", AF_INET6: "IPv6"}
_ADDR_ATTRS = {AF_INET: (CTA_IP_V4_SRC, CTA_IP_V4_DST), AF_INET6: (CTA_IP_V6_SRC, CTA_IP_V6_DST)}

_NLMSGHDR = _struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NFGENMSG = _struct.Struct("=BB2s")  # family, version, res_id (be16, always 0 here)
_NLA = _struct.Struct("=HH")  # len, type
_RECV_SIZE = 1 << 16  # the kernel fills dump datagrams up to 32 KiB; bigger ones grow it


class Entry:
    """One connection's original tuple (who started it, to where), as plain values:
    ``family`` (2/10), ``proto`` (IP protocol number), ``src``/``dst`` (address strings),
    ``sport``/``dport`` (ints; None for protocols without ports, such as ICMP). ``zone``
    (0 unless conntrack zones are in use) and ``id`` (the kernel's id for this entry, None
    if not known) make a deletion hit exactly this entry."""

    __slots__ = ("family", "proto", "src", "dst", "sport", "dport", "zone", "id")

    def __init__(self, family: int, proto: int, src: str, dst: str, sport: int | None,
                 dport: int | None, zone: int = 0, id: int | None = None) -> None:  # noqa: A002
        self.family = family
        self.proto = proto
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.zone = zone
        self.id = id

    def _key(self) -> tuple:
        return (self.family, self.proto, self.src, self.dst, self.sport, self.dport, self.zone)

    def __eq__(self, other: object) -> bool:
        # The kernel's id is left out: it names an instance, the tuple names the connection.
        return isinstance(other, Entry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Entry(family={self.family}, proto={self.proto}, src={self.src!r}, dst={self.dst!r}, "
                f"sport={self.sport}, dport={self.dport}, zone={self.zone}, id={self.id})")


def _attrs(buf, pos: int, end: int):
    """Yield (type, payload start, payload end) of the attributes in ``buf[pos:end]``."""
    while pos + 4 <= end:
        alen, atype = _NLA.unpack_from(buf, pos)
        if alen < 4 or pos + alen > end:
            return  # malformed: stop rather than read a neighbour's bytes
        yield atype & NLA_TYPE_MASK, pos + 4, pos + alen
        pos += (alen + 3) & ~3


def _be(buf, start: int, end: int) -> int:
    return int.from_bytes(buf[start:end], "big")


def _attr(atype: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes (the length field excludes the padding)."""
    n = 4 + len(payload)
    return _NLA.pack(n, atype) + payload + b"\0" * (-n & 3)


def _nested(atype: int, *children: bytes) -> bytes:
    return _attr(atype | NLA_F_NESTED, b"".join(children))


def _parse(buf, off: int, length: int, proto: int | None, dport: int | None) -> Entry | None:
    """The entry in the ctnetlink message at ``buf[off:off+length]``, or None when it has
    no usable original tuple or does not match ``proto``/``dport`` (None = any). Addresses
    are decoded only for matches: a dump may hold many thousands of entries."""
    end = off + length
    family = buf[off + 16]  # nfgen_family: the entry's layer-3 protocol
    orig = None
    zone = 0
    ct_id = None
    for atype, s, e in _attrs(buf, off + 20, end):
        if atype == CTA_TUPLE_ORIG:
            orig = (s, e)
        elif atype == CTA_ZONE and e - s >= 2:
            zone = _be(buf, s, s + 2)
        elif atype == CTA_ID and e - s >= 4:
            ct_id = _be(buf, s, s + 4)
    if orig is None:
        return None
    ip = l4 = None
    for atype, s, e in _attrs(buf, orig[0], orig[1]):
        if atype == CTA_TUPLE_IP:
            ip = (s, e)
        elif atype == CTA_TUPLE_PROTO:
            l4 = (s, e)
        elif atype == CTA_TUPLE_ZONE and e - s >= 2:
            # A zone for the original direction only (directional zones) is dumped here
            # instead of in CTA_ZONE; the lookup for a deletion needs it all the same.
            zone = _be(buf, s, s + 2)
    if ip is None or l4 is None:
        return None
    num = None
    sport = dport_ = None
    for atype, s, e in _attrs(buf, l4[0], l4[1]):
        if atype == CTA_PROTO_NUM and e > s:
            num = buf[s]
        elif atype == CTA_PROTO_SRC_PORT and e - s >= 2:
            sport = _be(buf, s, s + 2)
        elif atype == CTA_PROTO_DST_PORT and e - s >= 2:
            dport_ = _be(buf, s, s + 2)
    if num is None or (proto is not None and num != proto):
        return None
    if num not in _PORT_PROTOS:
        sport = dport_ = None
    if dport is not None and dport_ != dport:
        return None
    names = _ADDR_ATTRS.get(family)
    if names is None:
        return None
    src = dst = None
    for atype, s, e in _attrs(buf, ip[0], ip[1]):
        if atype == names[0]:
            src = _socket.inet_ntop(family, bytes(buf[s:e]))
        elif atype == names[1]:
            dst = _socket.inet_ntop(family, bytes(buf[s:e]))
    if src is None or dst is None:
        return None
    return Entry(family, num, src, dst, sport, dport_, zone, ct_id)


def _error(errno: int, what: str, kernel_message: str = "", first: bool = False) -> OSError:
    """OSError(errno, "conntrack: <what>: <strerror> (<kernel's message>)"). ``first``: the
    socket's first use, where EINVAL means nfnetlink has no ctnetlink subsystem (later,
    EINVAL is about the request)."""
    import posix

    text = f"conntrack: {what}: {posix.strerror(errno)}"
    if kernel_message:
        text += f" ({kernel_message})"
    if errno in _UNSUPPORTED and (first or errno != _EINVAL):
        text += " (no conntrack netlink support in this kernel? needs nf_conntrack_netlink)"
    return OSError(errno, text)


class _Socket:
    """A NETLINK_NETFILTER socket in the network namespace of the calling thread."""

    def __init__(self) -> None:
        try:
            s = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        except OSError as e:
            raise _error(e.errno or 0, "cannot open a NETLINK_NETFILTER socket", first=True) from None
        try:
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    s.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # older kernels: plain errnos, whole requests echoed in errors
            s.bind((0, 0))
        except OSError as e:
            s.close()
            raise _error(e.errno or 0, "cannot bind a NETLINK_NETFILTER socket") from None
        self._sock = s
        self._seq = 0
        self._buf = bytearray(_RECV_SIZE)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "_Socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg_type: int, flags: int, family: int, payload: bytes = b"") -> int:
        """Send one ctnetlink message; returns its sequence number."""
        self._seq += 1
        body = _NFGENMSG.pack(family, NFNETLINK_V0, b"\0\0") + payload
        hdr = _NLMSGHDR.pack(16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | msg_type,
                             NLM_F_REQUEST | flags, self._seq, 0)
        self._sock.send(hdr + body)
        return self._seq

    def _recv(self) -> int:
        """Receive one datagram into ``self._buf`` (grown when one would not fit: a
        truncated datagram's tail is lost for good); returns its length."""
        while True:
            # MSG_TRUNC makes netlink return the datagram's real length.
            n = self._sock.recv_into(self._buf, 0, _socket.MSG_PEEK | _socket.MSG_TRUNC)
            if n <= len(self._buf):
                return self._sock.recv_into(self._buf)
            self._buf = bytearray((n + 4095) & ~4095)

    def replies(self, seq: int, what: str, first: bool = False):
        """Yield (buffer, offset, length) of each answer to request ``seq`` until its ack
        or NLMSG_DONE; a kernel error is raised as OSError. The buffer is reused by the
        next datagram: consume each answer before asking for the next."""
        while True:
            n = self._recv()
            buf = self._buf
            off = 0
            while off + 16 <= n:
                length, mtype, flags, rseq, _pid = _NLMSGHDR.unpack_from(buf, off)
                if length < 16 or off + length > n:
                    raise OSError(_EMSGSIZE, f"conntrack: {what}: malformed netlink reply")
                if rseq != seq or mtype == NLMSG_NOOP:
                    off += (length + 3) & ~3
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_ERROR:
                    err, text = _parse_error(buf, off, length)
                    if err:
                        raise _error(err, what, text, first)
                    return  # the ack
                if mtype == NLMSG_DONE:
                    # A dump that failed midway says so in NLMSG_DONE's payload.
                    if length >= 20:
                        err = -int.from_bytes(buf[off + 16:off + 20], "little", signed=True)
                        if err > 0:
                            raise _error(err, what, first=first)
                    return
                yield buf, off, length
                if not flags & NLM_F_MULTI:
                    return  # a single answer, not part of a dump
                off += (length + 3) & ~3


def _parse_error(buf, off: int, length: int) -> tuple[int, str]:
    """(errno, extended-ack message) of an NLMSG_ERROR message (errno 0 = ack)."""
    err = -int.from_bytes(buf[off + 16:off + 20], "little", signed=True)
    if err == 0:
        return 0, ""
    flags = int.from_bytes(buf[off + 6:off + 8], "little")
    # The request follows: its header only when capped (flag 0x100), else all of it;
    # then the extended-ack attributes (flag 0x200).
    orig_len = 16 if flags & 0x100 else int.from_bytes(buf[off + 20:off + 24], "little")
    text = ""
    if flags & 0x200:
        for atype, s, e in _attrs(buf, off + 20 + ((orig_len + 3) & ~3), off + length):
            if atype == NLMSGERR_ATTR_MSG:
                text = bytes(buf[s:e]).rstrip(b"\0").decode(errors="replace")
    return err, text


def _check_family(family: int) -> None:
    if family not in _FAMILY_NAMES:
        raise ValueError(f"conntrack: unsupported address family {family} "
                         "(AF_INET 2, AF_INET6 10, or 0 for both)")


def _dump(sock: _Socket, family: int, proto: int | None = None, dport: int | None = None) -> list[Entry]:
    what = f"cannot dump the {_FAMILY_NAMES[family]} conntrack table"
    seq = sock.send(IPCTNL_MSG_CT_GET, NLM_F_DUMP, family)
    out = []
    for buf, off, length in sock.replies(seq, what, first=True):
        if length < 20:
            continue
        e = _parse(buf, off, length, proto, dport)
        if e is not None and (family == 0 or e.family == family):
            out.append(e)
    return out


def _tuple(e: Entry) -> bytes:
    """CTA_TUPLE_ORIG for ``e``: what the kernel looks the entry up by."""
    try:
        src_t, dst_t = _ADDR_ATTRS[e.family]
    except KeyError:
        raise ValueError(f"conntrack: unsupported address family {e.family}") from None
    if e.proto not in _PORT_PROTOS or e.sport is None or e.dport is None:
        raise ValueError(f"conntrack: cannot delete by tuple an entry without ports (protocol {e.proto})")
    return _nested(
        CTA_TUPLE_ORIG,
        _nested(CTA_TUPLE_IP,
                _attr(src_t, _socket.inet_pton(e.family, e.src)),
                _attr(dst_t, _socket.inet_pton(e.family, e.dst))),
        _nested(CTA_TUPLE_PROTO,
                _attr(CTA_PROTO_NUM, bytes((e.proto,))),
                _attr(CTA_PROTO_SRC_PORT, e.sport.to_bytes(2, "big")),
                _attr(CTA_PROTO_DST_PORT, e.dport.to_bytes(2, "big"))),
    )


def _delete(sock: _Socket, e: Entry) -> bool:
    """Delete ``e``; False if it is gone already (expired, or deleted by someone else)."""
    # Never send a DELETE without a tuple: the kernel takes that as "flush the table".
    payload = _tuple(e)
    if e.zone:
        payload += _attr(CTA_ZONE, e.zone.to_bytes(2, "big"))
    if e.id is not None:
        # With the id, the kernel deletes only the very entry dumped (ENOENT otherwise):
        # one recreated with the same tuple since the dump is newer than the mapping and
        # stays.
        payload += _attr(CTA_ID, e.id.to_bytes(4, "big"))
    seq = sock.send(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, e.family, payload)
    try:
        for _ in sock.replies(seq, f"cannot delete {e!r}"):
            pass
    except OSError as err:
        if err.errno == _ENOENT:
            return False
        raise
    return True


def dump(family: int = AF_INET) -> list[Entry]:
    """The conntrack entries of the current network namespace for ``family`` (AF_INET 2,
    AF_INET6 10, 0 for both). OSError (with a message saying what failed) if the kernel
    refuses: EPERM without CAP_NET_ADMIN, EPROTONOSUPPORT/EOPNOTSUPP without conntrack."""
    _check_family(family)
    with _Socket() as sock:
        return _dump(sock, family)


def delete(entries: list[Entry]) -> int:
    """Delete these entries (from ``dump``, or made by hand: the tuple is what counts);
    returns how many were deleted. Entries gone already are not an error."""
    n = 0
    with _Socket() as sock:
        for e in entries:
            n += _delete(sock, e)
    return n


def delete_dport(port: int, proto: int = IPPROTO_UDP, family: int = AF_INET) -> int:
    """Delete the current network namespace's conntrack entries for ``family`` whose
    original tuple has protocol ``proto`` and destination port ``port``; returns how many
    were deleted (entries that vanish between the dump and their deletion do not count and
    are not an error). As the reference's ``DeleteConntrackEntriesForDstPort``; OSError on
    failure, which a plugin reports as a warning."""
    _check_family(family)
    if proto not in _PORT_PROTOS:
        raise ValueError(f"conntrack: protocol {proto} has no ports")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"conntrack: port {port} out of range")
    with _Socket() as sock:
        n = 0
        # The whole dump first: a netlink socket answers one request at a time.
        for e in _dump(sock, family, proto, port):
            n += _delete(sock, e)
        return n
