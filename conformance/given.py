"""Profiles from a config the user gives (``--config FILE``): any plugin, fully checked.

The file is one plugin's network config or a network configuration list (``"plugins"``);
``cniVersion`` and ``name`` in it are ignored (each check sets them). Strings may hold
placeholders, filled per check from its world (every check has fresh namespaces, subnets
and directories, so one file serves all of them):

==============  =============================================================
``${subnet4}``  the world's IPv4 subnet, e.g. ``10.231.7.0/24``
``${subnet6}``  its IPv6 subnet, e.g. ``fd00:231:7::/64``
``${gateway4}`` the first address of the IPv4 subnet (``10.231.7.1``)
``${gateway6}`` the first address of the IPv6 subnet
``${bridge}``   a bridge name of the world's (the plugin creates it; it may stay after DEL)
``${master}``   a link of the world's host namespace standing in for a NIC (a veth end,
                up), made when the config names it: the parent of macvlan/ipvlan/vlan
``${dataDir}``  a directory of the world's for the plugin's state (the leak checker reads it)
``${runDir}``   another directory of the world's, for sockets and the like
==============  =============================================================

The kind (``--kind interface|ipam|chained|meta|loopback``; ``meta`` is ``chained``, as the
reference repository files portmap, tuning, bandwidth, firewall, sbr and vrf under
``plugins/meta``) decides which suites run and what the world holds: a chained plugin's
world holds the pod its prevResult describes (a veth pair, ``eth0`` with an address in
the container). Without ``--kind``: the type's built-in profile's kind, else our own
plugin's kind of that type, else in a list every plugin after the first is chained and the
first one is an interface plugin when it has an ``ipam`` object; otherwise ``--kind`` is
required.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from conformance import profiles as p
from conformance.kernel import PROBES

KINDS = {"interface": p.INTERFACE, "ipam": p.IPAM, "chained": p.CHAINED, "meta": p.CHAINED,
         "loopback": p.LOOPBACK}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def _values(sb: p.Sandbox) -> dict[str, str]:
    net4 = sb.subnet4.split("/")[0].rsplit(".", 1)[0]
    net6 = sb.subnet6.split("/")[0]
    return {"subnet4": sb.subnet4, "subnet6": sb.subnet6, "gateway4": f"{net4}.1", "gateway6": f"{net6}1",
            "bridge": sb.bridge, "master": sb.master, "dataDir": sb.data_dir, "runDir": sb.run_dir}


PLACEHOLDERS = tuple(_values(p.Sandbox("", "", "10.0.0.0/24", "fd00::/64")))


class ConfigError(ValueError):
    """A --config file the harness cannot use; the message says why."""


def _fill(value: object, table: dict[str, str]) -> object:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: table[m.group(1)], value)
    if isinstance(value, list):
        return [_fill(v, table) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, table) for k, v in value.items()}
    return value


def _used(value: object) -> set[str]:
    """The placeholders a config value uses."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, list):
        return set().union(*(_used(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_used(v) for v in value.values())) if value else set()
    return set()


def _config(template: dict) -> Callable[[p.Sandbox], dict]:
    body = {k: v for k, v in template.items() if k not in ("cniVersion", "name")}
    return lambda sb: _fill(body, _values(sb))  # type: ignore[return-value]


def profile(plugin_type: str, kind: str, template: dict, source: str) -> p.Profile:
    """The profile of a plugin of ``plugin_type`` and ``kind`` (a key of KINDS) configured by
    ``template`` (from file ``source``)."""
    unknown = _used(template) - set(PLACEHOLDERS)
    if unknown:
        raise ConfigError(f"{source}: unknown placeholder(s) {', '.join('${' + u + '}' for u in sorted(unknown))}; "
                          f"known: {', '.join('${' + k + '}' for k in PLACEHOLDERS)}")
    k = KINDS[kind]
    used = _used(template)
    keys = tuple(key for key, v in template.items() if isinstance(v, str) and _used(v) & {"bridge", "master"})
    prof = p.Profile(plugin_type, k, _config(template), interface_keys=keys, given=source)
    if "master" in used:
        prof.prepare = p.stand_in_nic
    if "bridge" in used:
        prof.residue_links = lambda sb: {sb.bridge}
    if k == p.INTERFACE:
        prof.sabotage = _drop_interface
    elif k == p.LOOPBACK:
        prof.ifname = "lo"
    elif k == p.CHAINED:
        prof.prepare = p.pod_veth
        prof.needs_netns = False
        prof.always_acts = True  # which keys make it act the harness cannot tell: it takes the config as it is
    return prof


def _drop_interface(world, cid: str, ifname: str) -> None:
    from conformance.proc import sh

    sh("ip", "link", "delete", ifname, ns=world.ctr)


def _infer(plugin_type: str, template: dict, position: int) -> str | None:
    known = p.profile_for(plugin_type)
    if known is not None:
        return known.kind
    mine = p.registry_kind(plugin_type)
    if mine is not None:
        return mine
    if position > 0:
        return "chained"
    if isinstance(template.get("ipam"), dict):
        return "interface"
    return None


def load(path: str, kind: str = "", *, single_attachment: str = "", needs_kernel: str = "") -> dict[str, p.Profile]:
    """Profiles by plugin type from the config file at ``path`` (every plugin of a list);
    ``kind`` (a key of KINDS) applies to a single plugin config, or to a list of one.
    ``single_attachment`` (why the config serves one attachment at a time) and
    ``needs_kernel`` (a kernel feature, a key of conformance.kernel.PROBES) apply to every
    plugin of the file: what a host-device or vrf config cannot say about itself."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a JSON object")
    entries = doc.get("plugins") if "plugins" in doc else [doc]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: 'plugins' must be a non-empty list of plugin configs")
    if kind and kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    if kind and len(entries) > 1:
        raise ConfigError(f"{path}: --kind applies to one plugin, the list has {len(entries)}")
    if needs_kernel and needs_kernel not in PROBES:
        raise ConfigError(f"--needs-kernel {needs_kernel!r}: one of {', '.join(PROBES)}")
    out: dict[str, p.Profile] = {}
    for i, entry in enumerate(entries):
        t = entry.get("type")
        if not isinstance(t, str) or not t:
            raise ConfigError(f"{path}: plugin {i} has no 'type'")
        k = kind or _infer(t, entry, i)
        if k is None:
            raise ConfigError(f"{path}: cannot tell what kind of plugin {t!r} is; pass --kind "
                              f"({'|'.join(KINDS)})")
        prof = profile(t, k, entry, path)
        prof.single_attachment = single_attachment or prof.single_attachment
        prof.link_kind = needs_kernel or prof.link_kind
        out[t] = prof
    return out
