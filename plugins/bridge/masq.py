"""ipMasq through cnilib.firewall: the attachment is the rules' owner.

Rules are found by their owner tag (network, container ID, ifname), never by the
container's addresses, so DEL and GC release them when the namespace or interface is
already gone (the reference leaks its iptables chain then, #810).
"""

from __future__ import annotations

from cnilib.errors import CNIError

if False:  # type checking only
    from cnilib.firewall.base import Backend, Owner
    from cnilib.types import Result

    from .config import BridgeConf

BACKENDS = ("nftables", "iptables")


def backend(cfg: "BridgeConf") -> "Backend":
    """The configured backend, or the firewall layer's default (code 7 / 50 otherwise)."""
    from cnilib import firewall

    return firewall.select(cfg.ipmasq_backend)


def owner(cfg: "BridgeConf", container_id: str, ifname: str) -> "Owner":
    from cnilib.firewall.base import Owner

    return Owner(cfg.name, container_id, ifname)


def rules(result: "Result") -> list:
    from cnilib.firewall.rules import MasqRule

    return [MasqRule.for_address(ipc.address) for ipc in result.ips]


# The command whose presence means a backend may hold rules of ours.
_TOOL = {"nftables": "nft", "iptables": "iptables-save"}


def _teardown(cfg: "BridgeConf", fn) -> None:
    """``fn(backend)`` for the configured backend (its error is DEL's error), then for the
    other one wherever its tool exists (best effort: it may hold rules from an ADD made
    with another config, as the reference cleans both). No ``available()`` probe: a
    backend without its tool cannot hold rules, and the teardown itself reads first."""
    import sys

    from cnilib import firewall
    from cnilib.firewall import _exec

    names = [cfg.ipmasq_backend] if cfg.ipmasq_backend else []
    names += [n for n in BACKENDS if n not in names]
    failures: list[CNIError] = []
    tried = 0
    for name in names:
        if _exec.find_tool(_TOOL[name]) is None:
            continue
        tried += 1
        try:
            fn(firewall.make(name))
        except CNIError as e:
            if name == cfg.ipmasq_backend:
                raise
            sys.stderr.write(f"bridge: {name} masquerade teardown: {e.msg}\n")
            failures.append(e)
    if tried and len(failures) == tried:
        raise failures[0]  # no backend worked: the rules may still be there


def release(cfg: "BridgeConf", container_id: str, ifname: str) -> None:
    """Remove the attachment's masquerading (see ``_teardown``)."""
    o = owner(cfg, container_id, ifname)
    _teardown(cfg, lambda b: b.del_masquerade(o))


def gc(cfg: "BridgeConf", keep: set[tuple[str, str]]) -> None:
    _teardown(cfg, lambda b: b.gc_masquerade(cfg.name, keep))
