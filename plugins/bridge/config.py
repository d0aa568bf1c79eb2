"""The bridge plugin's configuration: every key of the reference, same meaning and default.

``load(cmd)`` validates strictly (ADD, CHECK): any bad value is code 7 naming the key and
the value, before anything is created. ``load(cmd, strict=False)`` (DEL, GC, STATUS) keeps
what it can read and falls back to defaults for the rest, so a config the reference would
have accepted (or a broken one) never blocks releasing an attachment.
"""

from __future__ import annotations

from cnilib import gokeys, parentconf
from cnilib.confread import Reader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

DEFAULT_BRIDGE = "cni0"
MAX_VLAN = 4094

BOOL_KEYS = {
    # key: (attribute, default)
    "isGateway": ("is_gw", False),
    "isDefaultGateway": ("is_default_gw", False),
    "forceAddress": ("force_address", False),
    "ipMasq": ("ipmasq", False),
    "hairpinMode": ("hairpin", False),
    "promiscMode": ("promisc", False),
    # The reference defaults this to true "to maintain existing behavior".
    "preserveDefaultVlan": ("preserve_default_vlan", True),
    "macspoofchk": ("macspoofchk", False),
    "enabledad": ("enable_dad", False),
    "disableContainerInterface": ("disable_container_interface", False),
    "portIsolation": ("port_isolation", False),
}


# The reference bridge's own keys (its NetConf struct), matched as Go matches them.
FIELDS = gokeys.Struct("bridge", "ipMasqBackend", "mtu", "vlan", "vlanTrunk", *BOOL_KEYS)
TRUNK_ENTRY = gokeys.Struct("minID", "maxID", "id")


class BridgeConf:
    """The parsed config. ``vlans`` is the sorted trunk VID list (empty: no trunk)."""

    __slots__ = ("name", "bridge", "is_gw", "is_default_gw", "force_address", "ipmasq", "ipmasq_backend", "mtu",
                 "hairpin", "promisc", "vlan", "vlans", "preserve_default_vlan", "macspoofchk", "enable_dad",
                 "disable_container_interface", "port_isolation", "ipam_type", "dns", "mac", "mac_source")

    def __init__(self) -> None:
        self.name = ""
        self.bridge = DEFAULT_BRIDGE
        for attr, default in BOOL_KEYS.values():
            setattr(self, attr, default)
        self.ipmasq_backend: str | None = None
        self.mtu = 0
        self.vlan = 0
        self.vlans: list[int] = []
        self.ipam_type = ""
        self.dns = None  # cnilib.types.DNS when the config sets one (it replaces IPAM's)
        self.mac = ""
        self.mac_source = ""

    @property
    def layer3(self) -> bool:
        """An IPAM plugin is configured (``"ipam": {}`` means L2 only)."""
        return bool(self.ipam_type)

    @property
    def needs_vlans(self) -> bool:
        """Whether ADD needs bridge VLAN filtering from the kernel."""
        return self.vlan != 0 or bool(self.vlans)

    def vlan_option(self) -> str:
        """The option(s) asking for VLANs, for messages."""
        opts = []
        if self.vlan:
            opts.append(f"vlan {self.vlan}")
        if self.vlans:
            opts.append("vlanTrunk")
        if self.needs_vlans and not self.preserve_default_vlan:
            opts.append("preserveDefaultVlan false")
        return ", ".join(opts)


def load(cmd: "CmdArgs", strict: bool = True) -> BridgeConf:
    """The bridge config of this invocation (see the module docstring for ``strict``)."""
    rd = Reader(cmd.conf.data, FIELDS, strict=strict)
    c = BridgeConf()
    c.name = cmd.conf.name or ""
    c.bridge = rd.ifname("bridge", DEFAULT_BRIDGE)
    for key, (attr, default) in BOOL_KEYS.items():
        setattr(c, attr, rd.bool(key, default))
    if c.is_default_gw:
        c.is_gw = True
    from cnilib import firewall  # the backends' names only: no backend is imported

    c.ipmasq_backend = rd.choice("ipMasqBackend", firewall.NAMES)
    c.mtu = rd.mtu()
    c.vlan = rd.int("vlan", 0, 0, MAX_VLAN, why=f"must be a VLAN ID between 0 (none) and {MAX_VLAN}")
    if rd.has("vlanTrunk"):
        c.vlans = _trunk(rd)

    t = cmd.conf.ipam_type()
    if isinstance(t, str):
        c.ipam_type = t
    elif t is not None:
        rd.bad("ipam.type", t, "must be a string")

    if c.hairpin and c.promisc:
        rd.bad("promiscMode", True, "cannot be set together with hairpinMode")
    if c.disable_container_interface and c.layer3:
        rd.bad("disableContainerInterface", True,
               f"cannot be used with IPAM (ipam.type {c.ipam_type!r}): the interface stays down")

    c.dns = parentconf.read_dns(cmd.conf.dns, rd)
    parentconf.read_mac(cmd, rd, c, key=None)  # type: ignore[arg-type]  # duck-typed: mac, mac_source
    return c


def _trunk(rd: Reader) -> list[int]:
    """The reference's collectVlanTrunk: ``{id}`` or ``{minID, maxID}`` entries, 1-4094,
    merged into a sorted list without duplicates."""
    trunk = rd.raw("vlanTrunk")
    if not isinstance(trunk, list):
        rd.bad("vlanTrunk", trunk, "must be a list of {\"id\"} or {\"minID\", \"maxID\"} objects")
        return []
    vids: set[int] = set()
    vid = dict(lo=1, hi=MAX_VLAN, why=f"must be between 1 and {MAX_VLAN}")
    for i, item in enumerate(trunk):
        e = rd.item(item, i, TRUNK_ENTRY, "vlanTrunk")
        if e is None:
            continue
        if not (e.has("minID") or e.has("maxID") or e.has("id")):
            e.bad("", item, "sets none of id, minID, maxID")
            continue
        if e.has("minID") != e.has("maxID"):
            missing = "maxID" if e.has("minID") else "minID"
            e.bad("", item, f"minID and maxID must be set together ({missing} is missing)")
            continue
        if e.has("minID"):
            lo, hi = e.int("minID", 0, **vid), e.int("maxID", 0, **vid)
            if not (lo and hi):
                continue
            if hi < lo:
                e.bad("", item, "minID is greater than maxID")
                continue
            vids.update(range(lo, hi + 1))
        if e.has("id"):
            one = e.int("id", 0, **vid)
            if one:
                vids.add(one)
    return sorted(vids)


