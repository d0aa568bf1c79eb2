"""Does this kernel have a link kind (ipvlan, 802.1Q vlan, macvlan, dummy)? Asked without
creating anything, so a plugin refuses a config the kernel cannot serve (code 50, naming
the feature) before it creates a link or takes a lease.

The probe is one RTM_NEWLINK of that kind carrying a value the kind's own validation
rejects (an out-of-range mode or VLAN ID, an MTU of 1). The kernel looks the kind
up first (loading its module on demand) and answers EOPNOTSUPP ("Unknown device type")
when it has none; a kernel that has it runs the kind's validation, which refuses the
value (EINVAL/ERANGE) before any device exists. Either way nothing is created.
"""

from __future__ import annotations

from cnilib import link, nl
from cnilib.errors import NOT_AVAILABLE, CNIError

EOPNOTSUPP = 95

# kind -> what the kernel needs for it (for messages)
FEATURES = {
    "macvlan": "macvlan links (kernel module macvlan, CONFIG_MACVLAN)",
    "ipvlan": "ipvlan links (kernel module ipvlan, CONFIG_IPVLAN)",
    "vlan": "802.1Q VLAN links (kernel module 8021q, CONFIG_VLAN_8021Q)",
    "dummy": "dummy links (kernel module dummy, CONFIG_DUMMY)",
}


def _probe_request(kind: str):
    # Each value below is refused by the kind's validate(): no device can come of it.
    data = {
        "macvlan": [("IFLA_MACVLAN_MODE", 3)],  # not a macvlan mode
        "ipvlan": [("IFLA_IPVLAN_MODE", 0xFFFF)],  # >= IPVLAN_MODE_MAX
        "vlan": [("IFLA_VLAN_ID", 4095)],  # >= VLAN_VID_MASK
    }.get(kind)
    attrs: list = [("IFLA_IFNAME", "cnipyprobe0")]
    if kind == "dummy":
        attrs.append(("IFLA_MTU", 1))  # under ETH_MIN_MTU: refused before registration
    info: list = [("IFLA_INFO_KIND", kind)]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    return nl.msg("ifinfmsg", {"family": 0, "index": 0, "flags": 0, "change": 0}, attrs)


def has_kind(sock: nl.Socket, kind: str) -> bool:
    """Whether the kernel behind ``sock`` can create links of ``kind`` (FEATURES' keys)."""
    if kind not in FEATURES:
        raise ValueError(f"no probe for link kind {kind!r}")
    try:
        sock.request(_probe_request(kind), nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL)
    except nl.NetlinkError as e:
        return e.errno != EOPNOTSUPP
    # Validation let it through after all (a kernel we do not know): remove what it made.
    lk = link.get(sock, "cnipyprobe0")
    if lk is not None:
        link.delete(sock, lk.index)
    return True


def unsupported(kind: str, who: str) -> CNIError:
    """Code 50: ``who`` (the config, e.g. "ipvlan network 'net1' (mode l3)") needs link
    ``kind``, which this kernel lacks."""
    return CNIError(NOT_AVAILABLE, f"{who} needs {FEATURES[kind]}, which this kernel does not support",
                    "load the module or run on a kernel built with it; nothing was created")


def require(sock: nl.Socket, kind: str, who: str) -> None:
    """Raise ``unsupported(kind, who)`` unless the kernel has link ``kind``."""
    if not has_kind(sock, kind):
        raise unsupported(kind, who)
