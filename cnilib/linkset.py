"""Link attributes ``cnilib.link`` does not cover: the all-multicast flag and the transmit
queue length, plus one read of everything a link-tuning plugin saves and restores.

Built on ``cnilib.nl`` the way ``cnilib.link`` builds its requests (``*_request``
functions return the message unsent, so tests can look at it); every function takes a
``nl.Socket``, which decides the network namespace, and raises ``nl.NetlinkError`` when
the kernel refuses.
"""

from __future__ import annotations

from cnilib import nl

IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
ENODEV = 19
ENOENT = 2
MAX_TXQLEN = 0xFFFFFFFF  # IFLA_TXQLEN is a u32


class LinkState:
    """What ``state`` reads of a link: the attributes a tuning plugin may change."""

    __slots__ = ("index", "name", "mac", "mtu", "flags", "txqlen")

    def __init__(self, m) -> None:
        self.index: int = m["index"]
        self.name: str = m.get_attr("IFLA_IFNAME") or ""
        self.mac: str = (m.get_attr("IFLA_ADDRESS") or "").lower()
        self.mtu: int = m.get_attr("IFLA_MTU") or 0
        self.flags: int = m["flags"]
        txq = m.get_attr("IFLA_TXQLEN")
        self.txqlen: int = txq if isinstance(txq, int) else 0

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def allmulti(self) -> bool:
        return bool(self.flags & IFF_ALLMULTI)

    def __repr__(self) -> str:
        return (f"LinkState({self.name!r}, mac={self.mac}, mtu={self.mtu}, promisc={self.promisc}, "
                f"allmulti={self.allmulti}, txqlen={self.txqlen})")


def _ifinfo(index: int = 0, attrs: list | None = None, flags: int = 0, change: int = 0):
    return nl.msg("ifinfmsg", {"family": 0, "index": index, "flags": flags, "change": change}, attrs)


def state(sock: nl.Socket, name: str) -> LinkState | None:
    """The link called ``name`` (None when there is none)."""
    try:
        m = sock.get(_ifinfo(attrs=[("IFLA_IFNAME", name)]), nl.RTM_GETLINK, "ifinfmsg")
    except nl.NetlinkError as e:
        if e.errno in (ENODEV, ENOENT):
            return None
        raise
    return LinkState(m) if m is not None else None


def allmulti_request(index: int, on: bool):
    """RTM_NEWLINK changing only IFF_ALLMULTI of link ``index`` (``ip link set allmulticast``)."""
    return _ifinfo(index, flags=IFF_ALLMULTI if on else 0, change=IFF_ALLMULTI)


def set_allmulti(sock: nl.Socket, index: int, on: bool) -> None:
    """All-multicast mode on or off."""
    sock.request(allmulti_request(index, on), nl.RTM_NEWLINK)


def txqlen_request(index: int, txqlen: int):
    """RTM_NEWLINK setting IFLA_TXQLEN (0 to MAX_TXQLEN) of link ``index``."""
    if not 0 <= txqlen <= MAX_TXQLEN:
        raise ValueError(f"txqlen {txqlen} out of range 0-{MAX_TXQLEN}")
    return _ifinfo(index, attrs=[("IFLA_TXQLEN", txqlen)])


def set_txqlen(sock: nl.Socket, index: int, txqlen: int) -> None:
    """Set the transmit queue length."""
    sock.request(txqlen_request(index, txqlen), nl.RTM_NEWLINK)
