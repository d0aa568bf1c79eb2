"""STATUS: the kernel has ipvlan, the master (or a default-route interface) exists, the
IPAM plugin is ready; else code 50 naming the first problem. With neither ``master`` nor
IPAM (chained use: the master comes from the prevResult at ADD) the master is not checked."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def status(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    sublink.status(cmd, cfg, config.plan(cfg), check_master=bool(cfg.master) or cfg.layer3)
