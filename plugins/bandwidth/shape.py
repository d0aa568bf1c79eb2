"""A token bucket's kernel parameters from a rate and a burst, as the reference computes
them, with its 32-bit overflows clamped instead of wrapped.

The reference (Debian's 1.1.1, as upstream today): rate = bits/8 bytes/s; buffer = the
burst's duration at that rate in microseconds (``uint32``), times the scheduler's ticks
per microsecond (``/proc/net/psched``, 15.625 here), as a ``uint32`` tick count; limit (the
queue, bytes) = 25 ms at the rate + the burst in bytes. The same float arithmetic here
gives the same numbers whenever nothing overflows.

The kernel's TBF keeps the buffer as a 32-bit tick count: at most 2^32-1 ticks (274.9 s at
64 ns a tick). A burst lasting longer at its rate, such as containerd's fixed
4294967295-bit burst below ~15.6 Mbit/s, wraps in the reference to an arbitrary smaller
bucket (at 8 Mbit/s ``burst 261993004b``; at some rates a few bytes, so nothing passes).
Ours clamps the buffer to 2^32-1 ticks: the bucket then holds 274.9 s of traffic at the
rate, and the limit counts that clamped burst. A bucket smaller than one full-size packet
(MTU + Ethernet header), whether from a small burst or from a burst that lasts less than
a tick at a huge rate, would drop every such packet (the kernel refuses an empty one
outright, the reference then fails with "invalid argument"): code 7, before anything is
created.
"""

from __future__ import annotations

from cnilib.errors import INVALID_CONFIG, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Limit

U32_MAX = (1 << 32) - 1
TIME_UNITS_PER_SEC = 1000000.0
LATENCY_US = TIME_UNITS_PER_SEC * (25 / 1000.0)  # the reference's latencyInMillis = 25
ETH_HLEN = 14
PSCHED = "/proc/net/psched"


def tick_in_usec(path: str = PSCHED) -> float:
    """Scheduler ticks per microsecond, read as vishvananda/netlink reads it."""
    with open(path, "rb") as f:
        parts = f.read().split()
    t2us, us2t, clock_res = (int(p, 16) for p in parts[:3])
    if clock_res == 1000000000:  # old kernels' compatibility case, as netlink handles it
        t2us = us2t
    return t2us / us2t * (clock_res / TIME_UNITS_PER_SEC)


class Bucket:
    """A TBF's parameters: ``rate`` bytes/s, ``buffer`` ticks, ``limit`` bytes; ``bytes``
    what the bucket holds (the burst, or less when clamped), ``clamped`` whether the
    buffer was cut to 2^32-1 ticks."""

    __slots__ = ("buffer", "bytes", "clamped", "limit", "rate")

    def __init__(self, rate: int, buffer: int, limit: int, nbytes: int, clamped: bool) -> None:
        self.rate = rate
        self.buffer = buffer
        self.limit = limit
        self.bytes = nbytes
        self.clamped = clamped

    def __repr__(self) -> str:
        return (f"Bucket(rate={self.rate}, buffer={self.buffer}, limit={self.limit}, bytes={self.bytes}, "
                f"clamped={self.clamped})")


def bucket(rate_bits: int, burst_bits: int, ticks_per_us: float) -> Bucket:
    """The TBF for ``rate_bits`` bits/s and a ``burst_bits``-bit burst."""
    rate = rate_bits // 8
    burst = burst_bits // 8
    if rate == 0:
        return Bucket(0, 0, 0, 0, False)
    us = float(burst) * TIME_UNITS_PER_SEC / float(rate)
    clamped = us >= 1 << 32
    ticks = float(int(us)) * ticks_per_us if not clamped else float(1 << 32)
    if ticks >= 1 << 32:
        clamped = True
        buffer = U32_MAX
    else:
        buffer = int(ticks)
    held = burst if not clamped else int(buffer / ticks_per_us * rate / TIME_UNITS_PER_SEC)
    limit = min(int(float(rate) * LATENCY_US / TIME_UNITS_PER_SEC) + held, U32_MAX)
    if not clamped:  # what the kernel makes of the ticks (the burst, give or take rounding)
        held = int(buffer / ticks_per_us * rate / TIME_UNITS_PER_SEC)
    return Bucket(rate, buffer, limit, held, clamped)


def for_limit(lim: Limit, direction: str, mtu: int, ticks_per_us: float) -> Bucket:
    """The bucket of one direction; code 7 when it cannot pass a full-size packet."""
    b = bucket(lim.rate, lim.burst, ticks_per_us)
    where = "" if lim.source == "config" else f" ({lim.source})"
    if b.rate == 0:
        raise CNIError(INVALID_CONFIG, f"invalid {direction}Rate {lim.rate}{where}: must be at least 8 bits/s "
                                       "(the kernel counts bytes per second)")
    if b.bytes < mtu + ETH_HLEN:
        raise CNIError(INVALID_CONFIG, f"invalid {direction}Burst {lim.burst}{where}: at {direction}Rate "
                                       f"{lim.rate} the bucket holds {b.bytes} bytes, less than one full-size "
                                       f"packet ({mtu + ETH_HLEN} bytes at MTU {mtu}); every such packet would "
                                       "be dropped")
    return b
