"""The nftables backend (``NftBackend``): ``nft`` and its JSON interface, four features.

One module per job; imports run down this list, and this module imports only the runner
and the interfaces: each feature is imported when asked for (a plugin pays only for the
modules its verb uses).

    masquerade  ipMasq: table ``inet cnipy_nat``
    hostports   portmap: table ``inet cnipy_hostport``
    spoofcheck  macspoofchk: the reference's table ``bridge nat``
    forward     the firewall plugin: table ``inet cnipy_firewall``
    listing     one reader of ``nft -j list table`` output, for every table
    elements    what the two element-only tables share: owner marker and proof sets, the delete path
    runner      the ``nft`` command: batches and listings
"""

from __future__ import annotations

from cnilib.firewall.base import Backend, Forward, HostPorts, Masquerade, SpoofCheck
from cnilib.firewall.nftables.runner import Nft


class NftBackend(Backend):
    """nftables through the ``nft`` command."""

    name = "nftables"
    tools = ("nft",)
    state_tool = "nft"
    features = ("masquerade", "hostports", "spoofcheck", "forward")

    def __init__(self) -> None:
        self.nft = Nft()
        self._reason: str | None = ""  # "" = not probed yet

    def available(self) -> str | None:
        if self._reason == "":
            self._reason = self.missing_tools() or self.nft.probe()
        return self._reason

    def masquerade(self) -> Masquerade:
        from cnilib.firewall.nftables.masquerade import NftMasquerade

        return NftMasquerade(self.nft)

    def hostports(self) -> HostPorts:
        from cnilib.firewall.nftables.hostports import NftHostPorts

        return NftHostPorts(self.nft)

    def spoofcheck(self) -> SpoofCheck:
        from cnilib.firewall.nftables.spoofcheck import NftSpoofCheck

        return NftSpoofCheck(self.nft)

    def forward(self) -> Forward:
        from cnilib.firewall.nftables.forward import NftForward

        return NftForward(self.nft)
