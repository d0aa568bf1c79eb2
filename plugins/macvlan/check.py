"""CHECK: the macvlan, its mode, master, MAC, MTU, addresses and routes (cnilib.sublink)."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def check(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    sublink.check(cmd, cfg, config.plan(cfg))
