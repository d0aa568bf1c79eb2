"""What the harness knows about each plugin type: its kind and how to configure it.

A profile turns a test's sandbox (its data dir, a unique bridge name...) into a valid
plugin config, so one generic check runs against every plugin. Kinds decide which
suites apply:

- ``ipam``: delegated address management (host-local, static, dhcp): results have no
  interfaces; dhcp's world also runs a DHCP server and the implementation's daemon
  (``dhcp_world``), stopped by ``Profile.cleanup`` when the world closes or renews;
- ``interface``: creates CNI_IFNAME in the container (bridge, macvlan, ipvlan, vlan);
  delegates to IPAM;
- ``loopback``: configures ``lo`` in the container, creates nothing;
- ``chained``: needs a prevResult and passes it on (portmap, tuning, bandwidth, firewall);
  its world holds the pod the prevResult describes: a veth pair, the host end in the host
  namespace, ``eth0`` (with the prevResult's address) in the container.

Third-party plugins of a known type reuse these profiles; a plugin of any other type is
fully checked with a config the user gives (``--config``, conformance/given.py); without
one it gets the generic checks that need no valid config.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from conformance import dhcp_lan as lan
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
    # it (``Profile.prepare``), so other plugins' worlds stay as they were.
    master: str = ""
    # The host end of the pod's veth pair (the container end is eth0) that a chained
    # plugin's prevResult describes; made only for a profile that asks for it.
    pod_veth: str = ""
    # The directory of the plugins under test: a world running a daemon of the
    # implementation under test (dhcp) starts ``<cni_path>/<type> daemon``.
    cni_path: str = ""
    # A directory for what a profile's ``prepare`` runs (PID files, sockets, a DHCP
    # server's leases), apart from ``data_dir``, which checks empty and read as a lease store.
    run_dir: str = ""


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
    # What the world's namespaces must hold before the plugin can run (a stand-in NIC, a
    # pod's veth pair): ``prepare(sandbox, host_netns_name, container_netns_name)``, run
    # whenever the world makes its namespaces, so it is part of the leak checker's "before".
    prepare: Callable[[Sandbox, str, str], None] | None = None
    # Undo what ``prepare`` started that deleting the namespaces does not end (processes:
    # a DHCP server, a daemon): ``cleanup(sandbox)``, run before the world deletes or renews
    # its namespaces, also after a failed check. Must not fail when there is nothing to stop.
    cleanup: Callable[[Sandbox], None] | None = None
    # What another container namespace of the world (``World.new_netns``) must hold for the
    # plugin to work in it (dhcp: an eth0 on the DHCP server's LAN):
    # ``prepare_netns(sandbox, host_netns_name, netns_name)``.
    prepare_netns: Callable[[Sandbox, str, str], None] | None = None
    # A chained plugin's config keys that make its ADD change something the harness sees
    # (rules, qdiscs, link settings): ``effect(sandbox)``, merged into the config. Without
    # them its ADD must pass prevResult through and change nothing -- unless ``always_acts``.
    effect: Callable[[Sandbox], dict] | None = None
    # The plugin acts on every ADD, whatever its config (firewall: accept rules per address).
    always_acts: bool = False
    # The kernel link kind the plugin creates, or another kernel feature it needs (a key of
    # conformance.kernel.PROBES; ``--needs-kernel`` for a given config): on a kernel
    # without it, the checks that need a working config are not applicable.
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
    # Why an IPAM plugin keeps no state (empty: it keeps leases, as host-local does). The
    # checks of a lease store (a failed ADD leaves no lease, GC releases leases, STATUS
    # reports an exhausted pool) are then not applicable, with this reason.
    stateless: str = ""
    # Why an IPAM plugin's pool and leases are neither in its config nor in ``data_dir``
    # (empty: they are, as host-local's ``ranges`` and lease files): the checks that shape
    # the pool through ``ipam.ranges`` (a full range set makes ADD fail, a one-address pool
    # makes STATUS not ready) or count lease files in the data dir (GC) are then not
    # applicable, with this reason.
    external_store: str = ""
    # The file the config came from when the user gave it (``--config``, conformance/given.py),
    # empty for a built-in profile. The harness then knows no idle form of a chained
    # plugin's config (which keys make it act), so it takes the config as it is.
    given: str = ""

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


def stand_in_nic(sb: Sandbox, host_ns: str, ctr_ns: str = "") -> None:
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
                   sabotage=_drop_interface, interface_keys=("master",), prepare=stand_in_nic,
                   link_kind=link_kind, drop_parent=_drop_master, single_attachment=single_attachment,
                   separate_subnets=True)


def pod_address(sb: Sandbox) -> tuple[str, str]:
    """The pod's IPv4 address (with prefix) and gateway in a chained plugin's prevResult."""
    net = sb.subnet4.rsplit(".", 1)[0]
    return f"{net}.5/24", f"{net}.1"


def _world_mac(sb: Sandbox, n: int) -> str:
    """A locally administered unicast MAC of the world's (from its pod veth's name)."""
    tag = sb.pod_veth[-8:].rjust(8, "0")
    return f"02:{n:02x}:{tag[0:2]}:{tag[2:4]}:{tag[4:6]}:{tag[6:8]}"


def pod_veth(sb: Sandbox, host_ns: str, ctr_ns: str) -> None:
    """The pod a chained plugin's prevResult describes, as bridge or ptp would leave it: a
    veth pair, ``sb.pod_veth`` in the host namespace, ``eth0`` in the container with the
    pod's address, both up. The MACs are the world's own, so renewed namespaces
    (``World.renew_namespaces``) hold the same pod."""
    sh("ip", "link", "add", sb.pod_veth, "address", _world_mac(sb, 1), "type", "veth",
       "peer", "name", "eth0", "address", _world_mac(sb, 2), "netns", ctr_ns, ns=host_ns)
    sh("ip", "link", "set", sb.pod_veth, "up", ns=host_ns)
    sh("ip", "addr", "add", pod_address(sb)[0], "dev", "eth0", ns=ctr_ns)
    sh("ip", "link", "set", "eth0", "up", ns=ctr_ns)


def _chained(plugin_type: str, config: Callable[[Sandbox], dict], effect: Callable[[Sandbox], dict],
             always_acts: bool = False, needs_netns: bool = False,
             sabotage: Callable[..., None] | None = None) -> Profile:
    """A chained plugin behind a veth-based interface plugin (the pod's veth pair)."""
    return Profile(plugin_type, CHAINED, lambda sb: {"type": plugin_type, **config(sb)}, needs_netns=needs_netns,
                   prepare=pod_veth, effect=effect, always_acts=always_acts, sabotage=sabotage)


def _reset_pod_link(world, cid: str, ifname: str) -> None:
    """tuning: the pod's eth0 back to a veth's defaults (MTU 1500, not promiscuous)."""
    sh("ip", "link", "set", ifname, "mtu", "1500", "promisc", "off", ns=world.ctr)


def _drop_host_shaping(world, cid: str, ifname: str) -> None:
    """bandwidth: remove the TBF from the pod's host-side veth (ingress shaping)."""
    sh("tc", "qdisc", "del", "dev", world.sandbox.pod_veth, "root", ns=world.host)


def static_addresses(sb: Sandbox) -> list[dict]:
    """The static profile's addresses: the pod's IPv4 address (``pod_address``) and an IPv6
    one, each with its subnet's first address as gateway."""
    v4, gw4 = pod_address(sb)
    net6 = sb.subnet6.split("/")[0]
    return [{"address": v4, "gateway": gw4}, {"address": f"{net6}5/64", "gateway": f"{net6}1"}]


def static_pod(sb: Sandbox, host_ns: str, ctr_ns: str) -> None:
    """What an interface plugin leaves for static's addresses: the pod's veth pair
    (``pod_veth``: eth0 with the IPv4 address) plus the IPv6 address (no duplicate address
    detection: the world is all ours). static's CHECK looks for them on eth0."""
    pod_veth(sb, host_ns, ctr_ns)
    sh("ip", "addr", "add", static_addresses(sb)[1]["address"], "dev", "eth0", "nodad", ns=ctr_ns)


def _drop_static_address(world, cid: str, ifname: str) -> None:
    """static: remove the IPv4 address from the container's interface."""
    sh("ip", "addr", "del", static_addresses(world.sandbox)[0]["address"], "dev", ifname, ns=world.ctr)


def static_ipam(sb: Sandbox) -> dict:
    """static's ``ipam`` object for a sandbox: ``static_addresses``, a default route, DNS."""
    return {"type": "static", "addresses": static_addresses(sb), "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": [pod_address(sb)[1]], "search": ["example.test"]}}


# static hands every attachment of a config the addresses the config names.
_STATIC_SAME_ADDRESSES = ("static gives every attachment of a config the same addresses (the ones it names), so a "
                          "config serves one attachment at a time: the checks holding several at once expect "
                          "distinct addresses or interfaces (more-plugins.md §5)")
_STATIC_NO_STATE = ("static keeps no state (no leases, nothing to collect, no pool to exhaust): its ADD allocates "
                    "nothing and its GC and STATUS have nothing to look at (more-plugins.md §5)")


def dhcp_world(sb: Sandbox, host_ns: str, ctr_ns: str) -> None:
    """The LAN of a dhcp world (``conformance.dhcp_lan``). In the host namespace: the bridge
    ``sb.bridge`` holding the server's address (.1/24), dnsmasq serving ``sb.subnet4`` on it,
    and the dhcp daemon of the implementation under test (``<cni_path>/dhcp daemon``). Its
    socket, the PID files, the server's leases and our daemon's ``-statedir`` are in
    ``sb.run_dir`` (not ``data_dir``: lease files carry timestamps, which the re-cased-key
    checks would see as a difference). When that daemon is ours, the harness serves the
    config's socket and hands the reference plugin (the differential check) to the
    reference's daemon. In the container: ``eth0`` and ``eth1`` (two attachments of one
    container), each a veth on the bridge with a fixed MAC, up, each holding every pool
    address: the interface plugin would put the leased one there, which nobody knows before
    ADD, and our CHECK looks for it on the interface; the sabotage removes the leased one."""
    sh("ip", "link", "add", sb.bridge, "type", "bridge", ns=host_ns)
    sh("ip", "addr", "add", f"{_net(sb)}.1/24", "dev", sb.bridge, ns=host_ns)
    sh("ip", "link", "set", sb.bridge, "up", ns=host_ns)
    for n, (host_end, ctr_end) in enumerate(((sb.pod_veth, "eth0"), (f"{sb.pod_veth}b", "eth1"))):
        sh("ip", "link", "add", host_end, "address", _world_mac(sb, 3 + 2 * n), "type", "veth",
           "peer", "name", ctr_end, "address", _world_mac(sb, 4 + 2 * n), "netns", ctr_ns, ns=host_ns)
        _lan_port(sb, host_ns, host_end, ctr_ns, ctr_end)
    lan.start_dnsmasq(host_ns, sb.bridge, _net(sb), sb.run_dir)
    lan.start_daemon(os.path.join(sb.cni_path, "dhcp"), host_ns, sb.run_dir, os.path.join(sb.run_dir, "state"),
                     dispatch=True)


def _net(sb: Sandbox) -> str:
    """The world's IPv4 /24 without its last octet."""
    return sb.subnet4.rsplit(".", 1)[0]


def _lan_port(sb: Sandbox, host_ns: str, host_end: str, ctr_ns: str, ctr_end: str) -> None:
    """A veth of the LAN: the host end on the bridge, the container end holding the pool."""
    sh("ip", "link", "set", host_end, "master", sb.bridge, "up", ns=host_ns)
    batch = "".join(f"address add {a}/24 dev {ctr_end}\n" for a in lan.pool(_net(sb)))
    subprocess.run(["ip", "netns", "exec", ctr_ns, "ip", "-batch", "-"], input=batch.encode(), check=True,
                   capture_output=True)
    sh("ip", "link", "set", ctr_end, "up", ns=ctr_ns)


def dhcp_world_netns(sb: Sandbox, host_ns: str, netns: str) -> None:
    """Another container of a dhcp world: its eth0 on the LAN (``dhcp_world``)."""
    host_end = f"cnw{netns[-8:]}"
    sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns, ns=host_ns)
    _lan_port(sb, host_ns, host_end, netns, "eth0")


def _stop_dhcp_lan(sb: Sandbox) -> None:
    lan.stop(sb.run_dir)


def _drop_dhcp_address(world, cid: str, ifname: str) -> None:
    """dhcp: remove the attachment's leased address (dnsmasq's lease of its client ID)
    from the container's interface, as if it had been taken away behind the plugin's back."""
    address = lan.leased_address(world.sandbox.run_dir, cid, ifname)
    assert address, f"dnsmasq holds no lease of {cid}/{ifname}"
    sh("ip", "addr", "del", f"{address}/24", "dev", ifname, ns=world.ctr)


def dhcp_ipam(sb: Sandbox) -> dict:
    """dhcp's ``ipam`` object for a sandbox: the world's daemon socket."""
    return {"type": "dhcp", "daemonSocketPath": lan.socket_path(sb.run_dir)}


_DHCP_SERVER_POOL = ("dhcp's address pool is the DHCP server's and its leases are the daemon's, neither in "
                     "ipam.ranges nor in a data dir: the checks that fill or shrink the pool through ipam.ranges or "
                     "count lease files do not apply (our GC: tests/test_dhcp.py::"
                     "test_gc_releases_leases_not_in_valid_attachments)")


# Host ports the checks map (the leak checker looks for rules naming them).
PORT_MAPPINGS = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
                 {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}]
# Rates and bursts (bits/s, bits) the bandwidth profile shapes with: a TBF and an IFB.
SHAPING = {"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 8_000_000, "egressBurst": 800_000}


# The kernel keeps one VLAN link per (parent, VLAN ID) across all namespaces, so a second
# container on the same vlan config fails "file exists" with any implementation.
_ONE_VLAN_LINK = ("the kernel allows one VLAN link per (master, vlanId) in all namespaces, so a vlan "
                  "config serves one attachment at a time (more-plugins.md §3; reference issue #243)")


PROFILES: dict[str, Profile] = {
    "host-local": Profile("host-local", IPAM, lambda sb: {"type": "host-local", "ipam": host_local_ipam(sb)},
                          needs_netns=False, sabotage=_drop_leases),
    "static": Profile("static", IPAM, lambda sb: {"type": "static", "ipam": static_ipam(sb)}, needs_netns=False,
                      sabotage=_drop_static_address, prepare=static_pod, single_attachment=_STATIC_SAME_ADDRESSES,
                      stateless=_STATIC_NO_STATE),
    # The world runs dnsmasq and the implementation's own daemon (dhcp_world).
    "dhcp": Profile("dhcp", IPAM, lambda sb: {"type": "dhcp", "ipam": dhcp_ipam(sb)}, sabotage=_drop_dhcp_address,
                    prepare=dhcp_world, cleanup=_stop_dhcp_lan, prepare_netns=dhcp_world_netns,
                    external_store=_DHCP_SERVER_POOL),
    "loopback": Profile("loopback", LOOPBACK, lambda sb: {"type": "loopback"}, ifname="lo", sabotage=_lo_down),
    "bridge": Profile("bridge", INTERFACE,
                      lambda sb: {"type": "bridge", "bridge": sb.bridge, "isGateway": True,
                                  "ipam": host_local_ipam(sb)},
                      residue_links=lambda sb: {sb.bridge}, sabotage=_drop_interface, interface_keys=("bridge",)),
    "macvlan": _master_profile("macvlan", {"mode": "bridge"}, "macvlan"),
    "ipvlan": _master_profile("ipvlan", {"mode": "l2"}, "ipvlan"),
    "vlan": _master_profile("vlan", {"vlanId": 100}, "vlan", _ONE_VLAN_LINK),
    "portmap": _chained("portmap", lambda sb: {"capabilities": {"portMappings": True}},
                        lambda sb: {"runtimeConfig": {"portMappings": PORT_MAPPINGS}}),
    # dataDir in the world, where the leak checker sees a backup file left behind.
    "tuning": _chained("tuning", lambda sb: {"dataDir": f"{sb.data_dir}/tuning"},
                       lambda sb: {"mtu": 1400, "promisc": True}, sabotage=_reset_pod_link),
    "bandwidth": _chained("bandwidth", lambda sb: {}, lambda sb: dict(SHAPING), sabotage=_drop_host_shaping),
    # The backend each implementation picks by itself (ours nftables, the reference iptables).
    "firewall": _chained("firewall", lambda sb: {}, lambda sb: {}, always_acts=True),
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
