"""Firewall drivers behind one interface (``base.Backend``): nftables and iptables.

    from cnilib.firewall import select, Owner, MasqRule
    fw = select(cfg.ipmasq_backend)     # CNIError 7 / 50 when unusable
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


def select(name: str | None, key: str = "ipMasqBackend", probe: bool = True) -> Backend:
    """The backend to use: ``None`` means nftables when ``nft`` works here, else iptables;
    "nftables"/"iptables" is honoured or fails with code 50 naming the tool and the reason;
    anything else is code 7 naming ``key`` (the config key it came from) and the value.

    ``probe=False`` (the ADD/CHECK hot path) judges by the tools' presence alone: the
    probe is one more exec (~5 ms) per call, and the change that follows reports a kernel
    that refuses it as clearly. STATUS probes."""
    if name is not None and name not in BACKENDS:
        raise invalid_config(key, name, 'must be "nftables" or "iptables"')
    candidates = [name] if name is not None else list(BACKENDS)
    reasons = []
    for cand in candidates:
        backend = make(cand)
        why = backend.available() if probe else _missing_tools(cand)
        if why is None:
            return backend
        reasons.append(f"{cand}: {why}")
    if name is not None:
        raise CNIError(NOT_AVAILABLE, f"{key} {name!r} is not usable: {reasons[0].split(': ', 1)[1]}")
    raise CNIError(NOT_AVAILABLE, f"no usable firewall backend: {'; '.join(reasons)}")


def _missing_tools(backend: str) -> str | None:
    """None when every tool ``backend`` runs is installed, else which are missing."""
    from cnilib.firewall import _exec

    missing = [t for t in _TOOLS_NEEDED[backend] if _exec.find_tool(t) is None]
    return f"{' and '.join(missing)} not found in PATH or /usr/sbin, /sbin" if missing else None


# What each backend runs (all must be there).
_TOOLS_NEEDED = {"nftables": ("nft",), "iptables": ("iptables", "iptables-save", "iptables-restore")}


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
