"""Firewall drivers behind one interface (``base.Backend``): nftables and iptables.

    from cnilib.firewall import select, Owner, MasqRule
    fw = select(conf.data.get("ipMasqBackend"))     # CNIError 7 / 50 when unusable
    fw.add_masquerade(Owner(net, cid, ifname), [MasqRule.for_address(ipc.address)])

Backends are imported only when selected: a plugin that never masquerades pays nothing.
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError, invalid_config
from cnilib.firewall.base import Backend, Owner
from cnilib.firewall.rules import MasqRule

__all__ = ["Backend", "MasqRule", "Owner", "BACKENDS", "make", "select", "available_backends", "on_every_backend"]

BACKENDS = ("nftables", "iptables")


def make(name: str) -> Backend:
    """A backend object by name, not probed (``available()`` says whether it works)."""
    if name == "nftables":
        from cnilib.firewall.nft import NftBackend

        return NftBackend()
    if name == "iptables":
        from cnilib.firewall.iptables import IptablesBackend

        return IptablesBackend()
    raise ValueError(name)


def select(name: str | None, key: str = "ipMasqBackend") -> Backend:
    """The backend to use: ``None`` means nftables when ``nft`` works here, else iptables;
    "nftables"/"iptables" is honoured or fails with code 50 naming the tool and the reason;
    anything else is code 7 naming ``key`` (the config key it came from) and the value."""
    if name is None:
        nft = make("nftables")
        why_nft = nft.available()
        if why_nft is None:
            return nft
        ipt = make("iptables")
        why_ipt = ipt.available()
        if why_ipt is None:
            return ipt
        raise CNIError(NOT_AVAILABLE, f"no usable firewall backend: nftables: {why_nft}; iptables: {why_ipt}")
    if name not in BACKENDS:
        raise invalid_config(key, name, 'must be "nftables" or "iptables"')
    backend = make(name)
    why = backend.available()
    if why is not None:
        raise CNIError(NOT_AVAILABLE, f"{key} {name!r} is not usable: {why}")
    return backend


def available_backends() -> list[Backend]:
    """Every backend usable here (DEL/GC can clean both, whatever the config said at ADD)."""
    out = []
    for name in BACKENDS:
        b = make(name)
        if b.available() is None:
            out.append(b)
    return out


# The command whose presence means a backend may hold state of ours.
_TOOL = {"nftables": "nft", "iptables": "iptables-save"}


def on_every_backend(configured: str | None, fn, who: str) -> None:
    """``fn(backend)`` for the ``configured`` backend (its error is the caller's error), then
    for the other one wherever its tool exists (best effort, a failure is a warning on
    stderr naming ``who``): state from an ADD made with another config may be there, and
    DEL/GC must release it. No ``available()`` probe: a backend without its tool cannot
    hold state, and every teardown reads before it writes. Raises the first error when
    no backend at all worked."""
    import sys

    from cnilib.firewall import _exec

    names = [configured] if configured else []
    names += [n for n in BACKENDS if n not in names]
    failures: list[CNIError] = []
    tried = 0
    for name in names:
        if _exec.find_tool(_TOOL[name]) is None:
            continue
        tried += 1
        try:
            fn(make(name))
        except CNIError as e:
            if name == configured:
                raise
            sys.stderr.write(f"{who}: {name}: {e.msg}\n")
            failures.append(e)
    if tried and len(failures) == tried:
        raise failures[0]
