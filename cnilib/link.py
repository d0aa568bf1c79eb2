"""Links, addresses and routes over rtnetlink: thin wrappers on pyroute2's messages.

Every function takes a ``cnilib.nl.Socket`` (which decides the network namespace) and
raises ``nl.NetlinkError`` (an OSError with the kernel's errno and extended-ack text) when
the kernel refuses. Requests are built by small ``*_request`` functions that return the
message without sending it, so tests can check exactly what is asked of the kernel.
"""

from __future__ import annotations

from cnilib import nl
from cnilib.ip import IP, Net, parse_ip
from cnilib.rawaddr import Addr  # one address type for both readers (rawaddr: no pyroute2)
from cnilib.rawlink import delete  # noqa: F401 - one DELLINK for both (packed by hand)

AF_UNSPEC = 0
AF_INET = 2
AF_BRIDGE = 7
AF_INET6 = 10
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_LOWER_UP = 0x10000
ENODEV = 19
EEXIST = 17
ENOENT = 2
EADDRNOTAVAIL = 99
ESRCH = 3

# rtnetlink bridge VLAN (linux/if_bridge.h)
BRIDGE_FLAGS_MASTER = 1
BRIDGE_FLAGS_SELF = 2
BRIDGE_VLAN_INFO_MASTER = 0x1
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
RTEXT_FILTER_BRVLAN = 0x2

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
OPER_UP = 6
OPER_STATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


class Link:
    """What a plugin reads of a link (from one RTM_NEWLINK answer)."""

    __slots__ = ("index", "name", "kind", "mac", "mtu", "flags", "master", "peer_index", "peer_netnsid",
                 "operstate", "alias", "slave_kind", "hairpin", "isolated", "info")

    def __init__(self, m) -> None:
        self.index: int = m["index"]
        self.flags: int = m["flags"]
        self.name: str = m.get_attr("IFLA_IFNAME")
        self.mac: str = m.get_attr("IFLA_ADDRESS") or ""
        self.mtu: int = m.get_attr("IFLA_MTU") or 0
        self.master: int = m.get_attr("IFLA_MASTER") or 0
        self.peer_index: int = m.get_attr("IFLA_LINK") or 0
        self.peer_netnsid = m.get_attr("IFLA_LINK_NETNSID")
        state = m.get_attr("IFLA_OPERSTATE")
        self.operstate: str = state.lower() if isinstance(state, str) else OPER_STATES[state or 0]
        self.alias: str = m.get_attr("IFLA_IFALIAS") or ""
        self.kind = self.slave_kind = ""
        self.hairpin = self.isolated = None
        self.info: dict = {}
        li = m.get_attr("IFLA_LINKINFO")
        if li is not None:
            self.kind = li.get_attr("IFLA_INFO_KIND") or ""
            self.slave_kind = li.get_attr("IFLA_INFO_SLAVE_KIND") or ""
            data = li.get_attr("IFLA_INFO_DATA")
            if data is not None and hasattr(data, "get_attr"):
                self.info = {k: v for k, v in data["attrs"]}
            sdata = li.get_attr("IFLA_INFO_SLAVE_DATA")
            if sdata is not None and self.slave_kind == "bridge" and hasattr(sdata, "get_attr"):
                mode = sdata.get_attr("IFLA_BRPORT_MODE")
                iso = sdata.get_attr("IFLA_BRPORT_ISOLATED")
                self.hairpin = None if mode is None else bool(mode)
                self.isolated = None if iso is None else bool(iso)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    # What the kernel reports in IFLA_INFO_DATA for links with a parent: read back by the
    # interface plugins' CHECK (kind-specific; None when the link is of another kind).
    @property
    def macvlan_mode(self) -> str | None:
        """``bridge``/``private``/``vepa``/``passthru``/``source`` of a macvlan, else None."""
        return _mode_name(self.info.get("IFLA_MACVLAN_MODE"), MACVLAN_MODES) if self.kind == "macvlan" else None

    @property
    def ipvlan_mode(self) -> str | None:
        """``l2``/``l3``/``l3s`` of an ipvlan, else None."""
        return _mode_name(self.info.get("IFLA_IPVLAN_MODE"), IPVLAN_MODES) if self.kind == "ipvlan" else None

    @property
    def vlan_id(self) -> int | None:
        """The 802.1Q VLAN ID of a vlan link, else None."""
        v = self.info.get("IFLA_VLAN_ID") if self.kind == "vlan" else None
        return v if isinstance(v, int) else None

    @property
    def bc_queue_len(self) -> int | None:
        """A macvlan's broadcast queue length (kernel >= 5.11), else None."""
        v = self.info.get("IFLA_MACVLAN_BC_QUEUE_LEN") if self.kind == "macvlan" else None
        return v if isinstance(v, int) else None

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    def __repr__(self) -> str:
        return f"Link({self.name!r}, index={self.index}, kind={self.kind!r})"


def _mode_name(value: object, modes: dict[str, int]) -> str | None:
    """A mode as its name: pyroute2 decodes some modes to names, others to numbers."""
    if isinstance(value, str):
        return value.lower()
    for name, number in modes.items():
        if number == value:
            return name
    return None if value is None else str(value)


def _ifinfo(index: int = 0, family: int = AF_UNSPEC, attrs: list | None = None, flags: int = 0, change: int = 0):
    return nl.msg("ifinfmsg", {"family": family, "index": index, "flags": flags, "change": change}, attrs)


# -- reading links -----------------------------------------------------------------------

def get(sock: nl.Socket, name: str) -> Link | None:
    """The link called ``name``, or None."""
    try:
        m = sock.get(_ifinfo(attrs=[("IFLA_IFNAME", name)]), nl.RTM_GETLINK, "ifinfmsg")
    except nl.NetlinkError as e:
        if e.errno in (ENODEV, ENOENT):
            return None
        raise
    return Link(m) if m is not None else None


def get_by_index(sock: nl.Socket, index: int) -> Link | None:
    """The link with ifindex ``index``, or None."""
    try:
        m = sock.get(_ifinfo(index), nl.RTM_GETLINK, "ifinfmsg")
    except nl.NetlinkError as e:
        if e.errno in (ENODEV, ENOENT):
            return None
        raise
    return Link(m) if m is not None else None


def list_request(master: int = 0, kind: str = ""):
    """A link dump filtered in the kernel by master and/or kind."""
    attrs: list = []
    if master:
        attrs.append(("IFLA_MASTER", master))
    if kind:
        attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]}))
    return _ifinfo(attrs=attrs)


def list_links(sock: nl.Socket, master: int = 0, kind: str = "") -> list[Link]:
    """Every link (ports of ``master`` / links of ``kind`` only, when given)."""
    return [Link(m) for m in sock.dump(list_request(master, kind), nl.RTM_GETLINK, "ifinfmsg")]


def find_by_alias(sock: nl.Socket, alias: str, master: int = 0, kind: str = "") -> list[tuple[int, str]]:
    """(index, name) of links whose IFLA_IFALIAS is ``alias``, scanning the dump's raw
    bytes (a host with thousands of veths must not cost thousands of decodes)."""
    want = alias.encode()
    out = []
    for raw in sock.dump(list_request(master, kind), nl.RTM_GETLINK, "ifinfmsg", raw=True):
        name = b""
        found = False
        for atype, payload in nl.raw_attrs(raw, 32):  # nlmsghdr (16) + ifinfomsg (16)
            if atype == 3:  # IFLA_IFNAME
                name = bytes(payload).rstrip(b"\0")
            elif atype == 20 and bytes(payload).rstrip(b"\0") == want:  # IFLA_IFALIAS
                found = True
        if found:
            out.append((int.from_bytes(raw[20:24], "little", signed=True), name.decode()))
    return out


# -- creating and changing links ------------------------------------------------------

def bridge_request(name: str, mtu: int = 0, vlan_filtering: bool = False):
    """RTM_NEWLINK for a bridge (``mtu`` 0: the kernel's default; txqueuelen untouched)."""
    attrs: list = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    info: list = [("IFLA_INFO_KIND", "bridge")]
    if vlan_filtering:
        info.append(("IFLA_INFO_DATA", {"attrs": [("IFLA_BR_VLAN_FILTERING", 1)]}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    return _ifinfo(attrs=attrs)


def create_bridge(sock: nl.Socket, name: str, mtu: int = 0, vlan_filtering: bool = False) -> bool:
    """Create bridge ``name``; False if a link of that name already exists."""
    return _create(sock, bridge_request(name, mtu, vlan_filtering), nl.RTM_NEWLINK)


def _create(sock: nl.Socket, m, msg_type: int) -> bool:
    """Send a create-exclusive request; False if the object already exists."""
    try:
        sock.request(m, msg_type, nl.NLM_F_CREATE | nl.NLM_F_EXCL)
    except nl.NetlinkError as e:
        if e.errno == EEXIST:
            return False
        raise
    return True


def bridge_has_vlan_support(br: Link) -> bool:
    """Whether the kernel that reported bridge ``br`` was built with bridge VLAN filtering
    (CONFIG_BRIDGE_VLAN_FILTERING): only then does it report the default PVID."""
    return "IFLA_BR_VLAN_DEFAULT_PVID" in br.info or "IFLA_BR_VLAN_PROTOCOL" in br.info


def veth_request(name: str, peer: str, peer_netns_fd: int, mtu: int = 0, peer_mac: str = "",
                 master: int = 0, up: bool = False):
    """RTM_NEWLINK for a veth pair: ``name`` here (on ``master``, up if asked), ``peer``
    created directly in the namespace open at ``peer_netns_fd`` (left down)."""
    peer_attrs: list = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]
    if mtu:
        peer_attrs.append(("IFLA_MTU", mtu))
    if peer_mac:
        peer_attrs.append(("IFLA_ADDRESS", peer_mac))
    attrs: list = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if master:
        attrs.append(("IFLA_MASTER", master))
    attrs.append(("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_KIND", "veth"),
        ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs, "family": 0, "index": 0,
                                                          "flags": 0, "change": 0})]}),
    ]}))
    return _ifinfo(attrs=attrs, flags=IFF_UP if up else 0, change=IFF_UP if up else 0)


def create_veth(sock: nl.Socket, name: str, peer: str, peer_netns_fd: int, mtu: int = 0, peer_mac: str = "",
                master: int = 0, up: bool = False) -> None:
    """Create a veth pair (see ``veth_request``); NetlinkError EEXIST if a name is taken."""
    sock.request(veth_request(name, peer, peer_netns_fd, mtu, peer_mac, master, up),
                 nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL)


# -- links with a parent (macvlan, ipvlan, vlan) and dummies ------------------------------

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


def _new_link_request(kind: str, name: str, *, parent: int = 0, netns_fd: int = -1, mtu: int = 0,
                      mac: str = "", data: list | None = None):
    """RTM_NEWLINK for a link of ``kind`` called ``name``: on ``parent`` (IFLA_LINK, an
    ifindex of the namespace the request is sent in) and, with ``netns_fd``, created
    directly in that namespace (IFLA_NET_NS_FD), so it never appears in the host under a
    name that could clash; left down."""
    attrs: list = [("IFLA_IFNAME", name)]
    if parent:
        attrs.append(("IFLA_LINK", parent))
    if netns_fd >= 0:
        attrs.append(("IFLA_NET_NS_FD", netns_fd))
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    info: list = [("IFLA_INFO_KIND", kind)]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    return _ifinfo(attrs=attrs)


def macvlan_request(name: str, parent: int, mode: str = "bridge", *, netns_fd: int = -1, mtu: int = 0,
                    mac: str = "", bc_queue_len: int = 0):
    """A macvlan on ``parent`` in ``mode`` (MACVLAN_MODES); ``bc_queue_len`` 0 leaves the
    kernel's broadcast queue length."""
    data: list = [("IFLA_MACVLAN_MODE", MACVLAN_MODES[mode])]
    if bc_queue_len:  # known to pyroute2 through cnilib.nl's map extension
        data.append(("IFLA_MACVLAN_BC_QUEUE_LEN", bc_queue_len))
    return _new_link_request("macvlan", name, parent=parent, netns_fd=netns_fd, mtu=mtu, mac=mac, data=data)


def ipvlan_request(name: str, parent: int, mode: str = "l2", *, netns_fd: int = -1, mtu: int = 0):
    """An ipvlan on ``parent`` in ``mode`` (IPVLAN_MODES)."""
    return _new_link_request("ipvlan", name, parent=parent, netns_fd=netns_fd, mtu=mtu,
                             data=[("IFLA_IPVLAN_MODE", IPVLAN_MODES[mode])])


def vlan_link_request(name: str, parent: int, vid: int, *, netns_fd: int = -1, mtu: int = 0):
    """An 802.1Q VLAN link with ID ``vid`` (0-4094) on ``parent``."""
    if not 0 <= vid <= 4094:
        raise ValueError(f"VLAN ID {vid} out of range 0-4094")
    return _new_link_request("vlan", name, parent=parent, netns_fd=netns_fd, mtu=mtu,
                             data=[("IFLA_VLAN_ID", vid)])


def dummy_request(name: str, *, netns_fd: int = -1, mtu: int = 0, mac: str = ""):
    """A dummy link."""
    return _new_link_request("dummy", name, netns_fd=netns_fd, mtu=mtu, mac=mac)


def create(sock: nl.Socket, request) -> None:
    """Send a link-creating request (the ``*_request`` builders) create-exclusive:
    NetlinkError EEXIST when the name is taken, EOPNOTSUPP/ENOTSUPP when the kernel has no
    such kind (a plugin turns that into a clear error naming the missing feature)."""
    sock.request(request, nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL)


def set_link(sock: nl.Socket, index: int, *, up: bool | None = None, promisc: bool | None = None,
             mac: str = "", mtu: int = 0, alias: str | None = None, master: int | None = None) -> None:
    """Change attributes of link ``index`` in one request."""
    sock.request(set_link_request(index, up=up, promisc=promisc, mac=mac, mtu=mtu, alias=alias, master=master),
                 nl.RTM_NEWLINK)


def set_link_request(index: int, *, up: bool | None = None, promisc: bool | None = None, mac: str = "",
                     mtu: int = 0, alias: str | None = None, master: int | None = None):
    flags = change = 0
    if up is not None:
        change |= IFF_UP
        flags |= IFF_UP if up else 0
    if promisc is not None:
        change |= IFF_PROMISC
        flags |= IFF_PROMISC if promisc else 0
    attrs: list = []
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if alias is not None:
        attrs.append(("IFLA_IFALIAS", alias))
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    return _ifinfo(index, attrs=attrs, flags=flags, change=change)


def rename_request(index: int, name: str, alias: str | None = None):
    """RTM_NEWLINK renaming link ``index`` to ``name`` (the link must be down), with its
    alias set in the same request when given."""
    attrs: list = [("IFLA_IFNAME", name)]
    if alias is not None:
        attrs.append(("IFLA_IFALIAS", alias))
    return _ifinfo(index, attrs=attrs)


def rename(sock: nl.Socket, index: int, name: str, alias: str | None = None) -> None:
    """Rename link ``index`` (NetlinkError EEXIST when ``name`` is taken)."""
    sock.request(rename_request(index, name, alias), nl.RTM_NEWLINK)


def move_request(index: int, netns_fd: int, name: str = ""):
    """RTM_NEWLINK moving link ``index`` into the namespace open at ``netns_fd`` (renamed
    to ``name`` on the way, when given)."""
    attrs: list = [("IFLA_NET_NS_FD", netns_fd)]
    if name:
        attrs.append(("IFLA_IFNAME", name))
    return _ifinfo(index, attrs=attrs)


def move_to_netns(sock: nl.Socket, index: int, netns_fd: int, name: str = "") -> None:
    """Move link ``index`` into another network namespace (see ``move_request``)."""
    sock.request(move_request(index, netns_fd, name), nl.RTM_NEWLINK)


def bridge_port_request(index: int, *, hairpin: bool | None = None, isolated: bool | None = None,
                        alias: str | None = None, up: bool | None = None):
    """RTM_NEWLINK setting bridge-port flags of link ``index`` through its master
    (IFLA_INFO_SLAVE_DATA: what ``ip link set DEV type bridge_slave hairpin on`` sends),
    plus, in the same request, its alias and up state."""
    port: list = []
    if hairpin is not None:
        port.append(("IFLA_BRPORT_MODE", 1 if hairpin else 0))
    if isolated is not None:
        port.append(("IFLA_BRPORT_ISOLATED", 1 if isolated else 0))
    m = set_link_request(index, up=up, alias=alias)
    if port:
        m["attrs"].append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                                                         ("IFLA_INFO_SLAVE_DATA", {"attrs": port})]}))
    return m


def set_bridge_port(sock: nl.Socket, index: int, *, hairpin: bool | None = None, isolated: bool | None = None,
                    alias: str | None = None, up: bool | None = None) -> None:
    sock.request(bridge_port_request(index, hairpin=hairpin, isolated=isolated, alias=alias, up=up),
                 nl.RTM_NEWLINK)


# -- bridge VLANs (RTM_SETLINK/RTM_DELLINK with family AF_BRIDGE) ------------------------

def vlan_request(index: int, vid: int, pvid: bool = False, untagged: bool = False):
    """The message adding (RTM_SETLINK) or removing (RTM_DELLINK) VLAN ``vid`` on bridge
    port ``index``, as vishvananda/netlink's BridgeVlanAdd(link, vid, pvid, untagged,
    self=false, master=true) builds it: IFLA_AF_SPEC { IFLA_BRIDGE_FLAGS = MASTER,
    IFLA_BRIDGE_VLAN_INFO = {flags, vid} }."""
    if not 1 <= vid <= 4094:
        raise ValueError(f"VLAN ID {vid} out of range 1-4094")
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    spec = {"attrs": [("IFLA_BRIDGE_FLAGS", BRIDGE_FLAGS_MASTER),
                      ("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid})]}
    return _ifinfo(index, family=AF_BRIDGE, attrs=[("IFLA_AF_SPEC", spec)])


def vlan_add(sock: nl.Socket, index: int, vid: int, pvid: bool = False, untagged: bool = False) -> None:
    sock.request(vlan_request(index, vid, pvid, untagged), nl.RTM_SETLINK)


def vlan_del(sock: nl.Socket, index: int, vid: int) -> None:
    sock.request(vlan_request(index, vid), nl.RTM_DELLINK)


def vlan_dump_request():
    """The dump of every bridge port's VLANs (family AF_BRIDGE, RTEXT_FILTER_BRVLAN)."""
    return _ifinfo(family=AF_BRIDGE, attrs=[("IFLA_EXT_MASK", RTEXT_FILTER_BRVLAN)])


def vlans_from_dump(msgs: list) -> dict[int, list[tuple[int, int]]]:
    """{port index: [(vid, flags), ...]} from the answers to ``vlan_dump_request``."""
    out: dict[int, list[tuple[int, int]]] = {}
    for m in msgs:
        spec = m.get_attr("IFLA_AF_SPEC")
        if spec is None:
            continue
        for name, value in spec["attrs"]:
            if name == "IFLA_BRIDGE_VLAN_INFO":
                out.setdefault(m["index"], []).append((value["vid"], value["flags"]))
    return out


def vlans(sock: nl.Socket, index: int) -> list[tuple[int, int]]:
    """The VLANs (vid, flags) configured on bridge port ``index``."""
    msgs = sock.dump(vlan_dump_request(), nl.RTM_GETLINK, "ifinfmsg")
    return vlans_from_dump(msgs).get(index, [])


# -- addresses --------------------------------------------------------------------------

def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


def addr_request(index: int, net: Net, flags: int = 0):
    """RTM_NEWADDR/RTM_DELADDR for ``net`` (address with prefix) on link ``index``; IPv4
    gets the broadcast address the kernel tools compute (not for /31 and /32)."""
    fam = _family(net.version)
    ip = str(net.ip)
    attrs: list = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    if net.version == 4 and net.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(net.last)))
    if flags > 0xFF:
        attrs.append(("IFA_FLAGS", flags))
    return nl.msg("ifaddrmsg", {"family": fam, "prefixlen": net.prefixlen, "flags": flags & 0xFF, "scope": 0,
                                "index": index}, attrs)


def addr_add(sock: nl.Socket, index: int, net: Net, flags: int = 0) -> bool:
    """Add an address; False if it was already there."""
    return _create(sock, addr_request(index, net, flags), nl.RTM_NEWADDR)


def addr_del(sock: nl.Socket, index: int, net: Net) -> None:
    sock.request(addr_request(index, net), nl.RTM_DELADDR)




def addrs(sock: nl.Socket, index: int, version: int | None = None) -> list[Addr]:
    """The addresses of link ``index`` (of one IP version when given)."""
    fam = 0 if version is None else _family(version)
    out = []
    for m in sock.dump(nl.msg("ifaddrmsg", {"family": fam, "index": index}), nl.RTM_GETADDR, "ifaddrmsg"):
        if m["index"] != index:
            continue
        text = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        if not text:
            continue
        flags = m.get_attr("IFA_FLAGS")
        out.append(Addr(Net(parse_ip(text), m["prefixlen"]), flags if flags is not None else m["flags"],
                        m["scope"]))
    return out


# -- routes -----------------------------------------------------------------------------

def route_request(index: int, dst: Net, gw: IP | None = None, *, mtu: int = 0, advmss: int = 0,
                  priority: int = 0, table: int | None = None, scope: int | None = None):
    """RTM_NEWROUTE (as vishvananda/netlink's RouteAddEcmp builds it: proto boot, type
    unicast, main table unless ``table``) via ``gw`` out of link ``index``."""
    fam = _family(dst.version)
    masked = dst.masked()
    attrs: list = [("RTA_DST", str(masked.ip)), ("RTA_OIF", index)]
    if gw is not None:
        attrs.append(("RTA_GATEWAY", str(gw)))
    if priority:
        attrs.append(("RTA_PRIORITY", priority))
    t = RT_TABLE_MAIN if table is None else table
    if t > 255:
        attrs.append(("RTA_TABLE", t))
    metrics = []
    if mtu:
        metrics.append(("RTAX_MTU", mtu))
    if advmss:
        metrics.append(("RTAX_ADVMSS", advmss))
    if metrics:
        attrs.append(("RTA_METRICS", {"attrs": metrics}))
    return nl.msg("rtmsg", {"family": fam, "dst_len": masked.prefixlen, "src_len": 0, "tos": 0,
                            "table": t if t <= 255 else 252, "proto": RTPROT_BOOT,
                            "scope": RT_SCOPE_UNIVERSE if scope is None else scope, "type": RTN_UNICAST,
                            "flags": 0}, attrs)


def route_add(sock: nl.Socket, index: int, dst: Net, gw: IP | None = None, **kw) -> None:
    sock.request(route_request(index, dst, gw, **kw), nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_APPEND)


class Route:
    """A route read back: destination, gateway, output link, table."""

    __slots__ = ("dst", "gw", "oif", "table", "priority")

    def __init__(self, dst: Net, gw: IP | None, oif: int, table: int, priority: int) -> None:
        self.dst = dst
        self.gw = gw
        self.oif = oif
        self.table = table
        self.priority = priority

    def __repr__(self) -> str:
        return f"Route({self.dst} via {self.gw} oif {self.oif} table {self.table})"


def routes(sock: nl.Socket, version: int) -> list[Route]:
    """The unicast routes of one IP version, every table."""
    fam = _family(version)
    zero = "0.0.0.0" if version == 4 else "::"
    out = []
    for m in sock.dump(nl.msg("rtmsg", {"family": fam}), nl.RTM_GETROUTE, "rtmsg"):
        if m["type"] != RTN_UNICAST:
            continue
        dst = m.get_attr("RTA_DST") or zero
        gw = m.get_attr("RTA_GATEWAY")
        table = m.get_attr("RTA_TABLE") or m["table"]
        out.append(Route(Net(parse_ip(dst), m["dst_len"]), parse_ip(gw) if gw else None,
                         m.get_attr("RTA_OIF") or 0, table, m.get_attr("RTA_PRIORITY") or 0))
    return out
