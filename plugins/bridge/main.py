"""bridge: connect the container to a Linux bridge on the host through a veth pair.

Every key of the reference bridge plugin with the same meaning and default (config.py),
the same ADD/DEL/CHECK behaviour and result layout (``[bridge, host veth, container]``),
plus GC and STATUS. Beyond the reference: a failed ADD leaves nothing behind; DEL releases
the host veth, the IPAM lease and the firewall rules without the container's namespace;
CHECK works for L2-only configs and checks the port flags, MTU, VLANs and rules; a bridge
created here keeps a stable MAC; VLAN configs on a kernel without 802.1Q bridge support
are refused before anything is created. Each verb lives in its own module, imported only
when that verb runs.
"""

from __future__ import annotations

from cnilib import skel


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready when the IPAM plugin is (L3), the firewall backend is available (ipMasq) and
    nft is installed (macspoofchk); else the first problem, code 50."""
    from . import config

    cfg = config.load(cmd, strict=False)
    if cfg.layer3:
        from cnilib import ipam

        ipam.status(cmd)
    if cfg.ipmasq and cfg.layer3:
        from . import masq

        masq.backend(cfg, probe=True)
    if cfg.macspoofchk:
        from cnilib import firewall

        firewall.spoof_check()  # code 50 when nft is missing


PLUGIN = skel.Plugin("bridge", "interface",
                     add=skel.verb(__package__, "add:cmd_add"), delete=skel.verb(__package__, "delete:cmd_del"),
                     check=skel.verb(__package__, "check:cmd_check"), gc=skel.verb(__package__, "delete:cmd_gc"),
                     status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
