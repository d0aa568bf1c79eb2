"""What a spoof check means, independent of any backend.

``SpoofSpec(host_veth, mac)``: frames entering the bridge from ``host_veth`` (the host end
of the owner's veth pair) are dropped unless their source MAC is ``mac`` (the container's),
the reference bridge's ``macspoofchk``.
"""

from __future__ import annotations


class SpoofSpec:
    """The host veth whose frames are checked and the one source MAC they may carry."""

    __slots__ = ("host_veth", "mac")

    def __init__(self, host_veth: str, mac: str) -> None:
        self.host_veth = host_veth
        self.mac = mac

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpoofSpec) and (other.host_veth, other.mac) == (self.host_veth, self.mac)

    def __hash__(self) -> int:
        return hash((self.host_veth, self.mac))

    def __repr__(self) -> str:
        return f"SpoofSpec({self.host_veth!r}, {self.mac!r})"
