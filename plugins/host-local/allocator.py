"""Ranges, range sets and the round-robin walk over them (no I/O here).

A *range* is ``rangeStart..rangeEnd`` inside one subnet, with that subnet's gateway; a *range
set* is a list of ranges of one address family from which host-local hands out exactly one
address per attachment. The walk is the reference's ``RangeIter`` step for step, so that
ours and the reference pick the same next address from the same store: start just after
``last_reserved_ip.<set>`` (or at the first range's start when there is none or it is no
longer inside the set), wrap from a range's end to the next range's start, skip gateways,
and stop after one full loop.

Addresses are plain ints here (one family per set), which keeps the walk cheap: a /16 is
walked in a few milliseconds.
"""

from __future__ import annotations

# host-local's plugin-specific error codes (>= 100, defined suite-wide in cnilib.errors):
# NO_ADDRESS_AVAILABLE (100): nothing to hand out from this pool: the set is full, or a
# requested address lies outside every range or is a gateway. ALREADY_ALLOCATED (101): the
# address is already someone's (another attachment's lease, or this attachment already
# holds one in the set).
from cnilib.errors import NO_ADDRESS_AVAILABLE, CNIError
from cnilib.ip import IP, Net


class Range:
    """One ``rangeStart..rangeEnd`` (inclusive ints) in ``subnet``, with ``gateway``."""

    __slots__ = ("subnet", "start", "end", "gateway", "version")

    def __init__(self, subnet: Net, start: int, end: int, gateway: int) -> None:
        self.subnet = subnet
        self.start = start
        self.end = end
        self.gateway = gateway
        self.version = subnet.version

    def contains(self, ip: IP) -> bool:
        """True when ``ip`` is of this family and inside start..end (the reference's rule)."""
        return ip.version == self.version and self.start <= ip.value <= self.end

    def overlaps(self, other: Range) -> bool:
        """Same family and the start..end intervals intersect (subnets may be shared)."""
        return self.version == other.version and self.start <= other.end and other.start <= self.end

    def size(self) -> int:
        """How many addresses this range can hand out (its gateway excluded)."""
        n = self.end - self.start + 1
        return n - 1 if self.start <= self.gateway <= self.end else n

    def ip(self, value: int) -> IP:
        return IP(self.version, value)

    def __str__(self) -> str:
        return f"{IP(self.version, self.start)}-{IP(self.version, self.end)}"


class RangeSet:
    """The ranges one address is taken from; ``where`` is its config path for messages."""

    __slots__ = ("ranges", "where", "version")

    def __init__(self, ranges: list[Range], where: str) -> None:
        self.ranges = ranges
        self.where = where
        self.version = ranges[0].version

    def range_for(self, ip: IP) -> Range | None:
        """The range holding ``ip`` within its start..end, or None."""
        for r in self.ranges:
            if r.contains(ip):
                return r
        return None

    def contains(self, ip: IP) -> bool:
        return self.range_for(ip) is not None

    def in_subnet(self, ip: IP) -> Range | None:
        """The range whose subnet holds ``ip`` (even outside start..end), for messages."""
        for r in self.ranges:
            if r.subnet.contains(ip):
                return r
        return None

    def free_count(self, taken: set[int]) -> int:
        """Addresses still free, given the ints of this family that hold a lease."""
        free = 0
        for r in self.ranges:
            used = sum(1 for v in taken if r.start <= v <= r.end and v != r.gateway)
            free += r.size() - used
        return free

    def walk(self, last: IP | None):
        """Yield ``(value, range)`` candidates in the reference's round-robin order.

        ``last`` is the set's last reserved address; the walk starts right after it when it
        is inside the set, else at the first range's start, and ends after one full loop.
        """
        ranges = self.ranges
        n = len(ranges)
        idx = 0
        cur: int | None = None
        stop: int | None = None
        if last is not None:
            for i, r in enumerate(ranges):
                if r.contains(last):
                    idx, cur = i, last.value
                    break
        r = ranges[idx]
        if cur is None:
            # Fresh start: rangeStart itself is the first candidate (inclusive).
            cur = stop = r.start
            if cur != r.gateway:
                yield cur, r
        while True:
            if cur == r.end:
                idx = (idx + 1) % n
                r = ranges[idx]
                cur = r.start
            else:
                cur += 1
            if stop is None:
                stop = cur  # resuming after ``last``: the first step marks the loop's end
            elif cur == stop:
                return
            if cur != r.gateway:
                yield cur, r

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class Request:
    """A requested address and where it came from (for messages)."""

    __slots__ = ("ip", "source", "text")

    def __init__(self, ip: IP, source: str, text: str) -> None:
        self.ip = ip
        self.source = source
        self.text = text

    def __str__(self) -> str:
        return f"requested IP {self.ip} ({self.source} {self.text!r})"


def assign_requests(sets: list[RangeSet], requests: list[Request]) -> list[Request | None]:
    """Give each set the first request inside one of its ranges; fail for any left over.

    Same rule as the reference (which scans its map in random order; we keep the order of
    the requests, so the outcome is deterministic). Done before the store is touched, so a
    request that can never be satisfied costs nothing on disk.
    """
    per_set: list[Request | None] = [None] * len(sets)
    left = []
    for req in requests:
        for i, rs in enumerate(sets):
            if per_set[i] is None and rs.contains(req.ip):
                per_set[i] = req
                break
        else:
            left.append(req)
    if left:
        raise CNIError(NO_ADDRESS_AVAILABLE, "failed to allocate all requested IPs: "
                       + "; ".join(_why_unplaced(r, sets, per_set) for r in left))
    for i, req in enumerate(per_set):
        if req is not None:
            r = sets[i].range_for(req.ip)
            if r is not None and req.ip.value == r.gateway:
                raise CNIError(NO_ADDRESS_AVAILABLE, f"{req} is the gateway of range {r} ({sets[i].where})")
    return per_set


def _why_unplaced(req: Request, sets: list[RangeSet], per_set: list[Request | None]) -> str:
    for i, rs in enumerate(sets):
        if rs.contains(req.ip):
            return (f"{req} is in {rs.where} too, which already takes {per_set[i].ip} "
                    "(one address per range set)")
        r = rs.in_subnet(req.ip)
        if r is not None:
            return f"{req} is in subnet {r.subnet.masked()} but outside its range {r} ({rs.where})"
    return f"{req} is not in any range set ({'; '.join(f'{rs.where}: {rs}' for rs in sets)})"
