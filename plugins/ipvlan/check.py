"""CHECK: the ipvlan, its mode, master (when configured), MAC, MTU, addresses and routes
(cnilib.sublink). Works with ``master`` omitted (the reference then always fails)."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def check(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    sublink.check(cmd, cfg, config.plan(cfg))
