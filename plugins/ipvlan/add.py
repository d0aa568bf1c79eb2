"""ADD: an ipvlan of the master, born in the container (cnilib.sublink). Chained without
an IPAM plugin, the prevResult's addresses and routes are applied to it."""

from __future__ import annotations

from cnilib import sublink
from cnilib.errors import invalid_config

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result


def add(cmd: "CmdArgs") -> "Result":
    cfg = config.load(cmd)
    prev = cmd.conf.prev_result()
    master = config.chained_master(cfg, prev)
    if not cfg.layer3 and not (prev is not None and prev.ips):
        raise invalid_config("ipam.type", cfg.ipam_type or None,
                             "ipvlan needs an IPAM plugin unless it is chained after a plugin whose "
                             "prevResult holds IP addresses")
    return sublink.add(cmd, cfg, config.plan(cfg), prev=prev, master_name=master)
