"""The iptables backend (``IptablesBackend``): iptables/ip6tables (nft or legacy flavour,
whichever the alternatives point at), three features.

One module per job; imports run down this list, and this module imports only the runner
and the interfaces: each feature is imported when asked for. The spoof check is not one
of them: its layout is the reference's nftables bridge table.

    masquerade  ipMasq: one chain per owner in the nat table
    hostports   portmap: CNIPY-HOSTPORTS and one chain per owner
    forward     the firewall plugin: the reference's CNI-FORWARD layout in the filter table
    runner      the iptables tools: ``-S`` listings, ``iptables-save``, ``iptables-restore``
    listing     one reader of what they print (``Table`` of ``Rule``)
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError
from cnilib.firewall.base import Backend, Forward, HostPorts, Masquerade, SpoofCheck
from cnilib.firewall.iptables.runner import Iptables


class IptablesBackend(Backend):
    """iptables through iptables-restore, iptables-save and ``iptables -S``."""

    name = "iptables"
    tools = ("iptables", "iptables-save", "iptables-restore")
    state_tool = "iptables-save"
    features = ("masquerade", "hostports", "forward")

    def __init__(self) -> None:
        self.ipt = Iptables()
        self._reason: str | None = ""  # "" = not probed yet

    def available(self) -> str | None:
        if self._reason == "":
            self._reason = self.missing_tools() or self.ipt.probe()
        return self._reason

    def masquerade(self) -> Masquerade:
        from cnilib.firewall.iptables.masquerade import IptablesMasquerade

        return IptablesMasquerade(self.ipt)

    def hostports(self) -> HostPorts:
        from cnilib.firewall.iptables.hostports import IptablesHostPorts

        return IptablesHostPorts(self.ipt)

    def forward(self) -> Forward:
        from cnilib.firewall.iptables.forward import IptablesForward

        return IptablesForward(self.ipt)

    def spoofcheck(self) -> SpoofCheck:
        raise CNIError(NOT_AVAILABLE, "macspoofchk needs nftables: its rules are the reference's nftables "
                                      "bridge table, which the iptables backend cannot make")
