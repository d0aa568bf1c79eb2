"""ipMasq through cnilib.firewall: the attachment is the rules' owner.

Rules are found by their owner tag (network, container ID, ifname), never by the
container's addresses, so DEL and GC release them when the namespace or interface is
already gone (the reference leaks its iptables chain then, #810).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall import Backend, MasqRule
    from cnilib.owner import Owner
    from cnilib.types import Result

    from .config import BridgeConf


def backend(cfg: "BridgeConf", probe: bool = False) -> "Backend":
    """The configured backend, or the firewall layer's default (code 7 / 50 otherwise);
    ``probe`` (STATUS) also runs the tool once to see that the kernel accepts it."""
    from cnilib import firewall

    return firewall.select(cfg.ipmasq_backend, probe=probe)


def owner(cfg: "BridgeConf", container_id: str, ifname: str) -> "Owner":
    from cnilib.owner import Owner

    return Owner(cfg.name, container_id, ifname)


def rules(result: "Result") -> "list[MasqRule]":
    from cnilib.firewall import MasqRule

    return [MasqRule.for_address(ipc.address) for ipc in result.ips]


def attachment_rules(prev: "Result", ifname: str) -> "list[MasqRule]":
    """The rules for ``prev``'s addresses on CNI_IFNAME."""
    from cnilib.types import Result, on_interface

    return rules(Result(ips=[ipc for ipc in prev.ips if on_interface(prev, ipc, ifname)]))


def _teardown(cfg: "BridgeConf", fn) -> None:
    """``fn(masquerade feature)`` on the configured backend, then best effort on the other one."""
    from cnilib import firewall

    firewall.on_every_backend(cfg.ipmasq_backend, lambda b: fn(b.masquerade()), "bridge: masquerade teardown")


def release(cfg: "BridgeConf", container_id: str, ifname: str, prev: "Result | None" = None) -> None:
    """Remove the attachment's masquerading (see ``_teardown``). ``prev`` (the cached
    result a runtime passes to DEL) only saves the nftables backend a read: what it names
    is checked against the owner's state, never trusted blindly."""
    from cnilib.errors import CNIError

    o = owner(cfg, container_id, ifname)
    known = None
    if prev is not None:
        try:
            known = attachment_rules(prev, ifname) or None
        except CNIError:  # a prevResult no ADD of ours produced: DEL reads instead
            known = None
    _teardown(cfg, lambda m: m.delete(o, known))


def gc(cfg: "BridgeConf", keep: set[tuple[str, str]]) -> None:
    _teardown(cfg, lambda m: m.gc(cfg.name, keep))
