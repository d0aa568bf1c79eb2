"""The bridge plugin's configuration: every key of the reference, same meaning and default.

``load(cmd)`` validates strictly (ADD, CHECK): any bad value is code 7 naming the key and
the value, before anything is created. ``load(cmd, strict=False)`` (DEL, GC, STATUS) keeps
what it can read and falls back to defaults for the rest, so a config the reference would
have accepted (or a broken one) never blocks releasing an attachment.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.errors import CNIError, invalid_config

if False:  # type checking only
    from cnilib.skel import CmdArgs

DEFAULT_BRIDGE = "cni0"
BACKENDS = ("iptables", "nftables")
MIN_MTU = 68  # ETH_MIN_MTU: the smallest MTU a veth or bridge accepts
MAX_MTU = 65535  # a veth's and a bridge's max_mtu
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


class _Reader:
    """Collects values; in strict mode the first bad one raises, else it is skipped."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def bad(self, key: str, value: object, why: str) -> None:
        if self.strict:
            raise invalid_config(key, value, why)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load(cmd: "CmdArgs", strict: bool = True) -> BridgeConf:
    """The bridge config of this invocation (see the module docstring for ``strict``)."""
    from cnilib.skel import valid_ifname

    data = cmd.conf.read(FIELDS)
    rd = _Reader(strict)
    c = BridgeConf()
    c.name = cmd.conf.name or ""

    br = data.get("bridge")
    if br is not None and br != "":
        why = valid_ifname(br) if isinstance(br, str) else "must be a string"
        if why:
            rd.bad("bridge", br, why)
        else:
            c.bridge = br

    for key, (attr, _default) in BOOL_KEYS.items():
        v = data.get(key)
        if v is None:
            continue
        if isinstance(v, bool):
            setattr(c, attr, v)
        else:
            rd.bad(key, v, "must be true or false")
    if c.is_default_gw:
        c.is_gw = True

    backend = data.get("ipMasqBackend")
    if backend is not None:
        if backend in BACKENDS:
            c.ipmasq_backend = backend
        else:
            rd.bad("ipMasqBackend", backend, f"must be one of {', '.join(BACKENDS)}")

    mtu = data.get("mtu")
    if mtu is not None:
        if _is_int(mtu) and (mtu == 0 or MIN_MTU <= mtu <= MAX_MTU):
            c.mtu = mtu
        else:
            rd.bad("mtu", mtu, f"must be 0 (the kernel's default) or between {MIN_MTU} and {MAX_MTU}")

    vlan = data.get("vlan")
    if vlan is not None:
        if _is_int(vlan) and 0 <= vlan <= MAX_VLAN:
            c.vlan = vlan
        else:
            rd.bad("vlan", vlan, f"must be a VLAN ID between 0 (none) and {MAX_VLAN}")
    trunk = data.get("vlanTrunk")
    if trunk is not None:
        c.vlans = _trunk(trunk, rd)

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

    c.dns = _dns(cmd.conf.dns, rd)
    _mac(cmd, c, rd)
    return c


def _trunk(trunk: object, rd: _Reader) -> list[int]:
    """The reference's collectVlanTrunk: ``{id}`` or ``{minID, maxID}`` entries, 1-4094,
    merged into a sorted list without duplicates."""
    if not isinstance(trunk, list):
        rd.bad("vlanTrunk", trunk, "must be a list of {\"id\"} or {\"minID\", \"maxID\"} objects")
        return []
    vids: set[int] = set()
    for i, item in enumerate(trunk):
        key = f"vlanTrunk[{i}]"
        if not isinstance(item, dict):
            rd.bad(key, item, "must be an object with id or minID and maxID")
            continue
        f = TRUNK_ENTRY.read(item)
        lo, hi, one = f.get("minID"), f.get("maxID"), f.get("id")
        if lo is None and hi is None and one is None:
            rd.bad(key, item, "sets none of id, minID, maxID")
            continue
        if (lo is None) != (hi is None):
            missing = "minID" if lo is None else "maxID"
            rd.bad(key, item, f"minID and maxID must be set together ({missing} is missing)")
            continue
        if lo is not None:
            if not (_is_int(lo) and 1 <= lo <= MAX_VLAN):
                rd.bad(f"{key}.minID", lo, f"must be between 1 and {MAX_VLAN}")
                continue
            if not (_is_int(hi) and 1 <= hi <= MAX_VLAN):
                rd.bad(f"{key}.maxID", hi, f"must be between 1 and {MAX_VLAN}")
                continue
            if hi < lo:
                rd.bad(key, item, "minID is greater than maxID")
                continue
            vids.update(range(lo, hi + 1))
        if one is not None:
            if not (_is_int(one) and 1 <= one <= MAX_VLAN):
                rd.bad(f"{key}.id", one, f"must be between 1 and {MAX_VLAN}")
                continue
            vids.add(one)
    return sorted(vids)


def _dns(raw: dict | None, rd: _Reader):
    """The config's ``dns`` when it sets anything (the reference's dnsConfSet: a present
    list, even empty, counts), else None."""
    if not raw:
        return None
    from cnilib.types import DNS, DNS_FIELDS

    f = DNS_FIELDS.read(raw)
    if not any(f.get(k) is not None for k in ("nameservers", "search", "options")) and not f.get("domain"):
        return None

    try:
        return DNS.parse(raw, "dns")
    except CNIError as e:
        rd.bad("dns", raw, e.msg)
        return None


def _mac(cmd: "CmdArgs", c: BridgeConf, rd: _Reader) -> None:
    """The container MAC: CNI_ARGS ``MAC``, then ``args.cni.mac``, then
    ``runtimeConfig.mac``; the later source wins, empty values are ignored."""
    from cnilib import args as _args

    if rd.strict:
        _args.check_known(cmd.args)
    sources = [("CNI_ARGS MAC", cmd.args.get("MAC"))]
    try:
        sources.append(("args.cni.mac", gokeys.get(cmd.conf.cni_args(), "mac")))
    except CNIError:
        if rd.strict:
            raise
    sources.append(("runtimeConfig.mac", cmd.conf.runtime("mac")))
    for where, v in sources:
        if v is None or v == "":
            continue
        mac = parse_mac(v) if isinstance(v, str) else None
        if mac is None:
            rd.bad(where, v, "must be a MAC address like 0a:58:0a:f4:00:05")
            continue
        if int(mac[:2], 16) & 1:
            rd.bad(where, v, "must be a unicast MAC address (the first octet's lowest bit clear)")
            continue
        c.mac, c.mac_source = mac, where


def parse_mac(text: str) -> str | None:
    """A 6-byte MAC in any of Go's net.ParseMAC notations (``aa:bb:..``, ``aa-bb-..``,
    ``aabb.ccdd.eeff``) as lower-case colon form; None if it is not one."""
    hexdigits = "0123456789abcdefABCDEF"
    t = text.strip() if isinstance(text, str) else ""
    if len(t) == 17 and t[2] in ":-":
        sep = t[2]
        parts = t.split(sep)
        if len(parts) != 6 or any(len(p) != 2 or not all(ch in hexdigits for ch in p) for p in parts):
            return None
    elif len(t) == 14 and t[4] == "." and t[9] == ".":
        raw = t.replace(".", "")
        if len(raw) != 12 or not all(ch in hexdigits for ch in raw):
            return None
        parts = [raw[i:i + 2] for i in range(0, 12, 2)]
    else:
        return None
    return ":".join(p.lower() for p in parts)
