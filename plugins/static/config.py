"""static's configuration: the ``ipam`` object (``addresses``, ``routes``, ``dns``).

The reference's keys, read as Go reads them (``cnilib.gokeys``: exact or case-folded, the
last key wins), each value checked before anything is answered (code 7 naming the key path,
such as ``ipam.addresses[1].gateway``, and the value):

* ``addresses``: ``[{address, gateway}]``; ``address`` in CIDR notation with its host bits
  kept (``10.10.0.5/24`` is the address 10.10.0.5 on a /24); ``gateway`` optional, of the
  address's family and inside the subnet of one of the config's addresses (an IPv6
  link-local gateway, ``fe80::/10``, is on every link and always accepted); no address twice.
* ``routes``: ``[{dst, gw, mtu, advmss, priority, table, scope}]`` (all 1.1.0 fields),
  copied into the result.
* ``dns``: ``{nameservers, domain, search, options}``, copied into the result; nameservers
  must be IP addresses (SPEC "DNS").

Beyond the reference's Go decoding: its ``Address`` struct has two more, internal fields
without JSON tags (``Address net.IPNet``, ``Version string``), so the reference reads an
entry's key ``"Address"`` into the IPNet and fails ("cannot unmarshal string into Go struct
field Address.ipam.addresses.Address of type net.IPNet"), and ``"version": 4`` fails too.
Here an entry has the two documented keys only: ``Address`` and ``ADDRESS`` are ``address``,
and ``version`` is ignored. Which addresses an attachment gets (CNI_ARGS, ``args.cni.ips``,
``runtimeConfig.ips``) is ``resolve``'s job; nothing here reads the environment.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader
from cnilib.errors import INVALID_CONFIG, INVALID_ENVIRONMENT, CNIError, invalid_config
from cnilib.ip import IP, Net, parse_cidr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.conf import NetConf
    from cnilib.types import DNS, Route

# The reference's IPAMConfig (its tag-less ``Name`` is overwritten by the network's name,
# so it is not read) and the documented fields of its Address.
IPAM = gokeys.Struct("type", "routes", "addresses", "dns")
ADDRESS = gokeys.Struct("address", "gateway")
DNS_KEYS = gokeys.Struct("nameservers", "domain", "search", "options")

_LINK_LOCAL_V6 = Net(IP(6, 0xFE80 << 112), 10)


class Entry:
    """One address of the attachment: ``net`` (address/prefix, host bits kept), its
    ``gateway`` (or None), and where each came from, for messages (``where``: a key path
    such as ``ipam.addresses[0].address`` or ``CNI_ARGS IP[1]``)."""

    __slots__ = ("gateway", "gw_where", "net", "where")

    def __init__(self, net: Net, gateway: IP | None, where: str, gw_where: str = "") -> None:
        self.net = net
        self.gateway = gateway
        self.where = where
        self.gw_where = gw_where

    def __repr__(self) -> str:
        return f"Entry({self.net}, gw={self.gateway}, {self.where!r})"


class StaticConfig:
    """The ``ipam`` object, checked: config addresses, routes, dns."""

    __slots__ = ("addresses", "dns", "routes")

    def __init__(self, addresses: list[Entry], routes: list, dns: DNS) -> None:
        self.addresses = addresses
        self.routes = routes
        self.dns = dns


def fail(where: str, value: object, why: str) -> CNIError:
    """The error for a bad value at ``where``: code 4 for a CNI_ARGS value (the
    environment, as host-local and the skel treat CNI_ARGS), code 7 for the config's."""
    if where.startswith("CNI_ARGS"):
        return CNIError(INVALID_ENVIRONMENT, f"invalid {where} {value!r}: {why}")
    return invalid_config(where, value, why)


def load(conf: NetConf) -> StaticConfig:
    """Read and check ``ipam`` (ADD, CHECK, STATUS); code 7 for any bad value."""
    if conf.ipam is None:
        raise invalid_config("ipam", None, "static needs an \"ipam\" object (IPAM config missing 'ipam' key)")
    f = Reader(conf.ipam, IPAM, "ipam")
    from cnilib.types import DNS

    addresses = _addresses(f)
    routes = _routes(f)
    d = f.obj("dns", DNS_KEYS)
    dns = DNS() if d is None else _dns(d)
    return StaticConfig(addresses, routes, dns)


# -- addresses ---------------------------------------------------------------------------

def parse_address(text: object, where: str) -> Net:
    """``text`` as an address in CIDR notation (host bits kept); ``fail`` naming ``where``."""
    if not isinstance(text, str):
        raise fail(where, text, "must be a string: an address in CIDR notation, e.g. 10.10.0.5/24")
    try:
        return parse_cidr(text)
    except ValueError:
        raise fail(where, text, "not an address in CIDR notation (address/prefix, e.g. 10.10.0.5/24)") from None


def _addresses(f: Reader) -> list[Entry]:
    out: list[Entry] = []
    for i, item in enumerate(f.list("addresses")):
        e = f.item(item, i, ADDRESS, "addresses")
        where = e.path("address")
        text = e.raw("address")
        if text is None or text == "":
            raise invalid_config(where, None if text is None else text,
                                 "every entry of ipam.addresses needs an address in CIDR notation")
        net = parse_address(text, where)
        gw = e.ip("gateway")
        out.append(Entry(net, gw, where, e.path("gateway") if gw is not None else ""))
    no_duplicates(out)
    index = SubnetIndex([x.net for x in out])
    for x in out:
        check_gateway(x, index)
    return out


def no_duplicates(entries: list[Entry]) -> None:
    """``fail`` for an address listed twice (the interface plugin could not add it twice)."""
    seen: dict[IP, Entry] = {}
    for e in entries:
        first = seen.get(e.net.ip)
        if first is not None:
            raise fail(e.where, str(e.net), f"{e.net.ip} is already given by {first.where} ({first.net})")
        seen[e.net.ip] = e


def check_gateway(e: Entry, index: SubnetIndex) -> None:
    """``fail`` unless ``e``'s gateway (if any) is of its family and inside the subnet of
    one of the attachment's addresses (``index``), or an IPv6 link-local address: a
    gateway elsewhere is not reachable on the link, and the routes through it would fail."""
    gw = e.gateway
    if gw is None:
        return
    if gw.version != e.net.version:
        raise fail(e.gw_where, str(gw), f"is not of the address family of {e.where} ({e.net})")
    if gw.version == 6 and _LINK_LOCAL_V6.contains(gw):
        return
    if index.find(gw) is None:
        raise fail(e.gw_where, str(gw), f"is outside the subnet of every address ({index.describe()}), "
                   "so it is not reachable on the link")


class SubnetIndex:
    """The subnets of a list of addresses, to find the first one containing an address in
    time independent of the list's length (one lookup per prefix length present), so a
    huge list cannot make a check quadratic."""

    __slots__ = ("_by_len", "nets")

    def __init__(self, nets: list[Net]) -> None:
        self.nets = nets
        self._by_len: dict[tuple[int, int], dict[int, int]] = {}
        for i, n in enumerate(nets):
            self._by_len.setdefault((n.version, n.prefixlen), {}).setdefault(n.ip.value & n.mask, i)

    def find(self, ip: IP) -> int | None:
        """The index of the first address whose subnet contains ``ip``, or None."""
        best = None
        for (version, plen), nets in self._by_len.items():
            if version != ip.version:
                continue
            bits = 32 if version == 4 else 128
            mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
            i = nets.get(ip.value & mask)
            if i is not None and (best is None or i < best):
                best = i
        return best

    def groups(self, ip: IP) -> list[tuple[int, int, int]]:
        """The (version, prefix length, network) keys of every subnet containing ``ip``."""
        out = []
        for (version, plen), nets in self._by_len.items():
            if version != ip.version:
                continue
            bits = 32 if version == 4 else 128
            mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
            if ip.value & mask in nets:
                out.append((version, plen, ip.value & mask))
        return out

    def describe(self, limit: int = 4) -> str:
        """The first few addresses, for messages (a list may be huge)."""
        shown = ", ".join(str(n) for n in self.nets[:limit])
        more = len(self.nets) - limit
        return (shown + (f" and {more} more" if more > 0 else "")) or "none"


# -- routes and dns ----------------------------------------------------------------------

def _routes(f: Reader) -> list[Route]:
    from cnilib.types import ROUTE_FIELDS

    return [f.item(item, i, ROUTE_FIELDS, "routes").as_route(same_family=True) for i, item in enumerate(f.list("routes"))]


def _dns(d: Reader) -> DNS:
    from cnilib.types import DNS

    servers = d.strings("nameservers")
    for i, s in enumerate(servers):
        try:
            parse_ip(s)
        except ValueError:
            raise invalid_config(f"{d.path('nameservers')}[{i}]", s, "not an IP address") from None
    return DNS(servers, d.str("domain"), d.strings("search"), d.strings("options"))


def family_limit(entries: list[Entry], cni_version: str) -> None:
    """Code 7 when a 0.1.0/0.2.0 result (one ``ip4``, one ``ip6``) cannot hold ``entries``."""
    from cnilib import version as _version

    if _version.at_least(cni_version, "0.3.0"):
        return
    for fam in (4, 6):
        same = [e for e in entries if e.net.version == fam]
        if len(same) > 1:
            raise CNIError(INVALID_CONFIG, f"invalid cniVersion {cni_version!r}: CNI version {cni_version} does not "
                           f"support more than 1 address per family ({len(same)} IPv{fam} addresses: "
                           f"{same[0].net} from {same[0].where}, {same[1].net} from {same[1].where}"
                           + (", ..." if len(same) > 2 else "") + ")")
