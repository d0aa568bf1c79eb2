"""DHCPv4 messages (RFC 2131/2132) and the IPv4/UDP framing the daemon's raw socket needs.

A small codec of our own rather than a PyPI library: the daemon needs the BOOTP header and
about a dozen options. Judged from the index listing (not by trying them), PyPI's DHCP
packages either have had no release since 2014-2021 (pydhcplib, dhcppython, dhcplib...) or
are asyncio/scapy watchers (aiodhcpwatcher), and scapy alone would add megabytes to the frozen
bundle and hundreds of ms to the daemon's start. Tested against dnsmasq (tests/test_dhcp.py).
Only the daemon (and the tests' DHCP server) import it; it lives in plugins/dhcp/, next to its
only user, rather than in cnilib.
"""

from __future__ import annotations

import struct

MAGIC = b"\x63\x82\x53\x63"
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}
FLAG_BROADCAST = 0x8000
CLIENT_PORT, SERVER_PORT = 68, 67
ZERO = b"\0\0\0\0"


class Message:
    """One DHCP message; ``options`` maps code -> bytes (repeated options concatenated, RFC 3396)."""

    __slots__ = ("op", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr", "chaddr", "options")

    def __init__(self, op: int = BOOTREQUEST, xid: int = 0, chaddr: bytes = b"", flags: int = 0,
                 ciaddr: bytes = ZERO, yiaddr: bytes = ZERO, siaddr: bytes = ZERO, giaddr: bytes = ZERO,
                 secs: int = 0, options: dict[int, bytes] | None = None) -> None:
        self.op = op
        self.xid = xid
        self.secs = secs
        self.flags = flags
        self.ciaddr, self.yiaddr, self.siaddr, self.giaddr = ciaddr, yiaddr, siaddr, giaddr
        self.chaddr = chaddr
        self.options: dict[int, bytes] = dict(options or {})

    @property
    def type(self) -> int:
        """Option 53, the message type (0 when absent: plain BOOTP)."""
        v = self.options.get(53, b"")
        return v[0] if len(v) == 1 else 0

    def encode(self) -> bytes:
        """Wire form, padded to the 300 bytes BOOTP relays expect."""
        head = _HEADER.pack(self.op, 1, 6, 0, self.xid, self.secs, self.flags, self.ciaddr, self.yiaddr,
                            self.siaddr, self.giaddr, self.chaddr.ljust(16, b"\0"), b"", b"")
        opts = bytearray()
        # Message type first (some servers expect it there), the rest in insertion order.
        for code in sorted(self.options, key=lambda c: c != 53):
            value = self.options[code]
            for i in range(0, max(len(value), 1), 255):  # long values split (RFC 3396)
                chunk = value[i:i + 255]
                opts += bytes((code, len(chunk))) + chunk
        opts.append(255)
        data = head + MAGIC + bytes(opts)
        return data.ljust(300, b"\0")

    @classmethod
    def decode(cls, data: bytes) -> "Message":
        """Parse a message; ValueError when it is not one."""
        if len(data) < _HEADER.size + 4 or data[_HEADER.size:_HEADER.size + 4] != MAGIC:
            raise ValueError("not a DHCP message")
        (op, htype, hlen, _hops, xid, secs, flags, ci, yi, si, gi, ch, sname, bfile) = _HEADER.unpack_from(data)
        m = cls(op, xid, ch[:hlen] if htype == 1 and hlen <= 16 else ch, flags, ci, yi, si, gi, secs)
        _parse_options(data[_HEADER.size + 4:], m.options)
        overload = m.options.get(52, b"\0")[0:1]
        if overload in (b"\1", b"\3"):
            _parse_options(bfile, m.options)
        if overload in (b"\2", b"\3"):
            _parse_options(sname, m.options)
        return m


def _parse_options(buf: bytes, out: dict[int, bytes]) -> None:
    i = 0
    while i < len(buf):
        code = buf[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return
        if i + 1 >= len(buf):
            raise ValueError("truncated option")
        n = buf[i + 1]
        value = buf[i + 2:i + 2 + n]
        if len(value) != n:
            raise ValueError(f"truncated option {code}")
        out[code] = out.get(code, b"") + value
        i += 2 + n


# -- option values -------------------------------------------------------------------------

def ip_text(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def ip_bytes(text: str) -> bytes:
    parts = [int(p) for p in text.split(".")]
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(parts)


def ip_list(v: bytes | None) -> list[str]:
    """An option holding IPv4 addresses (3, 6, 42...)."""
    if not v:
        return []
    return [ip_text(v[i:i + 4]) for i in range(0, len(v) - len(v) % 4, 4)]


def u32(v: bytes | None) -> int | None:
    return struct.unpack("!I", v)[0] if v is not None and len(v) == 4 else None


def mask_len(v: bytes) -> int | None:
    """A subnet mask (option 1) as a prefix length; None if it is not contiguous."""
    n = int.from_bytes(v, "big") if len(v) == 4 else -1
    if n < 0:
        return None
    plen = bin(n).count("1")
    return plen if n == (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF else None


def classless_routes(v: bytes) -> list[tuple[str, int, str]]:
    """Option 121 (RFC 3442): [(destination, prefix length, router)]; ValueError if malformed."""
    out = []
    i = 0
    while i < len(v):
        plen = v[i]
        if plen > 32:
            raise ValueError(f"option 121: prefix length {plen}")
        n = (plen + 7) // 8
        if i + 1 + n + 4 > len(v):
            raise ValueError("option 121: truncated")
        dst = v[i + 1:i + 1 + n].ljust(4, b"\0")
        gw = v[i + 1 + n:i + 5 + n]
        out.append((ip_text(dst), plen, ip_text(gw)))
        i += 5 + n
    return out


def encode_classless_routes(routes: list[tuple[str, int, str]]) -> bytes:
    out = bytearray()
    for dst, plen, gw in routes:
        out.append(plen)
        out += ip_bytes(dst)[:(plen + 7) // 8] + ip_bytes(gw)
    return bytes(out)


def static_routes(v: bytes) -> list[tuple[str, int, str]]:
    """Option 33: (destination, router) pairs with classful destinations (RFC 2132 5.8)."""
    out = []
    for i in range(0, len(v) - len(v) % 8, 8):
        dst, gw = v[i:i + 4], v[i + 4:i + 8]
        first = dst[0]
        plen = 8 if first < 128 else 16 if first < 192 else 24
        while plen < 32 and int.from_bytes(dst, "big") & ((1 << (32 - plen)) - 1):
            plen += 8  # a host part that is not zero: a more specific destination
        out.append((ip_text(dst), plen, ip_text(gw)))
    return out


def domain_list(v: bytes) -> list[str]:
    """Option 119 (RFC 3397): DNS names in wire form with compression pointers."""
    names = []
    i = 0
    while i < len(v):
        name, i = _name_at(v, i)
        names.append(name)
    return names


def _name_at(v: bytes, i: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if i >= len(v):
            raise ValueError("option 119: truncated name")
        n = v[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 == 0xC0:
            if i + 1 >= len(v):
                raise ValueError("option 119: truncated pointer")
            if end < 0:
                end = i + 2
            i = ((n & 0x3F) << 8) | v[i + 1]
            hops += 1
            if hops > 64:
                raise ValueError("option 119: pointer loop")
            continue
        labels.append(v[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels), (end if end >= 0 else i)


def encode_domain_list(names: list[str]) -> bytes:
    """Option 119 without compression (enough for tests and servers that accept it)."""
    out = bytearray()
    for name in names:
        for label in name.strip(".").split("."):
            out.append(len(label))
            out += label.encode("ascii")
        out.append(0)
    return bytes(out)


def client_id(key: str) -> bytes:
    """Option 61 for a lease key: type 0 (not a hardware address) then the key. An option
    holds 255 bytes, so a longer key (a 5,000-character container ID) becomes its first
    190 bytes, "~" and 64 hex digits of the whole key's SHA-256: two keys that differ only
    past the cut stay two clients (the reference truncates, and such containers share one
    lease)."""
    raw = key.encode("utf-8", "surrogateescape")
    if len(raw) > 254:
        from cnilib.owner import sha256_hex

        raw = raw[:189] + b"~" + sha256_hex(raw).encode()
    return b"\0" + raw


# -- IPv4 + UDP framing (AF_PACKET SOCK_DGRAM gives and takes IP packets) --------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying one UDP datagram, both checksums set."""
    ulen = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + ulen, 0, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp


def udp_payload(packet: bytes, dport: int) -> tuple[bytes, bytes] | None:
    """(source address, payload) of an IPv4/UDP packet to ``dport``, else None (other traffic,
    fragments, bad lengths)."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:  # a fragment (MF set or an offset)
        return None
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total > len(packet) or total < ihl + 8:
        return None
    sport, dp, ulen = struct.unpack_from("!HHH", packet, ihl)
    if dp != dport or ulen < 8 or ihl + ulen > total:
        return None
    return packet[12:16], packet[ihl + 8:ihl + ulen]
