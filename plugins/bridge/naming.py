"""How an attachment's host veth is named and tagged, so DEL finds it without the container.

The tag is the attachment's firewall owner tag (``cnipy:<network>:<container id>:<ifname>``,
see cnilib.owner), stored as the host veth's IFLA_IFALIAS. The name is
``veth`` + 8 hex digits of the tag's SHA-256 — the reference's ``veth`` + 8 hex shape, but
derived rather than random, so DEL looks it up with one request. A name already taken by
another link (a hash collision or a foreign link) falls back to random names, as the
reference does; DEL then finds the veth by its alias among the bridge's ports.
"""

from __future__ import annotations


def tag(network: str, container_id: str, ifname: str) -> str:
    from cnilib.owner import attachment_tag

    return attachment_tag(network, container_id, ifname)


def host_veth_name(attachment_tag: str) -> str:
    from cnilib.owner import sha256_hex

    return "veth" + sha256_hex(attachment_tag)[:8]


def random_veth_name() -> str:
    import posix

    return "veth" + posix.urandom(4).hex()
