"""What forwarding rules mean, independent of any backend (the ``firewall`` plugin).

``ForwardSpec(addresses, admin_chain, bridge, policy)``: forwarded traffic from each of
``addresses`` (the container's), and traffic to them that belongs to a connection already
seen (conntrack RELATED/ESTABLISHED), is accepted, after the administrator's own chain
``admin_chain`` has had its say (its rules run first: a DROP there wins). ``policy`` is the
reference's ``ingressPolicy``:

- ``open``: nothing more;
- ``same-bridge``: traffic entering from ``bridge`` and leaving through another interface
  that is itself an isolating bridge is dropped (traffic between two such bridges in
  either direction; traffic to the outside stays allowed);
- ``isolated``: as ``same-bridge``, and traffic from ``bridge`` back to ``bridge`` is
  dropped too (containers on one bridge cannot talk; bridged traffic reaches the forward
  hook only with ``br_netfilter``'s ``bridge-nf-call-iptables`` on, as in the reference).

Isolation state is per bridge and shared by every attachment on it (as the reference's
``CNI-ISOLATION-STAGE-*`` rules). Each attachment with a policy records its bridge and
policy in its own owner-tagged state, so DEL (even without prevResult) and GC remove a
bridge's isolation once no remaining attachment, of any network, uses it: a bridge name a
later network reuses (podman does) is not left isolated.
"""

from __future__ import annotations

from cnilib.ip import IP

POLICIES = ("open", "same-bridge", "isolated")
DEFAULT_ADMIN_CHAIN = "CNI-ADMIN"
# Characters a bridge name may hold here: iptables reads "+" as a wildcard and nft "*",
# and both need quoting for others; Linux bridges (cni0, podman0, br-<hex>) use these.
_BRIDGE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@-")
# Characters of an admin chain name: what both iptables and nft take unquoted.
_CHAIN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_CHAIN = 28  # iptables' limit (XT_EXTENSION_MAXNAMELEN - 1 = 28 usable)
# Names an admin chain cannot take: built-in chains and targets iptables would read as such.
_RESERVED = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "DROP", "RETURN",
             "QUEUE", "REJECT", "LOG", "MASQUERADE", "DNAT", "SNAT", "MARK", "CNI-FORWARD",
             "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2", "ISOLATION"}


def admin_chain_problem(name: str) -> str:
    """"" when ``name`` can be the admin chain in both backends, else why not."""
    if not name or len(name) > MAX_CHAIN:
        return f"must be 1 to {MAX_CHAIN} characters (iptables' chain name limit)"
    if name.startswith("-") or not all(c in _CHAIN_CHARS for c in name):
        return "must hold only letters, digits, '_', '.' and '-' and not start with '-'"
    if name.upper() in _RESERVED:
        return "names a built-in chain or target, or one of the plugin's own chains"
    return ""


def bridge_problem(name: str) -> str:
    """"" when ``name`` can be matched as an interface name in both backends, else why not."""
    if not name or len(name) > 15:
        return "must be an interface name of 1 to 15 characters"
    if not all(c in _BRIDGE_CHARS for c in name) or name in (".", ".."):
        return "must hold only letters, digits and '_.@-' (iptables and nft read others as patterns)"
    return ""


class ForwardSpec:
    """The addresses whose forwarded traffic is accepted, the admin chain run first, and the
    ingress policy with the bridge it applies to (None for ``open``).

    ``accept=False`` is the isolation alone (the firewalld backend: firewalld's zone decides
    what the addresses may do, the bridge's isolation stays ours): no accept rule for the
    addresses, only the bridge's isolation and the owner's record of using it (per family
    of ``addresses``, as the reference makes its isolation rules per family present)."""

    __slots__ = ("addresses", "admin_chain", "bridge", "policy", "accept")

    def __init__(self, addresses: list[IP], admin_chain: str = DEFAULT_ADMIN_CHAIN,
                 bridge: str | None = None, policy: str = "open", accept: bool = True) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown ingress policy {policy!r}")
        if policy != "open" and not bridge:
            raise ValueError(f"ingress policy {policy!r} needs a bridge")
        if not accept and policy == "open":
            raise ValueError("a spec without accept rules is an ingress policy's isolation alone")
        self.accept = accept
        seen: dict[tuple[int, int], IP] = {}
        for ip in addresses:
            seen.setdefault((ip.version, ip.value), ip)
        self.addresses = [seen[k] for k in sorted(seen)]  # v4 first, no duplicates
        self.admin_chain = admin_chain
        self.bridge = bridge if policy != "open" else None
        self.policy = policy

    def family(self, version: int) -> list[IP]:
        """The addresses of IP ``version``."""
        return [ip for ip in self.addresses if ip.version == version]

    def versions(self) -> list[int]:
        """The families the spec has addresses of."""
        return sorted({ip.version for ip in self.addresses})

    def isolation_only(self) -> "ForwardSpec":
        """The same spec without accept rules (its ingress policy's isolation alone)."""
        return ForwardSpec(self.addresses, self.admin_chain, self.bridge, self.policy, accept=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ForwardSpec) and (
            [str(a) for a in other.addresses], other.admin_chain, other.bridge, other.policy, other.accept) == (
            [str(a) for a in self.addresses], self.admin_chain, self.bridge, self.policy, self.accept)

    def __repr__(self) -> str:
        return (f"ForwardSpec({[str(a) for a in self.addresses]!r}, {self.admin_chain!r}, "
                f"{self.bridge!r}, {self.policy!r}" + (", accept=False)" if not self.accept else ")"))
