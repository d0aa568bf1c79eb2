"""bandwidth: shape a veth-attached container's traffic with token buckets (chained).

The reference bandwidth plugin's keys (``ingressRate``, ``ingressBurst``, ``egressRate``,
``egressBurst``) and ``bandwidth`` capability (config.py), its kernel layout: a TBF on the
host veth for traffic into the container; for traffic out of it an IFB with a TBF, fed by
an ingress qdisc and a u32 redirect filter on the host veth (add.py). ``prevResult`` is
passed on with the IFB appended to its interfaces. Beyond the reference: the IFB's name
includes the interface (ifb.py); bursts that overflow the kernel's 32-bit tick buffer are
clamped, not wrapped (shape.py); a failed ADD leaves nothing; CHECK checks every qdisc,
the IFB and the filter (check.py); DEL needs neither prevResult nor the namespace and
removes the qdiscs too when the veth stays; GC (delete.py); the capability and the
config keys both hold (lower rate and burst win per direction). Traffic control
(cnilib.tc) and the few link requests (links.py) are packed by hand, so no verb loads
pyroute2; each verb is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready when the packet scheduler's clock (/proc/net/psched) can be read: every ADD
    computes its buckets from it. Code 50 otherwise."""
    from cnilib.errors import NOT_AVAILABLE, CNIError

    from .shape import PSCHED, tick_in_usec

    try:
        tick_in_usec()
    except (OSError, ValueError, IndexError, ZeroDivisionError) as e:
        raise CNIError(NOT_AVAILABLE, f"cannot read the packet scheduler's clock from {PSCHED}: {e}") from None


PLUGIN = skel.Plugin("bandwidth", "chained",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
