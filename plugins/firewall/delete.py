"""firewall DEL and GC, on every backend that may hold state of ours (the one the config
names first), whatever backend ADD used and whatever started or stopped since.

DEL needs no prevResult: the owner's tag finds its rules. Given prevResult, it also removes
the reference plugin's untagged rules for those addresses. GC removes the rules of this
network's attachments not in ``cni.dev/valid-attachments``.
"""

from __future__ import annotations

from cnilib import firewall
from cnilib.errors import CNIError

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall import ForwardSpec
    from cnilib.skel import CmdArgs


def _known(cmd: "CmdArgs", cfg: config.FirewallConf) -> "ForwardSpec | None":
    """What ADD was given, from prevResult; None when absent or unreadable."""
    if cmd.conf.raw_prev_result is None:
        return None
    try:
        return config.spec(cfg, cmd.conf.prev_result())
    except (CNIError, ValueError):
        return None


def delete(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    owner = firewall.Owner(cfg.name, cmd.container_id, cmd.ifname)
    known = _known(cmd, cfg)
    firewall.on_every_backend(cfg.backend, lambda b: b.forward().delete(owner, known), "firewall: DEL")


def gc(cmd: "CmdArgs") -> None:
    keep = cmd.conf.valid_attachments()
    if keep is None:
        return
    cfg = config.load(cmd, strict=False)
    firewall.on_every_backend(cfg.backend, lambda b: b.forward().gc(cfg.name, keep), "firewall: GC")
