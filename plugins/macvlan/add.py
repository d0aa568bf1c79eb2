"""ADD: a macvlan of the master, born in the container (cnilib.sublink)."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result


def add(cmd: "CmdArgs") -> "Result":
    cfg = config.load(cmd)
    return sublink.add(cmd, cfg, config.plan(cfg))
