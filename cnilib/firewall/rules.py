"""What a rule means, independent of any backend.

``MasqRule(source, subnet)``: masquerade traffic from ``source`` whose destination is outside
``subnet`` and not multicast (224.0.0.0/4, ff00::/8) — the reference bridge's ipMasq
semantics, for both families. Backends translate it; tests compare what they read back
from the kernel with it.
"""

from __future__ import annotations

from cnilib.errors import INTERNAL, CNIError
from cnilib.ip import IP, Net

MULTICAST = {4: Net(IP(4, 0xE0000000), 4), 6: Net(IP(6, 0xFF << 120), 8)}


class MasqRule:
    """Masquerade traffic from ``source`` to anywhere outside ``subnet`` except multicast.

    ``subnet`` is stored without host bits (``Net(10.1.2.5, 24)`` becomes 10.1.2.0/24), as
    both tools print it.
    """

    __slots__ = ("source", "subnet")

    def __init__(self, source: IP, subnet: Net) -> None:
        if source.version != subnet.version:
            raise ValueError(f"masquerade rule mixes families: {source} and {subnet}")
        self.source = source
        self.subnet = subnet.masked()

    @classmethod
    def for_address(cls, address: Net) -> "MasqRule":
        """The rule for a container address as IPAM returns it (``10.1.2.5/24``)."""
        return cls(address.ip, address)

    @property
    def version(self) -> int:
        return self.source.version

    @property
    def multicast(self) -> Net:
        return MULTICAST[self.source.version]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasqRule) and other.source == self.source and other.subnet == self.subnet

    def __hash__(self) -> int:
        return hash((self.source, self.subnet))

    def __repr__(self) -> str:
        return f"MasqRule({str(self.source)!r}, {str(self.subnet)!r})"


def normalize(rules: list[MasqRule]) -> list[MasqRule]:
    """``rules`` without duplicates, in a stable order (v4 first, then by address).

    One source with two different subnets has no single meaning (each rule alone would
    masquerade traffic to the other subnet): that is a caller bug, reported as such.
    """
    by_source: dict[IP, MasqRule] = {}
    for r in rules:
        seen = by_source.get(r.source)
        if seen is not None and seen != r:
            raise CNIError(INTERNAL, f"conflicting masquerade rules for {r.source}: {seen.subnet} and {r.subnet}")
        by_source[r.source] = r
    return [by_source[ip] for ip in sorted(by_source)]
