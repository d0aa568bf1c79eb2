"""``route_localnet`` on the host interface that routes to the container (IPv4 only), so
that connections from 127.0.0.1 DNATed to the container may leave the host's loopback
domain (the reference does the same; the source is then masqueraded by the snat rules).

The interface is found in the main routing table of the calling process's namespace
(``/proc/net/route``: no netlink library, whose import costs more than the whole lookup).
"""

from __future__ import annotations

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib.ip import IP

_RTF_UP = 0x1


def _le32(hex8: str) -> int:
    """/proc/net/route prints addresses as the bytes in memory (network order) read as a
    little-endian hex number."""
    return int.from_bytes(int(hex8, 16).to_bytes(4, "little"), "big")


def route_interface(ip: "IP") -> str | None:
    """The interface of the most specific (then lowest-metric) route to ``ip``, or None."""
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, int, str] | None = None  # (-prefix length, metric, iface)
    for line in lines:
        cols = line.split()
        if len(cols) < 8 or not int(cols[3], 16) & _RTF_UP:
            continue
        dest, mask, metric = _le32(cols[1]), _le32(cols[7]), int(cols[6])
        if ip.value & mask != dest:
            continue
        cand = (-bin(mask).count("1"), metric, cols[0])
        if best is None or cand < best:
            best = cand
    return best[2] if best else None


def enable(ip: "IP") -> str | None:
    """Set route_localnet=1 on the interface routing to ``ip``; its name, or None when no
    route leads there. OSError when the kernel refuses."""
    from cnilib import sysctl

    iface = route_interface(ip)
    if iface is not None:
        sysctl.ensure(f"net/ipv4/conf/{iface}/route_localnet", "1")
    return iface
