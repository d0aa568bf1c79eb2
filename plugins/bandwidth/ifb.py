"""The attachment's IFB: the device egress traffic is redirected to and shaped on.

Name: ``bwp`` + 12 hex digits of SHA-256 of the attachment's owner tag (network,
container ID *and* ifname), so two attachments of one network to one container (eth0 and
eth1) get two IFBs; the reference hashes only network and container ID (SHA-512), so
they share one, and the first DEL takes it from the other (reference issues #151, #353).
The IFB carries the owner tag as its alias: GC finds a network's IFBs by it. DEL also
removes an IFB of the reference's name when the reference made it (no tag of ours), so
switching implementations on a live host leaks nothing.
"""

from __future__ import annotations

from cnilib.owner import attachment_tag, sha256_hex
from cnilib import rawlink as links


TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

PREFIX = "bwp"


def owner_tag(cmd: CmdArgs) -> str:
    """The attachment's owner tag (``cnipy:<network>:<container id>:<ifname>``): the IFB's
    name derives from it and its alias carries it."""
    return attachment_tag(cmd.conf.name or "", cmd.container_id, cmd.ifname)


def name(tag: str) -> str:
    """Our IFB's name for the attachment with owner tag ``tag``."""
    return PREFIX + sha256_hex(tag)[:12]


def reference_name(network: str, container_id: str) -> str:
    """The reference's IFB name: ``bwp`` + SHA-512(network + container ID)[:12]."""
    try:
        from _sha512 import sha512  # CPython <= 3.11: no OpenSSL load (hashlib ~6 ms)
    except ImportError:  # pragma: no cover
        try:
            from _sha2 import sha512  # type: ignore[no-redef]
        except ImportError:
            from hashlib import sha512  # type: ignore[no-redef]
    return PREFIX + sha512((network + container_id).encode()).hexdigest()[:12]


def create_request(ifname: str, mtu: int):
    """RTM_NEWLINK for an IFB, up, with ``mtu`` and txqueuelen 0 (as the reference: the
    TBF on it has its own queue)."""
    return links.ifb_request(ifname, mtu)


def create(sock: links.Socket, ifname: str, mtu: int, tag: str) -> links.Link:
    """Create the IFB (NetlinkError EEXIST when the name is taken), tag it, read it back."""
    links.create(sock, create_request(ifname, mtu))
    lk = links.get(sock, ifname)
    if lk is None:
        raise OSError(2, f"IFB {ifname} vanished right after its creation")
    links.set_alias(sock, lk.index, tag)  # the kernel ignores an alias in the creating request
    lk.alias = tag
    return lk


def delete(sock: links.Socket, ifname: str, ours: bool) -> bool:
    """Delete IFB ``ifname`` if it is one (``ours``: any alias; else only one without a
    cni-py tag, i.e. the reference's); False when there was nothing to delete."""
    lk = links.get(sock, ifname)
    if lk is None or lk.kind != "ifb":
        return False
    if not ours and lk.alias.startswith("cnipy:"):
        return False
    return links.delete(sock, lk.index)


def tagged(sock: links.Socket) -> list[tuple[int, str, str]]:
    """(index, name, alias) of every IFB here."""
    return [(lk.index, lk.name, lk.alias) for lk in links.list_links(sock, "ifb")]
