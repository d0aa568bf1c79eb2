"""What the harness knows about each plugin type: its kind and how to configure it.

A profile turns a test's sandbox (its data dir, a unique bridge name...) into a valid
plugin config, so one generic check runs against every plugin. Kinds decide which
suites apply:

- ``ipam``: delegated address management (host-local): results have no interfaces;
- ``interface``: creates CNI_IFNAME in the container (bridge); delegates to IPAM;
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


PROFILES: dict[str, Profile] = {
    "host-local": Profile("host-local", IPAM, lambda sb: {"type": "host-local", "ipam": host_local_ipam(sb)},
                          needs_netns=False, sabotage=_drop_leases),
    "loopback": Profile("loopback", LOOPBACK, lambda sb: {"type": "loopback"}, ifname="lo", sabotage=_lo_down),
    "bridge": Profile("bridge", INTERFACE,
                      lambda sb: {"type": "bridge", "bridge": sb.bridge, "isGateway": True,
                                  "ipam": host_local_ipam(sb)},
                      residue_links=lambda sb: {sb.bridge}, sabotage=_drop_interface, interface_keys=("bridge",)),
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
