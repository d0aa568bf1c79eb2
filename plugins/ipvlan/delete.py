"""DEL and GC: never need the master, a default route or the namespace (cnilib.sublink).
IPAM is released only when configured (chained use has none)."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def delete(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    sublink.delete(cmd, cfg, "ipvlan", release_ipam=cfg.layer3)


def gc(cmd: "CmdArgs") -> None:
    sublink.gc(cmd, config.load(cmd, strict=False))
