"""Who owns a piece of host state: one attachment, named by its tag.

An *owner* is one attachment: (network name, container ID, ifname), the key CNI itself uses
for an attachment (and GC's ``cni.dev/valid-attachments``). Whatever a plugin leaves on the
host for an attachment carries the owner's ``tag``: the firewall's rules and set elements
(comments), the bridge's host veth (its alias). DEL and GC find an owner's state from the
owner alone, never from the container's addresses, namespace or interface (the reference
leaks its iptables chain when the interface is already gone, containernetworking/plugins#810).

Tag format: ``cnipy:<network>:<container id>:<ifname>``. A part that is longer than its
limit or holds a character outside ``[A-Za-z0-9_.-]`` is replaced by ``=`` and 16 hex digits
of its SHA-256 (``=`` never occurs in a literal part), so a tag is at most 127 bytes (nft
comments hold 128) and safe in iptables-restore input unquoted. A hashed part is not
decodable, but it is a pure function of the part: GC recomputes the tags of the attachments
it keeps and the network part of its network, so no hash->owner table is needed.

This module sits at the bottom: it imports nothing of the suite, so interface plugins and
the firewall layer both use it without importing each other.
"""

from __future__ import annotations

TAG_PREFIX = "cnipy"
# Literal length limits per part: 8 + 40 + 64 + 15 = 127 bytes, under nft's 128.
_LIMITS = (40, 64, 15)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
CHAIN_PREFIX = "CNIPY-"  # + 22 hex = 28 characters, the iptables chain name limit
# Host-port (portmap) chains of an owner: a name of their own, since one attachment may have
# both masquerading (bridge) and host ports (portmap) in the same iptables nat table.
HOSTPORT_CHAIN_PREFIX = "CNIPH-"
_HEX = frozenset("0123456789abcdef")


def sha256_hex(text: str | bytes) -> str:
    """SHA-256 of ``text`` (str: its UTF-8) in hex, without importing hashlib (~6 ms: it
    loads OpenSSL; and the frozen binaries leave hashlib out)."""
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:  # pragma: no cover - 3.12 renamed it
        try:
            from _sha2 import sha256  # type: ignore[no-redef]
        except ImportError:
            from hashlib import sha256  # type: ignore[no-redef]
    return sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def tag_part(text: str, limit: int) -> str:
    """``text`` itself when short and safe, else ``=`` + 16 hex digits of its SHA-256."""
    if text and len(text) <= limit and all(c in _SAFE for c in text):
        return text
    return "=" + sha256_hex(text)[:16]


class Owner:
    """One attachment whose host state a plugin manages; ``tag`` marks all of it."""

    __slots__ = ("network", "container_id", "ifname", "tag")

    def __init__(self, network: str, container_id: str, ifname: str) -> None:
        self.network = network
        self.container_id = container_id
        self.ifname = ifname
        parts = (tag_part(network, _LIMITS[0]), tag_part(container_id, _LIMITS[1]), tag_part(ifname, _LIMITS[2]))
        self.tag = f"{TAG_PREFIX}:{parts[0]}:{parts[1]}:{parts[2]}"

    @property
    def chain(self) -> str:
        """The owner's own iptables chain (masquerading): 28 characters, iptables' limit."""
        return CHAIN_PREFIX + sha256_hex(self.tag)[:22]

    @property
    def hostport_chain(self) -> str:
        """The owner's host-port chain (iptables), distinct from its masquerade chain."""
        return HOSTPORT_CHAIN_PREFIX + sha256_hex("hostport:" + self.tag)[:22]

    def __repr__(self) -> str:
        return f"Owner({self.network!r}, {self.container_id!r}, {self.ifname!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Owner) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)


def attachment_tag(network: str, container_id: str, ifname: str) -> str:
    """The tag of the attachment (network, container ID, ifname)."""
    return Owner(network, container_id, ifname).tag


def is_owner_chain(name: str, prefix: str = CHAIN_PREFIX) -> bool:
    """True for a hashed chain name (``prefix`` + 22 hex digits), never for the shared
    chains that happen to share the prefix (CNIPY-HOSTPORTS, CNIPY-HP-MASQ, ...)."""
    tail = name[len(prefix):]
    return name.startswith(prefix) and len(tail) == 22 and all(c in _HEX for c in tail)


def parse_tag(tag: str) -> tuple[str, str, str] | None:
    """(network, container id, ifname) parts of a tag (hashed parts stay ``=<hex>``), or
    None when ``tag`` is not one of ours."""
    parts = tag.split(":")
    if len(parts) != 4 or parts[0] != TAG_PREFIX or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3]


def network_part(network: str) -> str:
    """The network part of every tag of ``network`` (what GC selects by)."""
    return tag_part(network, _LIMITS[0])


def kept_tags(network: str, keep: set[tuple[str, str]]) -> set[str]:
    """Tags of the attachments GC must keep."""
    return {Owner(network, cid, ifname).tag for cid, ifname in keep}


def gc_doomed(tag: str, net_part: str, keep_tags: set[str]) -> bool:
    """True when ``tag`` belongs to the network GC is cleaning and is not kept."""
    parts = parse_tag(tag)
    return parts is not None and parts[0] == net_part and tag not in keep_tags
