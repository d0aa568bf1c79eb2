"""The ipvlan plugin's configuration: every key of the reference, same meaning and default.

| key | default | |
|---|---|---|
| ``master`` | prevResult's single interface when chained, else the default-route interface | the parent |
| ``mode`` | ``l2`` | ``l2``, ``l3``, ``l3s`` |
| ``mtu`` | 0 (inherit) | at most the master's MTU (checked at ADD; the reference does not check) |
| ``linkInContainer`` | false | the master is in the container's namespace |
| ``ipam``, ``dns`` | | ``ipam`` may be left out when chained after a plugin whose prevResult has IPs |

``load(cmd)`` is strict (ADD, CHECK, STATUS: code 7 naming the key and value);
``load(cmd, strict=False)`` (DEL, GC) keeps what it can read.
"""

from __future__ import annotations

from cnilib import gokeys, link
from cnilib.confread import Reader
from cnilib.errors import ALREADY_ALLOCATED, CNIError, invalid_config
from cnilib.parentconf import COMMON_KEYS, ParentLinkConf, read_common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.sublink import Plan
    from cnilib.types import Result

FIELDS = gokeys.Struct(*COMMON_KEYS, "mode")
MODES = ("l2", "l3", "l3s")


class IpvlanConf(ParentLinkConf):
    __slots__ = ("mode",)

    def __init__(self) -> None:
        super().__init__("ipvlan")
        self.mode = "l2"


def load(cmd: "CmdArgs", strict: bool = True) -> IpvlanConf:
    """The ipvlan config of this invocation."""
    rd = Reader(cmd.conf.data, FIELDS, strict=strict)
    c = IpvlanConf()
    read_common(cmd, rd, c)
    mode = rd.raw("mode")
    if mode is not None and mode != "":  # "" is l2, as in the reference
        if isinstance(mode, str) and mode in MODES:
            c.mode = mode
        else:
            rd.bad("mode", mode, "must be one of " + ", ".join(MODES))
    return c


def chained_master(c: IpvlanConf, prev: "Result | None") -> str:
    """The master when chained and ``master`` is not set: the one named interface of the
    prevResult (the reference's rule); "" when not chained (default-route interface)."""
    if c.master or prev is None:
        return ""
    named = [i for i in prev.interfaces if i.name]
    if len(named) != 1 or len(prev.interfaces) != 1:
        raise invalid_config("master", "", "not set, and the prevResult does not hold a single named interface "
                                           f"to use instead ({len(prev.interfaces)} interfaces)")
    return named[0].name


def plan(c: IpvlanConf) -> "Plan":
    """What cnilib.sublink needs to make, explain and check this config's link."""
    from cnilib.sublink import Plan

    def build(name: str, parent: int, netns_fd: int):
        return link.ipvlan_request(name, parent, c.mode, netns_fd=netns_fd, mtu=c.mtu)

    def explain(errno: int, master: link.Link) -> CNIError | None:
        if errno == 16:  # EBUSY
            return CNIError(ALREADY_ALLOCATED, f"master {master.name} is busy: it has links of another kind "
                                               f"(macvlans cannot share a master with ipvlans)")
        return None

    def verify(lk: link.Link) -> str:
        return "" if lk.ipvlan_mode == c.mode else f"mode is {lk.ipvlan_mode}, the config says {c.mode}"

    who = f"ipvlan network {c.name!r} (mode {c.mode})"
    return Plan("ipvlan", who, build, explain=explain, verify=verify)
