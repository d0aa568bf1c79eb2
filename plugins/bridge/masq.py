"""ipMasq through cnilib.firewall: the attachment is the rules' owner.

Rules are found by their owner tag (network, container ID, ifname), never by the
container's addresses, so DEL and GC release them when the namespace or interface is
already gone (the reference leaks its iptables chain then, #810).
"""

from __future__ import annotations

if False:  # type checking only
    from cnilib.firewall.base import Backend, Owner
    from cnilib.types import Result

    from .config import BridgeConf


def backend(cfg: "BridgeConf", probe: bool = False) -> "Backend":
    """The configured backend, or the firewall layer's default (code 7 / 50 otherwise);
    ``probe`` (STATUS) also runs the tool once to see that the kernel accepts it."""
    from cnilib import firewall

    return firewall.select(cfg.ipmasq_backend, probe=probe)


def owner(cfg: "BridgeConf", container_id: str, ifname: str) -> "Owner":
    from cnilib.firewall.base import Owner

    return Owner(cfg.name, container_id, ifname)


def rules(result: "Result") -> list:
    from cnilib.firewall.rules import MasqRule

    return [MasqRule.for_address(ipc.address) for ipc in result.ips]


def _teardown(cfg: "BridgeConf", fn) -> None:
    """``fn(backend)`` on the configured backend, then best effort on the other one."""
    from cnilib import firewall

    firewall.on_every_backend(cfg.ipmasq_backend, fn, "bridge: masquerade teardown")


def release(cfg: "BridgeConf", container_id: str, ifname: str) -> None:
    """Remove the attachment's masquerading (see ``_teardown``)."""
    o = owner(cfg, container_id, ifname)
    _teardown(cfg, lambda b: b.del_masquerade(o))


def gc(cfg: "BridgeConf", keep: set[tuple[str, str]]) -> None:
    _teardown(cfg, lambda b: b.gc_masquerade(cfg.name, keep))
