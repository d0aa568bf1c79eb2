"""CNI results: one model (the 1.1.0 schema) read from and written to every spec version.

Results are built as 1.1.0 and converted on the way out, exactly as libcni converts them
(``pkg/types/{020,040,100}``): 0.1.0 <-> 0.2.0 lossless; 0.2.x -> 0.3+ moves ``ip4``/``ip6``
into ``ips`` (with their routes); 0.3+ -> 0.2.x keeps the first IPv4 and first IPv6 address,
puts each route under the family of its destination and fails with "cannot convert: no valid
IP addresses" when there is none; 1.x -> 0.3/0.4 adds ``ips[].version`` and keeps only
``name``/``mac``/``sandbox`` of interfaces; 1.0.0 <-> 1.1.0 changes only the version string.
Key order and omitted empty fields follow Go's encoding so output diffs cleanly against the
reference plugins. Keys are read as Go reads them (``cnilib.gokeys``): a prevResult with
``"IPs"`` or ``"Address"`` parses as libcni parses it, and is printed with canonical keys.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib import version as _version
from cnilib.errors import DECODE_FAILURE, INTERNAL, CNIError
from cnilib.ip import IP, Net, parse_cidr, parse_ip


def _bad(what: str, value: object) -> CNIError:
    return CNIError(DECODE_FAILURE, f"invalid result: {what} {value!r}")


def _cidr(obj: dict, key: str, where: str) -> Net:
    v = obj.get(key)
    try:
        return parse_cidr(v)  # type: ignore[arg-type]
    except ValueError:
        raise _bad(f"{where}.{key}", v) from None


def _opt_ip(obj: dict, key: str, where: str) -> IP | None:
    v = obj.get(key)
    if v is None or v == "":
        return None
    try:
        return parse_ip(v)
    except ValueError:
        raise _bad(f"{where}.{key}", v) from None


def _opt_int(obj: dict, key: str, where: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(f"{where}.{key}", v)
    return v


def _opt_str(obj: dict, key: str, where: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(f"{where}.{key}", v)
    return v


def _str_list(obj: dict, key: str, where: str) -> list[str]:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(f"{where}.{key}", v)
    return list(v)


def _dict(v: object, where: str, struct: gokeys.Struct | None = None) -> dict:
    """``v`` as an object; with ``struct``, its fields under their canonical names."""
    if not isinstance(v, dict):
        raise _bad(where, v)
    return v if struct is None else struct.read(v)


# The Go structs of libcni's result types (types/100, types/040, types/020).
RESULT_FIELDS = gokeys.Struct("cniVersion", "interfaces", "ips", "routes", "dns", "ip4", "ip6")
INTERFACE_FIELDS = gokeys.Struct("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
IPCONFIG_FIELDS = gokeys.Struct("interface", "address", "gateway", "version")
IPCONFIG_02_FIELDS = gokeys.Struct("ip", "gateway", "routes")
ROUTE_FIELDS = gokeys.Struct("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
DNS_FIELDS = gokeys.Struct("nameservers", "domain", "search", "options")


def _list(obj: dict, key: str, where: str) -> list:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(f"{where}.{key}", v)
    return v


class Interface:
    """``interfaces[]`` entry."""

    __slots__ = ("name", "mac", "sandbox", "mtu", "socket_path", "pci_id")

    def __init__(self, name: str, mac: str = "", sandbox: str = "", mtu: int = 0,
                 socket_path: str = "", pci_id: str = "") -> None:
        self.name = name
        self.mac = mac
        self.sandbox = sandbox
        self.mtu = mtu
        self.socket_path = socket_path
        self.pci_id = pci_id

    @classmethod
    def parse(cls, obj: object, where: str) -> "Interface":
        d = _dict(obj, where, INTERFACE_FIELDS)
        name = d.get("name")
        if not isinstance(name, str):
            raise _bad(f"{where}.name", name)
        return cls(name, _opt_str(d, "mac", where), _opt_str(d, "sandbox", where),
                   _opt_int(d, "mtu", where) or 0, _opt_str(d, "socketPath", where),
                   _opt_str(d, "pciID", where))

    def to_dict(self, fam: str) -> dict:
        out: dict = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if fam == "1" and self.mtu:
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if fam == "1":
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        return out


class IPConfig:
    """``ips[]`` entry: an address in CIDR form, its gateway and the interface index."""

    __slots__ = ("address", "gateway", "interface")

    def __init__(self, address: Net, gateway: IP | None = None, interface: int | None = None) -> None:
        self.address = address
        self.gateway = gateway
        self.interface = interface

    @property
    def version(self) -> int:
        return self.address.version

    def to_dict(self, fam: str) -> dict:
        out: dict = {}
        if fam == "04":
            out["version"] = str(self.address.version)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out


class Route:
    """``routes[]`` entry with the 1.1.0 fields (kept across versions as libcni keeps them)."""

    __slots__ = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")

    def __init__(self, dst: Net, gw: IP | None = None, mtu: int = 0, advmss: int = 0,
                 priority: int = 0, table: int | None = None, scope: int | None = None) -> None:
        self.dst = dst
        self.gw = gw
        self.mtu = mtu
        self.advmss = advmss
        self.priority = priority
        self.table = table
        self.scope = scope

    @classmethod
    def parse(cls, obj: object, where: str) -> "Route":
        d = _dict(obj, where, ROUTE_FIELDS)
        return cls(_cidr(d, "dst", where), _opt_ip(d, "gw", where),
                   _opt_int(d, "mtu", where) or 0, _opt_int(d, "advmss", where) or 0,
                   _opt_int(d, "priority", where) or 0, _opt_int(d, "table", where),
                   _opt_int(d, "scope", where))

    def to_dict(self, basic: bool = False) -> dict:
        out: dict = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if basic:  # 0.2.0 routes carry only dst and gw
            return out
        if self.mtu:
            out["mtu"] = self.mtu
        if self.advmss:
            out["advmss"] = self.advmss
        if self.priority:
            out["priority"] = self.priority
        if self.table is not None:
            out["table"] = self.table
        if self.scope is not None:
            out["scope"] = self.scope
        return out


class DNS:
    """``dns``: nameservers, domain, search, options (all optional)."""

    __slots__ = ("nameservers", "domain", "search", "options")

    def __init__(self, nameservers: list[str] | None = None, domain: str = "",
                 search: list[str] | None = None, options: list[str] | None = None) -> None:
        self.nameservers = nameservers or []
        self.domain = domain
        self.search = search or []
        self.options = options or []

    @classmethod
    def parse(cls, obj: object, where: str = "dns") -> "DNS":
        if obj is None:
            return cls()
        d = _dict(obj, where, DNS_FIELDS)
        return cls(_str_list(d, "nameservers", where), _opt_str(d, "domain", where),
                   _str_list(d, "search", where), _str_list(d, "options", where))

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict:
        out: dict = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class Result:
    """A plugin result in the 1.1.0 model, printable in any supported version."""

    __slots__ = ("cni_version", "interfaces", "ips", "routes", "dns")

    def __init__(self, cni_version: str = _version.CURRENT, interfaces: list[Interface] | None = None,
                 ips: list[IPConfig] | None = None, routes: list[Route] | None = None,
                 dns: DNS | None = None) -> None:
        self.cni_version = cni_version
        self.interfaces = interfaces or []
        self.ips = ips or []
        self.routes = routes or []
        self.dns = dns or DNS()

    # -- reading -----------------------------------------------------------------------
    @classmethod
    def parse(cls, obj: object, default_version: str = _version.IMPLICIT) -> "Result":
        """Read a result of any supported version (as libcni would decode it).

        ``default_version`` is used when the document has no ``cniVersion``.
        Raise code 6 for a malformed document and code 1 for an unsupported version.
        """
        d = _dict(obj, "result", RESULT_FIELDS)
        ver = d.get("cniVersion")
        if ver is not None and not isinstance(ver, str):
            raise _bad("cniVersion", ver)
        ver = ver or default_version
        _version.require_supported(ver)
        if _version.family(ver) == "02":
            return cls._parse_02(d, ver)
        interfaces = [Interface.parse(x, f"interfaces[{i}]") for i, x in enumerate(_list(d, "interfaces", "result"))]
        ips = []
        for i, x in enumerate(_list(d, "ips", "result")):
            where = f"ips[{i}]"
            e = _dict(x, where, IPCONFIG_FIELDS)
            ips.append(IPConfig(_cidr(e, "address", where), _opt_ip(e, "gateway", where),
                                _opt_int(e, "interface", where)))
        routes = [Route.parse(x, f"routes[{i}]") for i, x in enumerate(_list(d, "routes", "result"))]
        return cls(ver, interfaces, ips, routes, DNS.parse(d.get("dns")))

    @classmethod
    def _parse_02(cls, d: dict, ver: str) -> "Result":
        # libcni's types040.convertFrom02x: ip4 then ip6, each followed by its routes.
        ips: list[IPConfig] = []
        routes: list[Route] = []
        for key in ("ip4", "ip6"):
            block = d.get(key)
            if block is None:
                continue
            b = _dict(block, key, IPCONFIG_02_FIELDS)
            ips.append(IPConfig(_cidr(b, "ip", key), _opt_ip(b, "gateway", key)))
            for i, r in enumerate(_list(b, "routes", key)):
                routes.append(Route.parse(r, f"{key}.routes[{i}]"))
        return cls(ver, [], ips, routes, DNS.parse(d.get("dns")))

    # -- writing -----------------------------------------------------------------------
    def to_dict(self, version: str | None = None) -> dict:
        """The result as JSON-ready data in ``version`` (default: its own).

        Raise code 1 for an unsupported target, and "cannot convert: no valid IP addresses"
        (an internal error, code 999, as libcni reports it) when 0.1.0/0.2.0 cannot hold it.
        """
        ver = _version.require_supported(version or self.cni_version)
        fam = _version.family(ver)
        if fam == "02":
            return self._to_02(ver)
        out: dict = {"cniVersion": ver}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(fam) for i in self.interfaces]
        if self.ips:
            out["ips"] = [i.to_dict(fam) for i in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out

    def _to_02(self, ver: str) -> dict:
        ip4 = next((i for i in self.ips if i.version == 4), None)
        ip6 = next((i for i in self.ips if i.version == 6), None)
        if ip4 is None and ip6 is None:
            raise CNIError(INTERNAL, "cannot convert: no valid IP addresses")
        out: dict = {"cniVersion": ver}
        for key, ipc in (("ip4", ip4), ("ip6", ip6)):
            if ipc is None:
                continue
            block: dict = {"ip": str(ipc.address)}
            if ipc.gateway is not None:
                block["gateway"] = str(ipc.gateway)
            fam_routes = [r.to_dict(basic=True) for r in self.routes if r.dst.version == ipc.version]
            if fam_routes:
                block["routes"] = fam_routes
            out[key] = block
        out["dns"] = self.dns.to_dict()
        return out

    def copy(self) -> "Result":
        """A deep copy (results are small; plugins amend copies of prevResult)."""
        dup = Result.parse(self.to_dict(_version.CURRENT), _version.CURRENT)
        dup.cni_version = self.cni_version
        return dup


def on_interface(result: Result, ipc: IPConfig, ifname: str) -> bool:
    """An IP of ``result`` that sits on ``ifname`` (one without an interface index counts,
    as in the reference)."""
    i = ipc.interface
    return i is None or (0 <= i < len(result.interfaces) and result.interfaces[i].name == ifname)
