"""DEL and GC: never need the master or the namespace (the reference's DEL fails when the
master is gone); IPAM is released when configured (cnilib.sublink)."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def delete(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    sublink.delete(cmd, cfg, "vlan", release_ipam=cfg.layer3)


def gc(cmd: "CmdArgs") -> None:
    sublink.gc(cmd, config.load(cmd, strict=False))
