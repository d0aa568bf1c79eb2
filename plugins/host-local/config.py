"""host-local's configuration: the ``ipam`` object, runtimeConfig and requested addresses.

Same keys, defaults and order as the reference's ``LoadIPAMConfig``:

* range sets are ``runtimeConfig.ipRanges`` (capability ``ipRanges``), then the legacy
  top-level ``subnet``/``rangeStart``/``rangeEnd``/``gateway`` as one set, then ``ranges``;
* per range: ``gateway`` defaults to network+1, ``rangeStart`` to network+1 (the gateway is
  skipped while walking), ``rangeEnd`` to broadcast-1 (IPv4) or the prefix's last address
  (IPv6); the subnet must leave two addresses (not /31, /32, /127, /128) and have no host
  bits; start and end must be inside the subnet, start <= end;
* one family per set, no overlapping ranges within or across sets, and below cniVersion
  0.3.0 (whose results hold one address per family) at most one set per family;
* requested addresses come from ``runtimeConfig.ips`` (capability ``ips``), ``args.cni.ips``
  and CNI_ARGS ``IP``, a ``/prefix`` is ignored.

Keys are matched the way Go's encoding/json matches struct fields (``cnilib.gokeys``:
exact or case-insensitive, the last one wins), so a config the reference reads with
``DataDir`` puts its leases in the same place for us. Every error is code 7 and names the key (as a
path such as ``ipam.ranges[1][0].rangeEnd``) and the value; nothing here touches the disk.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib import version as _version
from cnilib.confread import Reader
from cnilib.errors import INVALID_ENVIRONMENT, CNIError, invalid_config
from cnilib.ip import IP, Net, parse_cidr, parse_ip_or_cidr

from .allocator import Range, RangeSet, Request

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class IPAMConfig:
    """What one invocation needs: network name, store location, range sets, routes, etc."""

    __slots__ = ("name", "data_dir", "resolv_conf", "routes", "sets", "requests")

    def __init__(self, name: str, data_dir: str) -> None:
        self.name = name
        self.data_dir = data_dir
        self.resolv_conf = ""
        self.routes: list = []
        self.sets: list[RangeSet] = []
        self.requests: list[Request] = []


# The reference's structs: IPAMConfig (with the legacy Range embedded), Range, and the
# runtimeConfig it reads (routes are cnilib.types' Route).
_RANGE_KEYS = ("rangeStart", "rangeEnd", "subnet", "gateway")
IPAM = gokeys.Struct(*_RANGE_KEYS, "name", "type", "routes", "dataDir", "resolvConf", "ranges")
RANGE = gokeys.Struct(*_RANGE_KEYS)
RUNTIME = gokeys.Struct("ipRanges", "ips")


def _ipam(conf) -> Reader:
    if conf.ipam is None:
        raise invalid_config("ipam", None, "host-local needs an \"ipam\" object")
    return Reader(conf.ipam, IPAM, "ipam")


def load_store_location(conf) -> IPAMConfig:
    """Just enough for DEL and GC: the network name and ``dataDir``.

    DEL must be able to release leases even when the ranges of the config are broken (a
    config edited after the container started), so it needs nothing else.
    """
    return IPAMConfig(conf.name, _ipam(conf).str("dataDir", DEFAULT_DATA_DIR))


def load(conf, env_args: dict[str, str] | None = None) -> IPAMConfig:
    """Parse and validate everything (ADD, CHECK, STATUS); ``env_args`` is CNI_ARGS parsed."""
    f = _ipam(conf)
    cfg = IPAMConfig(conf.name, f.str("dataDir", DEFAULT_DATA_DIR))
    cfg.resolv_conf = f.str("resolvConf")
    cfg.routes = _routes(f.raw("routes"))
    rc = RUNTIME.read(conf.runtime_config)
    cfg.sets = _range_sets(conf, f, rc)
    if env_args is not None:
        cfg.requests = _requests(conf, rc, env_args)
    return cfg


# -- ranges ----------------------------------------------------------------------------

def _range_sets(conf, f: Reader, rc: dict) -> list[RangeSet]:
    sets: list[RangeSet] = []
    runtime = rc.get("ipRanges")
    if runtime is not None:
        if not isinstance(runtime, list):
            raise invalid_config("runtimeConfig.ipRanges", runtime, "must be a list of range sets")
        for i, rs in enumerate(runtime):
            sets.append(_range_set(rs, f"runtimeConfig.ipRanges[{i}]"))
    # Legacy single range: used when ``subnet`` is set. Its other keys are still checked
    # for syntax (the reference's JSON decoding rejects a malformed IP there too).
    legacy = _range(f, "ipam", legacy=True)
    if legacy is not None:
        sets.append(RangeSet([legacy], "ipam"))
    ranges = f.raw("ranges")
    if ranges is not None:
        if not isinstance(ranges, list):
            raise invalid_config("ipam.ranges", ranges, "must be a list of range sets")
        for i, rs in enumerate(ranges):
            sets.append(_range_set(rs, f"ipam.ranges[{i}]"))
    if not sets:
        raise invalid_config("ipam.ranges", None, "no IP ranges specified (set ipam.ranges, ipam.subnet "
                             "or runtimeConfig.ipRanges)")
    _check_families(conf.cni_version, sets)
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            _no_overlap(a, b)
    return sets


def _range_set(obj: object, where: str) -> RangeSet:
    if not isinstance(obj, list):
        raise invalid_config(where, obj, "a range set must be a list of ranges")
    if not obj:
        raise invalid_config(where, obj, "empty range set")
    ranges = []
    for i, item in enumerate(obj):
        r = _range(item, f"{where}[{i}]")
        if ranges and r.version != ranges[0].version:
            raise invalid_config(f"{where}[{i}].subnet", str(r.subnet),
                                 f"mixes address families with {where}[0] ({ranges[0].subnet})")
        for j, prev in enumerate(ranges):
            if r.overlaps(prev):  # the reference checks start..end, not the subnets
                raise invalid_config(f"{where}[{i}].subnet", str(r.subnet),
                                     f"range {r} overlaps {where}[{j}] ({prev})")
        ranges.append(r)
    return RangeSet(ranges, where)


def _range(obj: "dict | Reader", where: str, legacy: bool = False) -> Range | None:
    """One range; ``legacy``: the single range of ``ipam``'s own keys (``obj`` is its Reader)."""
    if isinstance(obj, Reader):
        f = obj
    elif isinstance(obj, dict):
        f = Reader(obj, RANGE, where)
    else:
        raise invalid_config(where, obj, "a range must be an object")
    gateway = f.ip("gateway")
    start = f.ip("rangeStart")
    end = f.ip("rangeEnd")
    key = f"{where}.subnet"
    text = f.raw("subnet")
    if text is None:
        if legacy:
            return None
        raise invalid_config(key, None, "every range needs a subnet")
    if not isinstance(text, str):
        raise invalid_config(key, text, "must be a string")
    try:
        subnet = parse_cidr(text)
    except ValueError:
        raise invalid_config(key, text, "not a CIDR (address/prefix)") from None
    bits = subnet.ip.bits
    if subnet.prefixlen > bits - 2:
        raise invalid_config(key, text, f"network too small to allocate from (at most /{bits - 2})")
    network = subnet.network
    if subnet.ip != network:
        raise invalid_config(key, text,
                             f"has host bits set; the network address is {network}/{subnet.prefixlen}")
    subnet = Net(network, subnet.prefixlen)
    if gateway is None:
        gateway = network + 1
    elif gateway.version != subnet.version:
        # The reference accepts a gateway outside the subnet (so do we: routed setups use
        # one), but a gateway of the other family cannot work and ends up in the result.
        raise invalid_config(f"{where}.gateway", str(gateway),
                             f"is not the address family of subnet {subnet}")
    for k, ip in (("rangeStart", start), ("rangeEnd", end)):
        if ip is not None and not subnet.contains(ip):
            raise invalid_config(f"{where}.{k}", str(ip), f"not in subnet {subnet}")
    first = start.value if start is not None else network.value + 1
    if end is not None:
        last = end.value
    else:
        last = subnet.last.value - (1 if subnet.version == 4 else 0)  # v4: skip broadcast
    if first > last:
        k, v = ("rangeStart", start) if start is not None else ("rangeEnd", end)
        v4or6 = subnet.version
        raise invalid_config(f"{where}.{k}", str(v),
                             f"rangeStart {IP(v4or6, first)} is after rangeEnd {IP(v4or6, last)}")
    return Range(subnet, first, last, gateway.value)


def _check_families(cni_version: str, sets: list[RangeSet]) -> None:
    # 0.1.0/0.2.0 results have one ip4 and one ip6 slot: more sets could not be reported.
    if _version.at_least(cni_version, "0.3.0"):
        return
    for fam in (4, 6):
        same = [rs.where for rs in sets if rs.version == fam]
        if len(same) > 1:
            raise invalid_config("cniVersion", cni_version,
                                 f"does not support more than one IPv{fam} range set ({', '.join(same)})")


def _no_overlap(a: RangeSet, b: RangeSet) -> None:
    for i, rb in enumerate(b.ranges):
        for ra in a.ranges:
            if ra.overlaps(rb):
                raise invalid_config(f"{b.where}[{i}].subnet" if b.where != "ipam" else "ipam.subnet",
                                     str(rb.subnet), f"range {rb} overlaps range {ra} of {a.where}")


# -- routes ----------------------------------------------------------------------------

def _routes(obj: object) -> list:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise invalid_config("ipam.routes", obj, "must be a list of routes")
    from cnilib.types import ROUTE_FIELDS

    out = []
    for i, item in enumerate(obj):
        where = f"ipam.routes[{i}]"
        if not isinstance(item, dict):
            raise invalid_config(where, item, "a route must be an object")
        out.append(Reader(item, ROUTE_FIELDS, where).as_route())
    return out


# -- requested addresses ---------------------------------------------------------------

def _ip_list(obj: object, where: str) -> list[Request]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise invalid_config(where, obj, "must be a list of IP addresses")
    out = []
    for i, text in enumerate(obj):
        try:
            ip, _ = parse_ip_or_cidr(text)
        except ValueError:
            raise invalid_config(f"{where}[{i}]", text,
                                 "not an IP address (optionally with /prefix)") from None
        out.append(Request(ip, where, text))
    return out


def _requests(conf, rc: dict, env_args: dict[str, str]) -> list[Request]:
    cni = gokeys.get(conf.args, "cni")
    if cni is not None and not isinstance(cni, dict):
        raise invalid_config("args.cni", cni, "must be an object")
    from_args = _ip_list(gokeys.get(cni, "ips"), "args.cni.ips")
    reqs = _ip_list(rc.get("ips"), "runtimeConfig.ips") + from_args
    # CONVENTIONS.md: when args.cni.ips is given, CNI_ARGS IP is ignored (the reference
    # requests both and then fails, as both cannot fit in one range set).
    text = env_args.get("IP")
    if text and not from_args:
        try:
            ip, _ = parse_ip_or_cidr(text)
        except ValueError:
            raise CNIError(INVALID_ENVIRONMENT, f"invalid CNI_ARGS IP {text!r}: not an IP address "
                           "(optionally with /prefix)") from None
        reqs.append(Request(ip, "CNI_ARGS IP", text))
    seen: set[IP] = set()
    out = []
    for r in reqs:  # the same address from two sources is one request (as in the reference)
        if r.ip not in seen:
            seen.add(r.ip)
            out.append(r)
    return out
