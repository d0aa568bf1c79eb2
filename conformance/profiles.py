"""What the harness knows about each plugin type: its kind and how to configure it.

A profile turns a test's sandbox (its data dir, a unique bridge name...) into a valid
plugin config, so one generic check runs against every plugin. Kinds decide which
suites apply:

- ``ipam``: delegated address management (host-local): results have no interfaces;
- ``interface``: creates CNI_IFNAME in the container (bridge, macvlan, ipvlan, vlan);
  delegates to IPAM;
- ``loopback``: configures ``lo`` in the container, creates nothing;
- ``chained``: needs a prevResult and passes it on (portmap).

Third-party plugins of a known type reuse these profiles; a plugin of an unknown type
gets the generic checks that need no valid config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from conformance.proc import sh

IPAM = "ipam"
INTERFACE = "interface"
LOOPBACK = "loopback"
CHAINED = "chained"


@dataclass
class Sandbox:
    """Per-test resources a config may refer to."""

    data_dir: str
    bridge: str
    subnet4: str  # e.g. "10.231.7.0/24", unique per test
    subnet6: str  # e.g. "fd00:231:7::/64"
    spy_dir: str = ""
    # A link of the world's host namespace standing in for the machine's NIC: the parent
    # ("master") of macvlan, ipvlan and vlan links. Made only for a profile that asks for
    # it (``Profile.prepare_host``), so other plugins' worlds stay as they were.
    master: str = ""


@dataclass
class Profile:
    """One plugin type as the harness drives it."""

    type: str
    kind: str
    # The plugin's own config object (without name/cniVersion), for a sandbox.
    config: Callable[[Sandbox], dict]
    # Links a successful DEL may legitimately leave in the host namespace (the bridge).
    residue_links: Callable[[Sandbox], set[str]] = field(default=lambda sb: set())
    # Whether the plugin needs a real namespace in CNI_NETNS on ADD/CHECK.
    needs_netns: bool = True
    # Config keys whose value names an interface the plugin creates or uses (the kernel
    # expands a '%' in such a name as a template: "br%d" becomes br0).
    interface_keys: tuple[str, ...] = ()
    # CNI_IFNAME to use (loopback works on lo).
    ifname: str = "eth0"
    # Undo part of an attachment behind the plugin's back, so CHECK must notice
    # (checklist G31): ``sabotage(world, container_id, ifname)``.
    sabotage: Callable[..., None] | None = None
    # What the world's host namespace must hold before the plugin can run (the stand-in
    # NIC): ``prepare_host(sandbox, host_netns_name)``, run whenever the world makes its
    # namespaces, so it is part of the leak checker's "before".
    prepare_host: Callable[[Sandbox, str], None] | None = None
    # The kernel link kind the plugin creates (a key of conformance.kernel.PROBES): on a
    # kernel without it, the checks that need a working config are not applicable.
    link_kind: str = ""
    # Remove the host-side link the attachment depends on (the master), as when a NIC
    # goes away under a running container: ``drop_parent(world)``.
    drop_parent: Callable[..., None] | None = None
    # Why one config serves only one attachment at a time (empty: it serves many). The
    # checks that hold several attachments of one config at once are then not applicable.
    single_attachment: str = ""
    # Whether a second network on the same host needs a subnet of its own: ipvlan links of
    # one master may not share an address, so two networks leasing from the same subnet
    # (each host-local store starts at .2) collide in the kernel. A bridge, on the contrary,
    # refuses a second IPv4 gateway subnet, so it keeps one.
    separate_subnets: bool = False

    @property
    def creates_interface(self) -> bool:
        return self.kind == INTERFACE


def host_local_ipam(sb: Sandbox, dual: bool = False) -> dict:
    ranges = [[{"subnet": sb.subnet4}]]
    if dual:
        ranges.append([{"subnet": sb.subnet6}])
    return {"type": "host-local", "ranges": ranges, "dataDir": sb.data_dir,
            "routes": [{"dst": "0.0.0.0/0"}]}


def _drop_leases(world, cid: str, ifname: str) -> None:
    """host-local: remove the lease files of (cid, ifname)."""
    import os

    for d, _, files in os.walk(world.sandbox.data_dir):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                if fh.read().split(b"\r\n")[0].strip() == cid.encode():
                    os.unlink(p)


def _lo_down(world, cid: str, ifname: str) -> None:
    sh("ip", "link", "set", "lo", "down", ns=world.ctr)


def _drop_interface(world, cid: str, ifname: str) -> None:
    sh("ip", "link", "delete", ifname, ns=world.ctr)


def stand_in_nic(sb: Sandbox, host_ns: str) -> None:
    """The master of a macvlan/ipvlan/vlan link: one end of a veth pair (both ends in the
    host namespace, both up so the master has carrier), as a NIC on a real host."""
    sh("ip", "link", "add", sb.master, "type", "veth", "peer", "name", f"{sb.master}p", ns=host_ns)
    for name in (sb.master, f"{sb.master}p"):
        sh("ip", "link", "set", name, "up", ns=host_ns)


def _drop_master(world) -> None:
    """Delete the stand-in NIC (its peer goes with it); the kernel deletes every
    macvlan/ipvlan/vlan link on it, in whatever namespace."""
    sh("ip", "link", "delete", world.sandbox.master, ns=world.host)


def _master_profile(plugin_type: str, extra: dict, link_kind: str, single_attachment: str = "") -> Profile:
    """A plugin creating a link on top of a host link (``master``): macvlan, ipvlan, vlan."""
    return Profile(plugin_type, INTERFACE,
                   lambda sb: {"type": plugin_type, "master": sb.master, **extra, "ipam": host_local_ipam(sb)},
                   sabotage=_drop_interface, interface_keys=("master",), prepare_host=stand_in_nic,
                   link_kind=link_kind, drop_parent=_drop_master, single_attachment=single_attachment,
                   separate_subnets=True)


# The kernel keeps one VLAN link per (parent, VLAN ID) across all namespaces, so a second
# container on the same vlan config fails "file exists" with any implementation.
_ONE_VLAN_LINK = ("the kernel allows one VLAN link per (master, vlanId) in all namespaces, so a vlan "
                  "config serves one attachment at a time (more-plugins.md §3; reference issue #243)")


PROFILES: dict[str, Profile] = {
    "host-local": Profile("host-local", IPAM, lambda sb: {"type": "host-local", "ipam": host_local_ipam(sb)},
                          needs_netns=False, sabotage=_drop_leases),
    "loopback": Profile("loopback", LOOPBACK, lambda sb: {"type": "loopback"}, ifname="lo", sabotage=_lo_down),
    "bridge": Profile("bridge", INTERFACE,
                      lambda sb: {"type": "bridge", "bridge": sb.bridge, "isGateway": True,
                                  "ipam": host_local_ipam(sb)},
                      residue_links=lambda sb: {sb.bridge}, sabotage=_drop_interface, interface_keys=("bridge",)),
    "macvlan": _master_profile("macvlan", {"mode": "bridge"}, "macvlan"),
    "ipvlan": _master_profile("ipvlan", {"mode": "l2"}, "ipvlan"),
    "vlan": _master_profile("vlan", {"vlanId": 100}, "vlan", _ONE_VLAN_LINK),
    "portmap": Profile("portmap", CHAINED,
                       lambda sb: {"type": "portmap", "capabilities": {"portMappings": True}},
                       needs_netns=False),
}


def profile_for(plugin_type: str) -> Profile | None:
    """The profile of a plugin type, or None for a type the harness does not know."""
    return PROFILES.get(plugin_type)


def registry_kind(plugin_type: str) -> str | None:
    """The kind this suite's own plugin of that type declares (plugins/__init__.py, the
    registry: a plugin folder added there is known to the harness at once), or None."""
    try:
        import plugins
    except ImportError:  # the harness installed without the plugins
        return None
    if plugin_type not in plugins.names():
        return None
    return plugins.load(plugin_type).kind
