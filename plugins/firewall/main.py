"""firewall: accept the container's forwarded traffic after the administrator's chain, and
isolate its bridge (a chained plugin).

Every key of the reference firewall plugin (config.py: ``backend``,
``iptablesAdminChainName``, ``firewalldZone``, ``ingressPolicy``), its iptables layout
(``FORWARD`` -> ``CNI-FORWARD`` -> the admin chain first, per-address accept rules;
``CNI-ISOLATION-STAGE-1/-2``) and an nftables backend with the same semantics in a table
of its own (``inet cnipy_firewall``), and the reference's firewalld backend (zone sources
over D-Bus, with a record per attachment), through cnilib.firewall's ``forward`` feature.
``prevResult`` is passed on unchanged. Beyond the reference: every spec
version; an unknown backend or policy is code 7, never a silent default; DEL needs no
prevResult (owner tags, firewalld records) and cleans every backend; CHECK only reads
(and honours firewalld's answer); IPv4-only attachments need no ip6tables; GC and STATUS.
Each verb is imported only when it runs.
"""

from __future__ import annotations

from cnilib import skel


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready when the configured (or automatic) backend works here (probed: firewalld must
    answer on the bus, be RUNNING and have the zone); code 50 for an unusable backend."""
    from . import config

    config.backend(config.load(cmd, strict=False), probe=True)


PLUGIN = skel.Plugin("firewall", "chained",
                     add=skel.verb(__package__, "add:add"), delete=skel.verb(__package__, "delete:delete"),
                     check=skel.verb(__package__, "check:check"), gc=skel.verb(__package__, "delete:gc"),
                     status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
