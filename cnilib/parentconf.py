"""Config keys shared by the plugins whose container link hangs off a parent ("master")
device: macvlan, ipvlan, vlan (``master``, ``mtu``, ``linkInContainer``, ``ipam``,
``dns``), plus the container MAC sources macvlan reads.

Each plugin reads its own keys with a ``cnilib.confread.Reader`` over its own
``gokeys.Struct`` (which lists these keys too) and calls ``read_common`` for the shared
ones, so every plugin matches keys as Go does and names the key in a code-7 error.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader, check_mac
from cnilib.errors import CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import DNS

COMMON_KEYS = ("master", "mtu", "linkInContainer")


class ParentLinkConf:
    """What the shared flow (``cnilib.sublink``) needs of a plugin's config."""

    __slots__ = ("name", "plugin", "master", "mtu", "link_in_container", "ipam_type", "dns", "mac", "mac_source")

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.name = ""
        self.master = ""  # "" = the default-route interface (or prevResult's, ipvlan)
        self.mtu = 0  # 0 = inherit the master's
        self.link_in_container = False
        self.ipam_type = ""
        self.dns: DNS | None = None  # set: replaces the IPAM plugin's dns in the result
        self.mac = ""
        self.mac_source = ""

    @property
    def layer3(self) -> bool:
        """An IPAM plugin is configured (``"ipam": {}`` means none)."""
        return bool(self.ipam_type)


def read_common(cmd: "CmdArgs", rd: Reader, c: ParentLinkConf) -> None:
    """Fill the shared keys of ``c`` from ``rd`` (a Reader over the plugin's Struct)."""
    c.name = cmd.conf.name or ""
    c.master = rd.ifname("master", "")
    c.mtu = rd.mtu()
    c.link_in_container = rd.bool("linkInContainer", False)
    t = cmd.conf.ipam_type()
    if isinstance(t, str):
        c.ipam_type = t
    elif t is not None:
        rd.bad("ipam.type", t, "must be a string")
    c.dns = read_dns(cmd.conf.dns, rd)


def read_dns(raw: dict | None, rd: Reader) -> "DNS | None":
    """The config's ``dns`` when it sets anything (a present list, even empty, counts, as
    the reference's dnsConfSet), else None: then the IPAM plugin's ``dns`` is kept."""
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


def read_mac(cmd: "CmdArgs", rd: Reader, c: ParentLinkConf, key: str | None = "mac") -> None:
    """The container MAC, later sources winning: the config's ``key`` (none with ``None``:
    bridge has no such key), CNI_ARGS ``MAC``, ``args.cni.mac``, ``runtimeConfig.mac``
    (capability ``mac``); empty values are ignored. Sets ``c.mac`` and ``c.mac_source`` (any
    config object with those attributes). In strict mode unknown CNI_ARGS keys are code 2
    (cnilib.args)."""
    from cnilib import args as _args

    if rd.strict:
        _args.check_known(cmd.args)
    sources: list[tuple[str, object]] = [(key, rd.raw(key))] if key else []
    sources.append(("CNI_ARGS MAC", cmd.args.get("MAC")))
    try:
        sources.append(("args.cni.mac", gokeys.get(cmd.conf.cni_args(), "mac")))
    except CNIError:
        if rd.strict:
            raise
    sources.append(("runtimeConfig.mac", cmd.conf.runtime("mac")))
    for where, v in sources:
        if v is None or v == "":
            continue
        mac, why = check_mac(v)
        if why:
            rd.bad(where, v, why)
            continue
        c.mac, c.mac_source = mac, where
