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


def cmd_add(cmd: skel.CmdArgs):
    from .add import add

    return add(cmd)


def cmd_del(cmd: skel.CmdArgs) -> None:
    from .delete import delete

    delete(cmd)


def cmd_check(cmd: skel.CmdArgs) -> None:
    from .check import check

    check(cmd)


def cmd_gc(cmd: skel.CmdArgs) -> None:
    from .delete import gc

    gc(cmd)


def cmd_status(cmd: skel.CmdArgs) -> None:
    from .status import status

    status(cmd)


PLUGIN = skel.Plugin("macvlan", "interface", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc,
                     status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
