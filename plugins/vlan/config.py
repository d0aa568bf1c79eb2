"""The vlan plugin's configuration: every key of the reference, same meaning and default.

| key | default | |
|---|---|---|
| ``master`` | required | the parent, in the host (or, with ``linkInContainer``, the container) |
| ``vlanId`` | 0 | 802.1Q VLAN ID, 0-4094 (0: priority-tagged frames) |
| ``mtu`` | 0 (inherit) | at most the master's MTU (checked at ADD) |
| ``linkInContainer`` | false | the master is in the container's namespace |
| ``ipam`` | required | an IPAM plugin (``type``) |
| ``dns`` | | replaces the IPAM plugin's ``dns`` |

``load(cmd)`` is strict (ADD, CHECK, STATUS: code 7 naming the key and value);
``load(cmd, strict=False)`` (DEL, GC) keeps what it can read and requires nothing.
"""

from __future__ import annotations

from cnilib import gokeys, link
from cnilib.confread import Reader
from cnilib.parentconf import COMMON_KEYS, ParentLinkConf, read_common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.errors import CNIError
    from cnilib.skel import CmdArgs
    from cnilib.sublink import Plan

FIELDS = gokeys.Struct(*COMMON_KEYS, "vlanId")
MAX_VLAN_ID = 4094
EEXIST = 17


class VlanConf(ParentLinkConf):
    __slots__ = ("vlan_id",)

    def __init__(self) -> None:
        super().__init__("vlan")
        self.vlan_id = 0


def load(cmd: "CmdArgs", strict: bool = True) -> VlanConf:
    """The vlan config of this invocation."""
    rd = Reader(cmd.conf.data, FIELDS, strict=strict)
    c = VlanConf()
    read_common(cmd, rd, c)
    c.vlan_id = rd.int("vlanId", 0, 0, MAX_VLAN_ID, why=f"must be a VLAN ID from 0 to {MAX_VLAN_ID}")
    if not c.master:
        rd.bad("master", None, "the vlan plugin needs the parent interface")
    if not c.layer3:
        rd.bad("ipam.type", None, "the vlan plugin needs an IPAM plugin")
    return c


def plan(c: VlanConf, cmd: "CmdArgs") -> "Plan":
    """What cnilib.sublink needs to make, explain and check this config's link."""
    from cnilib.sublink import Plan

    def build(name: str, parent: int, netns_fd: int):
        return link.vlan_link_request(name, parent, c.vlan_id, netns_fd=netns_fd, mtu=c.mtu)

    def explain(errno: int, master: link.Link) -> "CNIError | None":
        if errno == EEXIST:
            from . import holder

            return holder.conflict(c, cmd, master)
        return None

    def verify(lk: link.Link) -> str:
        return "" if lk.vlan_id == c.vlan_id else f"VLAN ID is {lk.vlan_id}, the config says {c.vlan_id}"

    who = f"vlan network {c.name!r} (vlanId {c.vlan_id} on {c.master})"
    # The reference sets neither arp_notify nor ndisc_notify on a VLAN; arp_notify comes
    # with cnilib.ifconfig (a gratuitous ARP for the new address harms no one).
    return Plan("vlan", who, build, explain=explain, verify=verify, ndisc_notify=False)
