"""firewall CHECK: every rule ADD made for the attachment is in place. Reads only (the
reference's CHECK creates missing chains)."""

from __future__ import annotations

from cnilib.firewall import Owner

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def check(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    spec = config.spec(cfg, config.prev_result(cmd))
    if not spec.addresses:
        return
    config.backend(cfg).forward().check(Owner(cfg.name, cmd.container_id, cmd.ifname), spec)
