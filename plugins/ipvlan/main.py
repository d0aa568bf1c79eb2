"""ipvlan: the container gets an ipvlan of a host interface (the master's MAC, its own
addresses; l2, l3 or l3s mode).

Every key of the reference ipvlan (config.py), including its chained use (master and
addresses from prevResult), the same ADD/DEL/CHECK and result layout (``interfaces:
[container link]``), plus GC and STATUS. Beyond the reference: a kernel without ipvlan is
refused with code 50 before anything is created; a failed ADD leaves no link and no
lease; the IPAM plugin's ``dns`` is kept unless the config sets ``dns``; DEL needs neither
the master, nor a default route, nor the namespace; CHECK works with ``master`` omitted.
The shared flow is ``cnilib.sublink``; each verb here is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


PLUGIN = skel.Plugin("ipvlan", "interface",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=skel.verb(__package__, "status:status"))


def main() -> None:
    skel.run(PLUGIN)
