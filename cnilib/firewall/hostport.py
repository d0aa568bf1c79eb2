"""What a host-port mapping means, independent of any backend.

``PortMapping``: new connections of ``proto`` to ``host_port`` on a local address of the
host (``host_ip``, or any local address of the family when None) go to ``container_ip``:
``container_port``. ``HostPortSpec`` is one owner's whole request: its mappings (both
families) and how their traffic is masqueraded:

- ``snat``: connections whose source is in the container's own subnet (hairpin: the
  container or a neighbour on its bridge reaching it through the host port; without
  masquerading the reply would bypass the host's NAT) or from 127.0.0.1 (the host on
  localhost) are masqueraded. With ``masq_all`` every source is. This is the reference's
  iptables semantics (its nftables backend only masquerades the container itself, which
  breaks neighbours on the same bridge).
- the masquerade decision travels as a packet mark bit (``mark``, the reference's
  ``markMasqBit``, default bit 13 = 0x2000) from the DNAT hook to the postrouting hook, or,
  with iptables, through the user's ``externalSetMarkChain``.
- ``conditions``: per family, extra match tokens in the backend's own syntax, applied to
  this owner's mappings only.

A mapping's *key* ``(version, proto, host_ip or None, host_port)`` is what must be unique
on a host: two owners with the same key conflict. A key with a host address and the same
key with none (any address) do not: the more specific one wins for its address.
"""

from __future__ import annotations

from cnilib.errors import INVALID_CONFIG, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.ip import IP, Net

PROTOCOLS = ("tcp", "udp", "sctp")
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
DEFAULT_MARK_BIT = 13
LOCALHOST4 = "127.0.0.1"


class PortMapping:
    """One host port of one family forwarded to the container."""

    __slots__ = ("proto", "host_ip", "host_port", "container_ip", "container_port")

    def __init__(self, proto: str, host_ip: "IP | None", host_port: int, container_ip: "IP",
                 container_port: int) -> None:
        if host_ip is not None and host_ip.version != container_ip.version:
            raise ValueError(f"mapping mixes families: {host_ip} and {container_ip}")
        self.proto = proto
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_ip = container_ip
        self.container_port = container_port

    @property
    def version(self) -> int:
        return self.container_ip.version

    @property
    def key(self) -> tuple:
        """What must be unique on the host: (version, proto, host address or "", port)."""
        return (self.version, self.proto, str(self.host_ip) if self.host_ip else "", self.host_port)

    def describe(self) -> str:
        """``tcp/8080 on 192.0.2.1`` or ``tcp/8080 on any IPv4 address``."""
        where = str(self.host_ip) if self.host_ip else f"any IPv{self.version} address"
        return f"{self.proto}/{self.host_port} on {where}"

    def _t(self) -> tuple:
        return (self.key, str(self.container_ip), self.container_port)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortMapping) and other._t() == self._t()

    def __hash__(self) -> int:
        return hash(self._t())

    def __repr__(self) -> str:
        return f"PortMapping({self.describe()} -> {self.container_ip}:{self.container_port})"


class HostPortSpec:
    """One owner's mappings and masquerading options (see the module docstring).

    ``subnets``: per family, the container's address with its prefix (``10.1.2.5/24``):
    the sources that are masqueraded with ``snat``."""

    __slots__ = ("mappings", "snat", "masq_all", "mark_bit", "set_mark_chain", "conditions", "subnets")

    def __init__(self, mappings: list[PortMapping], *, snat: bool = True, masq_all: bool = False,
                 mark_bit: int = DEFAULT_MARK_BIT, set_mark_chain: str | None = None,
                 conditions: dict[int, list[str]] | None = None, subnets: "dict[int, Net] | None" = None) -> None:
        self.mappings = normalize(mappings)
        self.snat = snat
        self.masq_all = masq_all
        self.mark_bit = mark_bit
        self.set_mark_chain = set_mark_chain
        self.conditions = conditions or {}
        self.subnets = subnets or {}

    @property
    def mark(self) -> int:
        return 1 << self.mark_bit

    def family(self, version: int) -> list[PortMapping]:
        """The mappings of one IP family, in order."""
        return [m for m in self.mappings if m.version == version]

    def versions(self) -> list[int]:
        return sorted({m.version for m in self.mappings})

    def masq_sources(self, version: int) -> list[str]:
        """Sources whose connections to a mapped port are masqueraded (empty: none):
        everything with ``masq_all``, else the container's subnet and, for IPv4, 127.0.0.1
        (IPv6 has no route_localnet: ::1 never leaves the host)."""
        if not self.snat:
            return []
        if self.masq_all:
            return ["0.0.0.0/0" if version == 4 else "::/0"]
        out = []
        net = self.subnets.get(version)
        if net is not None:
            out.append(str(net.masked()))
        if version == 4:
            out.append(LOCALHOST4)
        return out


def normalize(mappings: list[PortMapping]) -> list[PortMapping]:
    """``mappings`` without exact duplicates, order kept; one key mapped to two different
    targets in the same request is a config error (code 7)."""
    seen: dict[tuple, PortMapping] = {}
    out = []
    for m in mappings:
        prev = seen.get(m.key)
        if prev is None:
            seen[m.key] = m
            out.append(m)
        elif prev != m:
            raise CNIError(INVALID_CONFIG, f"portMappings map {m.describe()} twice: to "
                                           f"{prev.container_ip}:{prev.container_port} and "
                                           f"{m.container_ip}:{m.container_port}")
    return out


def conflict_error(m: PortMapping, holder_tag: str) -> CNIError:
    """The error for a host port another attachment holds, naming the holder."""
    from cnilib.errors import ALREADY_ALLOCATED
    from cnilib.owner import parse_tag

    parts = parse_tag(holder_tag)
    if parts is None:
        who = repr(holder_tag) if holder_tag else "another owner"
    else:
        who = f"container {parts[1]} (network {parts[0]}, interface {parts[2]})"
    return CNIError(ALREADY_ALLOCATED, f"host port {m.describe()} is already mapped to {who}",
                    "parts shown as =<hex> are hashes of long or unusual names")
