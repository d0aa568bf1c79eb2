"""Interface flags and addresses through ioctl and /proc: the standard-library way.

Used by plugins that must not pay for pyroute2 (loopback). Call these from inside the
namespace (``netns.run_in``): the ioctl socket and ``/proc/thread-self/net`` both belong to
the calling thread's network namespace.
"""

from __future__ import annotations

import _socket
import fcntl

from cnilib.ip import IP, Net

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IFF_UP = 0x1
EADDRNOTAVAIL = 99
IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: name[16] + a 24-byte union


def _ifreq(name: str, flags: int = 0) -> bytes:
    # Built by hand rather than with struct: one import less on the hot path.
    raw = name.encode()
    if len(raw) >= 16:
        raise OSError(19, f"no such device: {name}")
    return raw.ljust(16, b"\0") + (flags & 0xFFFF).to_bytes(2, "little") + bytes(IFREQ_SIZE - 18)


def _ioctl(name: str, req: int, arg: bytes) -> bytes:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        return fcntl.ioctl(s.fileno(), req, arg)
    finally:
        s.close()


def get_flags(name: str) -> int:
    """The interface's flags (IFF_*); OSError(ENODEV) if it does not exist."""
    out = _ioctl(name, SIOCGIFFLAGS, _ifreq(name))
    return int.from_bytes(out[16:18], "little")


def set_up(name: str, up: bool) -> None:
    """Bring the interface up or down."""
    flags = get_flags(name)
    new = flags | IFF_UP if up else flags & ~IFF_UP
    if new != flags:
        _ioctl(name, SIOCSIFFLAGS, _ifreq(name, new))


def ipv4_address(name: str) -> Net | None:
    """The interface's primary IPv4 address with its prefix, or None."""
    req = _ifreq(name)
    try:
        addr = _ioctl(name, SIOCGIFADDR, req)
        mask = _ioctl(name, SIOCGIFNETMASK, req)
    except OSError as e:
        if e.errno == EADDRNOTAVAIL:
            return None
        raise
    # struct sockaddr_in sits at offset 16: family(2) port(2) addr(4)
    a = int.from_bytes(addr[20:24], "big")
    m = int.from_bytes(mask[20:24], "big")
    return Net(IP(4, a), bin(m).count("1"))


def ipv6_addresses(name: str) -> list[Net]:
    """The interface's IPv6 addresses, in the kernel's order (empty if IPv6 is off)."""
    out = []
    try:
        with open("/proc/thread-self/net/if_inet6") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        # "00000000000000000000000000000001 01 80 10 80       lo"
        parts = line.split()
        if len(parts) == 6 and parts[5] == name:
            out.append(Net(IP(6, int(parts[0], 16)), int(parts[2], 16)))
    return out
