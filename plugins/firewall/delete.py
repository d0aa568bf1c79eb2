"""firewall DEL and GC, on every backend that may hold state of ours (the one the config
names first), whatever backend ADD used and whatever started or stopped since.

DEL needs no prevResult: the owner's tag finds its rules, and firewalld's zone sources are
found in the record ADD wrote (no record: no D-Bus connection at all). Given prevResult,
it also removes the reference plugin's untagged rules for those addresses (and, when the
config may mean firewalld, its zone sources no record of ours claims). GC removes the
rules, sources and records of this network's attachments not in
``cni.dev/valid-attachments``.
"""

from __future__ import annotations

from cnilib import firewall
from cnilib.errors import CNIError, Teardown

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall import ForwardSpec
    from cnilib.owner import Owner
    from cnilib.skel import CmdArgs


def _known(cmd: "CmdArgs", cfg: config.FirewallConf) -> "ForwardSpec | None":
    """What ADD was given, from prevResult; None when absent or unreadable."""
    if cmd.conf.raw_prev_result is None:
        return None
    try:
        return config.spec(cfg, cmd.conf.prev_result())
    except (CNIError, ValueError):
        return None


def _delete_firewalld(cfg: config.FirewallConf, owner: "Owner", reference: "ForwardSpec | None") -> None:
    """The sources firewalld's ADD recorded for ``owner``: no record (any other backend's
    attachment) and no ``reference`` to release, no D-Bus at all."""
    if reference is None and not firewall.firewalld_recorded(owner):
        return
    firewall.firewalld_backend(cfg.zone).forward().delete(owner, reference)


def delete(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    owner = firewall.Owner(cfg.name, cmd.container_id, cmd.ifname)
    known = _known(cmd, cfg)
    td = Teardown("firewall: DEL")
    # Given prevResult and a config that may mean firewalld, the reference's sources too.
    reference = known if cfg.backend in (None, "firewalld") else None
    td.attempt("firewalld sources", _delete_firewalld, cfg, owner, reference)
    td.attempt("forwarding rules", firewall.on_every_backend, cfg.backend,
               lambda b: b.forward().delete(owner, known), "firewall: DEL")
    td.finish()


def gc(cmd: "CmdArgs") -> None:
    keep = cmd.conf.valid_attachments()
    if keep is None:
        return
    cfg = config.load(cmd, strict=False)
    td = Teardown("firewall: GC")
    td.attempt("firewalld sources", firewall.firewalld_backend(cfg.zone).forward().gc, cfg.name, keep)
    td.attempt("forwarding rules", firewall.on_every_backend, cfg.backend,
               lambda b: b.forward().gc(cfg.name, keep), "firewall: GC")
    td.finish()
