"""vlan: the container gets an 802.1Q VLAN link of a host interface (frames tagged with
``vlanId`` on the master's wire).

Every key of the reference vlan (config.py), the same ADD/DEL/CHECK and result layout
(``interfaces: [container link]``), plus GC and STATUS. Beyond the reference: a kernel
without 802.1Q is refused with code 50 before anything is created; a second container on
the same (master, VLAN ID) is code 101 naming the holder; a failed ADD leaves no link and
no lease; the IPAM plugin's ``dns`` is kept unless the config sets ``dns``; DEL needs
neither the master nor the namespace. The shared flow is ``cnilib.sublink``; each verb
here is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


PLUGIN = skel.Plugin("vlan", "interface",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=skel.verb(__package__, "status:status"))


def main() -> None:
    skel.run(PLUGIN)
