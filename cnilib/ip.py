"""IPv4/IPv6 addresses and prefixes as integers, printed the way Go prints them.

The stdlib ``ipaddress`` module pulls in ``functools`` and ``collections`` and costs a
good part of host-local's whole budget to import (README, "What the code avoids,
measured"), so this module does the little it needs with plain ints and no imports. Text forms follow Go's ``net.IP.String()`` (RFC 5952:
lower case, the longest run of two or more zero groups becomes ``::``), because host-local
names its lease files by that text and must stay byte-compatible with the reference.
Parsing follows Go's ``net.ParseIP``: no leading zeros in IPv4, IPv4-mapped IPv6 addresses
are IPv4, no zone suffixes.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")
_DEC = frozenset("0123456789")
V4_BITS = 32
V6_BITS = 128
_V4_MAPPED_PREFIX = 0xFFFF << 32


class IP:
    """One address: ``version`` 4 or 6 and its integer ``value``."""

    __slots__ = ("version", "value")

    def __init__(self, version: int, value: int) -> None:
        self.version = version
        self.value = value

    @property
    def bits(self) -> int:
        return V4_BITS if self.version == 4 else V6_BITS

    def __str__(self) -> str:
        return _format(self.version, self.value)

    def __repr__(self) -> str:
        return f"IP({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and other.version == self.version and other.value == self.value

    def __hash__(self) -> int:
        return hash((self.version, self.value))

    def __lt__(self, other: "IP") -> bool:
        return (self.version, self.value) < (other.version, other.value)

    def __add__(self, n: int) -> "IP":
        return IP(self.version, (self.value + n) % (1 << self.bits))

    def __sub__(self, n: int) -> "IP":
        return IP(self.version, (self.value - n) % (1 << self.bits))


class Net:
    """A prefix ``ip/prefixlen``. ``ip`` keeps host bits (as Go's ParseCIDR's IP does)."""

    __slots__ = ("ip", "prefixlen")

    def __init__(self, ip: IP, prefixlen: int) -> None:
        self.ip = ip
        self.prefixlen = prefixlen

    @property
    def version(self) -> int:
        return self.ip.version

    @property
    def mask(self) -> int:
        bits = self.ip.bits
        return ((1 << bits) - 1) ^ ((1 << (bits - self.prefixlen)) - 1)

    @property
    def network(self) -> IP:
        """The first address of the prefix."""
        return IP(self.ip.version, self.ip.value & self.mask)

    @property
    def last(self) -> IP:
        """The last address of the prefix (IPv4: the broadcast address)."""
        return IP(self.ip.version, (self.ip.value & self.mask) | (((1 << self.ip.bits) - 1) ^ self.mask))

    def masked(self) -> "Net":
        """The same prefix with host bits cleared."""
        return Net(self.network, self.prefixlen)

    def contains(self, ip: IP) -> bool:
        return ip.version == self.ip.version and (ip.value & self.mask) == (self.ip.value & self.mask)

    def overlaps(self, other: "Net") -> bool:
        return self.contains(other.network) or other.contains(self.network)

    def __str__(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def __repr__(self) -> str:
        return f"Net({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Net) and other.ip == self.ip and other.prefixlen == self.prefixlen

    def __hash__(self) -> int:
        return hash((self.ip, self.prefixlen))


def parse_ip(text: str) -> IP:
    """Parse an address like Go's ``net.ParseIP``; raise ValueError if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"not an IP address: {text!r}")
    if ":" in text:
        value = _parse_v6(text)
        if value >> 32 == 0xFFFF:  # IPv4-mapped: Go's To4() treats it as IPv4
            return IP(4, value & 0xFFFFFFFF)
        return IP(6, value)
    return IP(4, _parse_v4(text))


def parse_cidr(text: str) -> Net:
    """Parse ``addr/prefix``; the address keeps its host bits. Raise ValueError otherwise."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"not a CIDR: {text!r}")
    addr, _, plen = text.partition("/")
    ip = parse_ip(addr)
    bits = V6_BITS if ":" in addr else V4_BITS
    if not plen or not set(plen) <= _DEC or len(plen) > 3 or (len(plen) > 1 and plen[0] == "0"):
        raise ValueError(f"not a CIDR: {text!r}")
    n = int(plen)
    if n > bits:
        raise ValueError(f"not a CIDR: {text!r}")
    if ip.version == 4 and bits == V6_BITS:  # ::ffff:a.b.c.d/n counts the v6 prefix, like Go
        if n < 96:
            raise ValueError(f"not a CIDR: {text!r}")
        n -= 96
    return Net(ip, n)


def parse_ip_or_cidr(text: str) -> tuple[IP, int | None]:
    """``10.1.2.3`` or ``10.1.2.3/24`` (as CNI_ARGS ``IP`` and runtimeConfig ``ips`` allow)."""
    if isinstance(text, str) and "/" in text:
        net = parse_cidr(text)
        return net.ip, net.prefixlen
    return parse_ip(text), None


def _parse_v4(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"not an IP address: {text!r}")
    value = 0
    for p in parts:
        if not p or len(p) > 3 or not set(p) <= _DEC or (len(p) > 1 and p[0] == "0"):
            raise ValueError(f"not an IP address: {text!r}")
        n = int(p)
        if n > 255:
            raise ValueError(f"not an IP address: {text!r}")
        value = value << 8 | n
    return value


def _parse_v6(text: str) -> int:
    bad = ValueError(f"not an IP address: {text!r}")
    if text.count("::") > 1 or ":::" in text:
        raise bad
    tail_v4: list[int] = []
    if "." in text:  # embedded IPv4 in the last 32 bits
        head, _, v4 = text.rpartition(":")
        v4val = _parse_v4(v4)
        tail_v4 = [v4val >> 16, v4val & 0xFFFF]
        text = head + ":" if head.endswith(":") else head
        if text == ":":
            text = "::"
    if "::" in text:
        left, _, right = text.partition("::")
        lg = left.split(":") if left else []
        rg = right.split(":") if right else []
        missing = 8 - len(tail_v4) - len(lg) - len(rg)
        if missing < 1:
            raise bad
        groups = lg + ["0"] * missing + rg
    else:
        groups = text.split(":")
        if len(groups) + len(tail_v4) != 8:
            raise bad
    value = 0
    for g in groups:
        if not g or len(g) > 4 or not set(g) <= _HEX:
            raise bad
        value = value << 16 | int(g, 16)
    for g in tail_v4:
        value = value << 16 | g
    return value


def _format(version: int, value: int) -> str:
    if version == 4 or value >> 32 == 0xFFFF:  # Go prints IPv4-mapped IPv6 as IPv4
        return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    # Longest run of zero groups, length >= 2, first one on ties (Go and RFC 5952).
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(f"{g:x}" for g in groups)
    left = ":".join(f"{g:x}" for g in groups[:best])
    right = ":".join(f"{g:x}" for g in groups[best + best_len :])
    return f"{left}::{right}"
