"""macvlan: the container gets a macvlan of a host interface (its own MAC on the master's
wire).

Every key of the reference macvlan (config.py), the same ADD/DEL/CHECK and result layout
(``interfaces: [container link]``), plus GC and STATUS. Beyond the reference: a failed ADD
leaves no link and no lease; the IPAM plugin's ``dns`` is kept unless the config sets
``dns``; DEL needs neither the master nor the namespace; CHECK also checks the master,
MTU and broadcast queue length; STATUS checks the kernel, the master and the IPAM plugin.
The shared flow is ``cnilib.sublink``; each verb here is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


PLUGIN = skel.Plugin("macvlan", "interface",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=skel.verb(__package__, "status:status"))


def main() -> None:
    skel.run(PLUGIN)
