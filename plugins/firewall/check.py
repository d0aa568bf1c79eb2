"""firewall CHECK: every rule ADD made for the attachment is in place, in the backend ADD
used (firewalld: every address a source of the zone, as firewalld answers). Reads only
(the reference's CHECK creates missing chains, and ignores firewalld's answer)."""

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
    owner = Owner(cfg.name, cmd.container_id, cmd.ifname)
    config.backend_of_add(cfg, owner).forward().check(owner, spec)
