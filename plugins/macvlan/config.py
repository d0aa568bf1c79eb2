"""The macvlan plugin's configuration: every key of the reference, same meaning and default.

| key | default | |
|---|---|---|
| ``master`` | the default-route interface | the parent, in the host (or, with ``linkInContainer``, the container) |
| ``mode`` | ``bridge`` | ``bridge``, ``private``, ``vepa``, ``passthru`` |
| ``mtu`` | 0 (inherit) | at most the master's MTU (checked at ADD) |
| ``mac`` | none | the container MAC; CNI_ARGS ``MAC``, ``args.cni.mac``, ``runtimeConfig.mac`` win over it |
| ``linkInContainer`` | false | the master is in the container's namespace |
| ``bcqueuelen`` | 0 (kernel default) | broadcast/multicast queue length (uint32) |
| ``ipam``, ``dns`` | | ``{}`` or no ``type``: L2 only |

``load(cmd)`` is strict (ADD, CHECK, STATUS: code 7 naming the key and value);
``load(cmd, strict=False)`` (DEL, GC) keeps what it can read.
"""

from __future__ import annotations

from cnilib import gokeys, link
from cnilib.confread import Reader
from cnilib.errors import ALREADY_ALLOCATED, CNIError
from cnilib.parentconf import COMMON_KEYS, ParentLinkConf, read_common, read_mac

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.sublink import Plan

# The reference macvlan's NetConf keys, matched as Go matches them.
FIELDS = gokeys.Struct(*COMMON_KEYS, "mode", "mac", "bcqueuelen")
MODES = ("bridge", "private", "vepa", "passthru")
MAX_U32 = 0xFFFFFFFF


class MacvlanConf(ParentLinkConf):
    __slots__ = ("mode", "bc_queue_len")

    def __init__(self) -> None:
        super().__init__("macvlan")
        self.mode = "bridge"
        self.bc_queue_len = 0


def load(cmd: "CmdArgs", strict: bool = True) -> MacvlanConf:
    """The macvlan config of this invocation."""
    rd = Reader(cmd.conf.data, FIELDS, strict=strict)
    c = MacvlanConf()
    read_common(cmd, rd, c)
    mode = rd.raw("mode")
    if mode is not None and mode != "":  # "" is bridge, as in the reference
        if isinstance(mode, str) and mode in MODES:
            c.mode = mode
        else:
            rd.bad("mode", mode, "must be one of " + ", ".join(MODES) + " (source mode is not supported)")
    c.bc_queue_len = rd.int("bcqueuelen", 0, 0, MAX_U32)
    read_mac(cmd, rd, c)
    return c


def plan(c: MacvlanConf) -> "Plan":
    """What cnilib.sublink needs to make, explain and check this config's link."""
    from cnilib.sublink import Plan

    def build(name: str, parent: int, netns_fd: int):
        return link.macvlan_request(name, parent, c.mode, netns_fd=netns_fd, mtu=c.mtu, mac=c.mac,
                                    bc_queue_len=c.bc_queue_len)

    def explain(errno: int, master: link.Link) -> CNIError | None:
        if errno == 22 and not c.mtu and not c.mac:  # EINVAL with nothing else to blame
            if c.mode == "passthru":
                return CNIError(ALREADY_ALLOCATED, f"macvlan mode passthru needs master {master.name} for one "
                                                   f"macvlan only, and it already has one")
            return CNIError(ALREADY_ALLOCATED, f"master {master.name} refused a new macvlan: it already has "
                                               f"a macvlan in passthru mode (or cannot take macvlans)")
        if errno == 16:  # EBUSY
            return CNIError(ALREADY_ALLOCATED, f"master {master.name} is busy: it has links of another kind "
                                               f"(an ipvlan cannot share a master with macvlans)")
        return None

    def verify(lk: link.Link) -> str:
        if lk.macvlan_mode != c.mode:
            return f"mode is {lk.macvlan_mode}, the config says {c.mode}"
        if c.bc_queue_len and lk.bc_queue_len is not None and lk.bc_queue_len != c.bc_queue_len:
            return f"bcqueuelen is {lk.bc_queue_len}, the config says {c.bc_queue_len}"
        return ""

    who = f"macvlan network {c.name!r} (mode {c.mode})"
    return Plan("macvlan", who, build, explain=explain, verify=verify)
