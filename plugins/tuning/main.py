"""tuning: sysctls and link attributes of the container's interface (a chained plugin).

Every key of the reference tuning plugin (config.py: ``sysctl``, ``mac``, ``promisc``,
``mtu``, ``txQLen``, ``allmulti``, ``dataDir``; CNI_ARGS ``MAC``, capability ``mac``,
``args.cni``) with the reference's precedence; ``prevResult`` is passed on, with the MAC of
the interface named CNI_IFNAME updated when one is set. Beyond the reference: DEL also
restores sysctls; a failed ADD reverts what it changed; sysctl keys cannot leave
/proc/sys/net; backup files are root's only and never read through links or from FIFOs;
CHECK compares sysctls as the kernel prints them; GC removes stale backup files; STATUS
checks the allowlist. Each verb is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready unless the sysctl allowlist exists and cannot be used (code 50): every ADD
    with a sysctl would then fail."""
    from cnilib.errors import NOT_AVAILABLE, CNIError

    from . import allowlist

    try:
        allowlist.load()
    except CNIError as e:
        raise CNIError(NOT_AVAILABLE, e.msg) from None


PLUGIN = skel.Plugin("tuning", "chained",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
