"""Which addresses an attachment gets: static's four address sources and their precedence.

Sources, highest first; the first one that names any address gives all of them, and every
source given is checked, used or not (a bad value anywhere is an error, not a surprise the
day a higher source is absent):

1. ``runtimeConfig.ips`` (capability ``ips``),
2. ``args.cni.ips`` (CONVENTIONS.md),
3. CNI_ARGS ``IP=<addr>[,<addr>...]``,
4. ``ipam.addresses``.

An address from 1-3 is in CIDR notation (``10.10.0.5/24``) or bare (``10.10.0.5``), which
takes the prefix of the first ``ipam.addresses`` entry whose subnet contains it. Gateways:
CNI_ARGS ``GATEWAY=<ip>[,<ip>...]`` sets each of its addresses as the gateway of every
address whose subnet contains it (a later one wins), whatever the source; an address from
1-3 that no GATEWAY value covers keeps the gateway of the first ``ipam.addresses`` entry
whose subnet contains it, so the network's config still names its router when the runtime
picks the address. A GATEWAY value covering no address is an error.

The reference (more-plugins.md §5) differs: CNI_ARGS IP is appended to ``ipam.addresses``
instead of replacing them, GATEWAY only reaches the CNI_ARGS IP addresses (the config's
are not parsed yet when it is applied) and is ignored when it covers none, an ``ips``
source drops every gateway, and every address must carry a prefix. cni.dev documents "only
one will work according to the priorities" (capability, args, CNI_ARGS), which the rule
here keeps, extended to the config's own addresses.

Then, on the chosen addresses: none at all is code 7 (the reference returns an empty
result, and macvlan then fails with "IPAM plugin returned missing IP config"); no address
twice; every gateway inside the subnet of one of them (``config.check_gateway``); below
cniVersion 0.3.0 at most one per family. CNI_ARGS values are code 4, config values code 7.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.errors import invalid_config
from cnilib.ip import IP, Net, parse_ip

from .config import (
    Entry,
    StaticConfig,
    SubnetIndex,
    check_gateway,
    fail,
    family_limit,
    no_duplicates,
    parse_address,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.conf import NetConf

# The CNI_ARGS keys static reads (IP is one of every plugin's well-known keys).
ENV_KEYS = frozenset({"IP", "GATEWAY"})


def addresses(cfg: StaticConfig, conf: NetConf, env_args: dict[str, str]) -> list[Entry]:
    """The attachment's addresses with their gateways (see the module docstring)."""
    within = SubnetIndex([e.net for e in cfg.addresses])
    runtime = _ips(conf.runtime("ips"), "runtimeConfig.ips", cfg, within)
    from_args = _ips(gokeys.get(conf.cni_args(), "ips"), "args.cni.ips", cfg, within)
    from_env = _env_ips(env_args.get("IP", ""), cfg, within)
    gateways = _env_gateways(env_args.get("GATEWAY", ""))
    chosen = runtime or from_args or from_env or [Entry(e.net, e.gateway, e.where, e.gw_where)
                                                  for e in cfg.addresses]
    if not chosen:
        raise invalid_config("ipam.addresses", None,
                             "no address for the attachment: ipam.addresses is empty and none came from "
                             "runtimeConfig.ips (capability ips), args.cni.ips or CNI_ARGS IP")
    no_duplicates(chosen)
    index = SubnetIndex([e.net for e in chosen])
    _apply_gateways(chosen, gateways, index)
    for e in chosen:
        check_gateway(e, index)
    family_limit(chosen, conf.cni_version)
    return chosen


def _entry(text: object, where: str, cfg: StaticConfig, within: SubnetIndex) -> Entry:
    """One address of a runtime source, with the gateway it inherits from the config."""
    if isinstance(text, str) and text and "/" not in text:
        try:
            ip = parse_ip(text)
        except ValueError:
            raise fail(where, text, "not an IP address (in CIDR notation, e.g. 10.10.0.5/24, or bare)") from None
        i = within.find(ip)
        if i is None:
            raise fail(where, text, "has no /prefix, and no ipam.addresses entry's subnet contains it to take "
                       "one from: give it in CIDR notation, e.g. 10.10.0.5/24")
        net = Net(ip, cfg.addresses[i].net.prefixlen)
    else:
        net = parse_address(text, where)
    i = within.find(net.ip)
    if i is not None and cfg.addresses[i].gateway is not None:
        src = cfg.addresses[i]
        return Entry(net, src.gateway, where, src.gw_where)
    return Entry(net, None, where)


def _ips(obj: object, key: str, cfg: StaticConfig, within: SubnetIndex) -> list[Entry]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise invalid_config(key, obj, "must be a list of addresses in CIDR notation, e.g. [\"10.10.0.5/24\"]")
    return [_entry(text, f"{key}[{i}]", cfg, within) for i, text in enumerate(obj)]


def _items(raw: str, key: str) -> list[tuple[str, str]]:
    """(where, text) of each comma-separated item of a CNI_ARGS value ("" when unset)."""
    if raw == "":
        return []
    items = [s.strip() for s in raw.split(",")]
    name = f"CNI_ARGS {key}"
    return [(name if len(items) == 1 else f"{name}[{i}]", s) for i, s in enumerate(items)]


def _env_ips(raw: str, cfg: StaticConfig, within: SubnetIndex) -> list[Entry]:
    out = []
    for where, text in _items(raw, "IP"):
        if text == "":
            raise fail(where, raw, "empty address in the comma-separated list")
        out.append(_entry(text, where, cfg, within))
    return out


def _env_gateways(raw: str) -> list[tuple[IP, str]]:
    out = []
    for where, text in _items(raw, "GATEWAY"):
        try:
            out.append((parse_ip(text), where))
        except ValueError:
            raise fail(where, text, "not an IP address") from None
    return out


def _apply_gateways(entries: list[Entry], gateways: list[tuple[IP, str]], index: SubnetIndex) -> None:
    """Each GATEWAY value becomes the gateway of every address whose subnet contains it, the
    last value winning (computed per subnet, so many values and addresses stay linear)."""
    if not gateways:
        return
    per_subnet: dict[tuple[int, int, int], tuple[IP, str]] = {}
    for gw, where in gateways:
        groups = index.groups(gw)
        if not groups:
            raise fail(where, str(gw), f"is inside the subnet of no address of the attachment ({index.describe()})")
        for g in groups:
            per_subnet[g] = (gw, where)
    for e in entries:
        n = e.net
        hit = per_subnet.get((n.version, n.prefixlen, n.ip.value & n.mask))
        if hit is not None:
            e.gateway, e.gw_where = hit
