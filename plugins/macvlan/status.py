"""STATUS: the kernel has macvlan, the master (or a default-route interface) exists, the
IPAM plugin is ready; else code 50 naming the first problem."""

from __future__ import annotations

from cnilib import sublink

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def status(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    sublink.status(cmd, cfg, config.plan(cfg))
