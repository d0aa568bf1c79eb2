"""Single-plugin scenarios of the benchmark: plugin processes run directly, no runtime.

* host-local ADD+DEL: one dual-stack attachment, each implementation with its own store
  that already holds 20 leases (as on a host with a few pods);
* loopback ADD+DEL, in a throwaway namespace;
* bridge+host-local ADD+DEL with ipMasq: bridge execs host-local itself;
* macvlan+host-local ADD+DEL: a macvlan link on a stand-in NIC (a veth end in the host
  namespace), born in the container namespace; macvlan execs host-local itself;
* static ADD, CHECK and DEL, one row per call: a dual-stack config, in a throwaway host
  namespace, for a pod (a veth pair, eth0 in the container namespace) holding the two
  addresses, which our CHECK reads back from the kernel (the reference's compares
  prevResult only);
* bridge+dhcp ADD+DEL (``--only dhcp``; ~1 min: the reference's ADD takes ~1.8 s): each
  implementation in its own host namespace with its own LAN (a bridge holding .1/24,
  dnsmasq serving it, its own dhcp daemon: ``<bin_dir>/dhcp daemon``), bridge execs dhcp,
  which asks that daemon; the container's eth0 gets its lease by a real DHCP exchange;
* tuning, bandwidth, firewall ADD+DEL (chained): each behind a pod a veth-based interface
  plugin would have made (a veth pair, one end in the container namespace with an address),
  prevResult in both verbs as libcni sends it; tuning sets an MTU, promiscuity and a sysctl,
  bandwidth shapes both directions with containerd's payload (capability, bursts
  4294967295), firewall runs its default backend (ours nftables, the reference iptables).

host-local, bridge, macvlan and the chained plugins are started in a throwaway host namespace of their own, from a
thread parked there (:class:`~conformance.bench.proc.NetnsThread`); loopback touches only
the throwaway namespace it is given as CNI_NETNS. The namespaces are named with the
caller's prefix; the scenario's ``teardown`` (and the caller's cleanup) removes them.
:func:`measure` runs one scenario for every implementation in turn, the order rotated
every run, and gives its row of the report: medians and peak RSS.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Callable

from conformance import dhcp_lan
from conformance.bench.proc import NETNS_DIR, RssMeter, Sample, exec_plugin, release_netns_threads, rotated

# IPAM plugins never enter the namespace, but ADD requires CNI_NETNS to be set.
NETNS_PLACEHOLDER = os.path.join(NETNS_DIR, "bench-unused")


class Scenario:
    """One measured operation: ``run(bin_dir, sample, rss)`` does it once; ``key`` is its
    name for ``--only``."""

    def __init__(self, name: str, plugins: list[str], run: Callable[[str, Sample, RssMeter | None], None],
                 setup: Callable[[], None] = lambda: None, teardown: Callable[[], None] = lambda: None,
                 key: str = "") -> None:
        self.key = key or plugins[0]
        self.name = name
        self.plugins = plugins
        self.run = run
        self.setup = setup
        self.teardown = teardown


def _namespaces(host: str, ctr: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """A scenario's setup and teardown of its host and container namespaces (what the
    plugins made in them goes with them; the host's parked thread is released first)."""
    def setup() -> None:
        for n in (host, ctr):
            subprocess.run(["ip", "netns", "add", n], check=True)

    def teardown() -> None:
        release_netns_threads(os.path.join(NETNS_DIR, host))
        for n in (ctr, host):
            subprocess.run(["ip", "netns", "delete", n], check=False)

    return setup, teardown


def host_local_scenario(tmp: str, prefix: str = "") -> Scenario:
    """host-local ADD then DEL of one attachment (dual stack), each implementation with its
    own store that already holds 20 leases, as on a host with a few pods. With ``prefix``,
    the plugin runs in a throwaway host namespace (``prefix``hl) like the others, although
    it touches no network state."""
    confs: dict[str, dict] = {}
    ns = f"{prefix}hl" if prefix else ""
    host = {"host_netns": os.path.join(NETNS_DIR, ns), "ns_thread": True} if ns else {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "host-local")
        if bin_dir not in confs:
            confs[bin_dir] = c = {
                "cniVersion": "1.0.0", "name": "bench-hl", "type": "host-local",
                "ipam": {"type": "host-local", "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp),
                         "ranges": [[{"subnet": "10.77.0.0/16"}], [{"subnet": "fd00:77::/64"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}
            for i in range(20):  # pre-existing leases
                exec_plugin(b, "ADD", c, Sample(), None, CNI_CONTAINERID=f"pod{i}", CNI_NETNS=NETNS_PLACEHOLDER,
                            **host)
        exec_plugin(b, "ADD", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER, **host)
        exec_plugin(b, "DEL", confs[bin_dir], s, rss, CNI_NETNS=NETNS_PLACEHOLDER, **host)

    return Scenario("host-local ADD+DEL (dual stack, 20 leases in the store)", ["host-local"], run, key="host-local",
                    setup=lambda: ns and subprocess.run(["ip", "netns", "add", ns], check=True),
                    teardown=lambda: ns and (release_netns_threads(os.path.join(NETNS_DIR, ns)),
                                             subprocess.run(["ip", "netns", "delete", ns], check=False)))


def bridge_scenario(tmp: str, prefix: str = "", backend: str | None = None) -> Scenario:
    """bridge + host-local ADD then DEL with ipMasq (``backend``, default each implementation's
    own), plugins running in a throwaway host namespace (named ``prefix``... when given)."""
    tag = uuid.uuid4().hex[:6]
    host, ctr = (f"{prefix}bh", f"{prefix}bc") if prefix else (f"bench-h-{tag}", f"bench-c-{tag}")
    host_path, ctr_path = os.path.join(NETNS_DIR, host), os.path.join(NETNS_DIR, ctr)
    confs: dict[str, dict] = {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "bridge")
        if bin_dir not in confs:
            n = len(confs)  # its own bridge and subnet per implementation
            confs[bin_dir] = {"cniVersion": "1.0.0", "name": f"bench-br{n}", "type": "bridge", "bridge": f"bbr{n}{tag}",
                              "isGateway": True, "ipMasq": True,
                              "ipam": {"type": "host-local", "subnet": f"10.124.{n}.0/24",
                                       "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp)}}
            if backend:  # the reference 1.1.1 ignores it
                confs[bin_dir]["ipMasqBackend"] = backend
        for verb in ("ADD", "DEL"):
            exec_plugin(b, verb, confs[bin_dir], s, rss, host_netns=host_path, ns_thread=True, CNI_NETNS=ctr_path)

    setup, teardown = _namespaces(host, ctr)
    return Scenario("bridge+host-local ipMasq ADD+DEL", ["bridge", "host-local"], run, setup, teardown, key="bridge")


def macvlan_scenario(tmp: str, prefix: str = "") -> Scenario:
    """macvlan + host-local ADD then DEL (bridge mode, one IPv4 lease), plugins running in a
    throwaway host namespace (named ``prefix``... when given) whose stand-in NIC, one end of
    a veth pair, is the master; each implementation gets its own master, subnet and store."""
    tag = uuid.uuid4().hex[:6]
    host, ctr = (f"{prefix}mh", f"{prefix}mc") if prefix else (f"bench-mh-{tag}", f"bench-mc-{tag}")
    host_path, ctr_path = os.path.join(NETNS_DIR, host), os.path.join(NETNS_DIR, ctr)
    confs: dict[str, dict] = {}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "macvlan")
        if bin_dir not in confs:
            n = len(confs)
            master = f"bnic{n}{tag}"
            # The NIC stand-in: both veth ends up, so the master has carrier as a real NIC would.
            subprocess.run(["ip", "-n", host, "link", "add", master, "type", "veth", "peer", "name", f"{master}p"],
                           check=True)
            for name in (master, f"{master}p"):
                subprocess.run(["ip", "-n", host, "link", "set", name, "up"], check=True)
            confs[bin_dir] = {"cniVersion": "1.0.0", "name": f"bench-mv{n}", "type": "macvlan", "master": master,
                              "mode": "bridge",
                              "ipam": {"type": "host-local", "subnet": f"10.125.{n}.0/24",
                                       "dataDir": tempfile.mkdtemp(prefix="store-", dir=tmp),
                                       "routes": [{"dst": "0.0.0.0/0"}]}}
        for verb in ("ADD", "DEL"):
            exec_plugin(b, verb, confs[bin_dir], s, rss, host_netns=host_path, ns_thread=True, CNI_NETNS=ctr_path)

    setup, teardown = _namespaces(host, ctr)  # the masters (and any macvlan on them) go with them
    return Scenario("macvlan+host-local ADD+DEL", ["macvlan", "host-local"], run, setup, teardown, key="macvlan")


# What makes each chained plugin act (besides the pod in prevResult), per implementation n.
def _chained_keys(kind: str, n: int, tmp: str) -> dict:
    if kind == "tuning":
        return {"mtu": 1400, "promisc": True, "sysctl": {f"net.ipv4.conf.eth{n}.arp_filter": "1"},
                "dataDir": tempfile.mkdtemp(prefix="tuning-", dir=tmp)}
    if kind == "bandwidth":  # what containerd sends for the kubernetes.io/*-bandwidth annotations
        return {"capabilities": {"bandwidth": True},
                "runtimeConfig": {"bandwidth": {"IngressRate": 16_000_000, "IngressBurst": 4294967295,
                                                "EgressRate": 20_000_000, "EgressBurst": 4294967295}}}
    return {}  # firewall: each implementation's default backend


CHAINED = ("tuning", "bandwidth", "firewall")


def chained_scenario(kind: str, tmp: str, prefix: str = "") -> Scenario:
    """A chained plugin's ADD then DEL (``kind``: tuning, bandwidth or firewall) for a pod of
    its own per implementation: a veth pair (``eth<n>`` in the container namespace, with
    10.126.<n>.5/24) that prevResult describes; plugins running in a throwaway host namespace."""
    tag = uuid.uuid4().hex[:6]
    short = kind[:2]
    host, ctr = (f"{prefix}{short}h", f"{prefix}{short}c") if prefix else (f"bench-{short}h-{tag}", f"bench-{short}c-{tag}")
    host_path, ctr_path = os.path.join(NETNS_DIR, host), os.path.join(NETNS_DIR, ctr)
    confs: dict[str, dict] = {}

    def mac(ns: str, link: str) -> str:
        out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", link], capture_output=True, text=True,
                             check=True).stdout
        return json.loads(out)[0]["address"]

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, kind)
        if bin_dir not in confs:
            n = len(confs)
            veth = f"bpv{n}{tag}"
            subprocess.run(["ip", "-n", host, "link", "add", veth, "type", "veth", "peer", "name", f"eth{n}",
                            "netns", ctr], check=True)
            subprocess.run(["ip", "-n", ctr, "addr", "add", f"10.126.{n}.5/24", "dev", f"eth{n}"], check=True)
            for ns, link in ((host, veth), (ctr, f"eth{n}")):
                subprocess.run(["ip", "-n", ns, "link", "set", link, "up"], check=True)
            prev = {"cniVersion": "1.0.0",
                    "interfaces": [{"name": veth, "mac": mac(host, veth)},
                                   {"name": f"eth{n}", "mac": mac(ctr, f"eth{n}"), "sandbox": ctr_path}],
                    "ips": [{"address": f"10.126.{n}.5/24", "gateway": f"10.126.{n}.1", "interface": 1}], "dns": {}}
            confs[bin_dir] = {"cniVersion": "1.0.0", "name": f"bench-{kind}{n}", "type": kind,
                              **_chained_keys(kind, n, tmp), "prevResult": prev}
        ifname = confs[bin_dir]["prevResult"]["interfaces"][1]["name"]
        for verb in ("ADD", "DEL"):
            exec_plugin(b, verb, confs[bin_dir], s, rss, host_netns=host_path, ns_thread=True, CNI_NETNS=ctr_path,
                        CNI_IFNAME=ifname)
        if kind == "bandwidth":
            # Untimed: the reference's DEL leaves its qdiscs on the veth (the interface plugin's
            # DEL, deleting the veth, would take them), and its next ADD would fail on them.
            veth = confs[bin_dir]["prevResult"]["interfaces"][0]["name"]
            for qdisc in ("root", "ingress"):
                subprocess.run(["tc", "-n", host, "qdisc", "del", "dev", veth, qdisc], capture_output=True, check=False)

    setup, teardown = _namespaces(host, ctr)  # the pods' veths, IFBs and rules go with them
    names = {"tuning": "tuning ADD+DEL (MTU, promisc, a sysctl)",
             "bandwidth": "bandwidth ADD+DEL (both directions, containerd's payload)",
             "firewall": "firewall ADD+DEL (default backend)"}
    return Scenario(names[kind], [kind], run, setup, teardown, key=kind)


def dhcp_scenario(tmp: str, prefix: str = "") -> Scenario:
    """bridge + dhcp ADD then DEL, each implementation (n) with a LAN of its own in host
    namespace ``prefix``dh<n>: the bridge the config names (made here, holding
    10.128.<n>.1/24), dnsmasq serving 10.128.<n>.0/24 on it (``--no-ping``), and that
    implementation's daemon (``<bin_dir>/dhcp daemon``, socket and state in a temporary
    directory), all made on the implementation's first run; the container namespace is
    ``prefix``dc<n>. ``teardown`` stops the daemons and dnsmasqs by PID, then deletes the
    namespaces."""
    tag = uuid.uuid4().hex[:6]
    base = prefix or f"bench-{tag}-"
    confs: dict[str, dict] = {}
    lans: list[tuple[str, str, str]] = []  # (host namespace, container namespace, run dir)

    def lan(bin_dir: str) -> dict:
        n = len(confs)
        host, ctr = f"{base}dh{n}", f"{base}dc{n}"
        run_dir = tempfile.mkdtemp(prefix="dhcp-", dir=tmp)
        lans.append((host, ctr, run_dir))
        for ns in (host, ctr):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        bridge = f"bdh{n}{tag}"
        for argv in (["link", "add", bridge, "type", "bridge"], ["addr", "add", f"10.128.{n}.1/24", "dev", bridge],
                     ["link", "set", bridge, "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", host, *argv], check=True)
        dhcp_lan.start_dnsmasq(host, bridge, f"10.128.{n}", run_dir)
        sock = dhcp_lan.start_daemon(os.path.join(bin_dir, "dhcp"), host, run_dir, os.path.join(run_dir, "state"))
        return {"cniVersion": "1.0.0", "name": f"bench-dhcp{n}", "type": "bridge", "bridge": bridge,
                "ipam": {"type": "dhcp", "daemonSocketPath": sock}}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        if bin_dir not in confs:
            confs[bin_dir] = lan(bin_dir)
        n = list(confs).index(bin_dir)
        host_path, ctr_path = os.path.join(NETNS_DIR, lans[n][0]), os.path.join(NETNS_DIR, lans[n][1])
        for verb in ("ADD", "DEL"):
            exec_plugin(os.path.join(bin_dir, "bridge"), verb, confs[bin_dir], s, rss, host_netns=host_path,
                        ns_thread=True, CNI_NETNS=ctr_path)

    def teardown() -> None:
        for host, ctr, run_dir in lans:
            dhcp_lan.stop(run_dir)  # the daemon (which may be parked in the namespaces) first
            release_netns_threads(os.path.join(NETNS_DIR, host))
            for ns in (ctr, host):
                subprocess.run(["ip", "netns", "delete", ns], check=False)
        lans.clear()
        confs.clear()

    return Scenario("bridge+dhcp ADD+DEL (dnsmasq, daemon running)", ["bridge", "dhcp"], run, teardown=teardown,
                    key="dhcp")


STATIC_VERBS = ("ADD", "CHECK", "DEL")


def static_scenario(verb: str, prefix: str = "") -> Scenario:
    """One static call (``verb``: ADD, CHECK or DEL) per run, plugins running in a throwaway
    host namespace; the container namespace's eth0 (one end of a veth pair) holds the two
    addresses, so CHECK, whose prevResult is what ADD answers, passes for both
    implementations. static keeps no state: every implementation shares the pod."""
    tag = uuid.uuid4().hex[:6]
    v = verb[0].lower()
    host, ctr = (f"{prefix}s{v}h", f"{prefix}s{v}c") if prefix else (f"bench-s{v}h-{tag}", f"bench-s{v}c-{tag}")
    host_path, ctr_path = os.path.join(NETNS_DIR, host), os.path.join(NETNS_DIR, ctr)
    addrs = [("10.127.0.5/24", "10.127.0.1"), ("fd00:127::5/64", "fd00:127::1")]
    ips = [{"address": a, "gateway": g} for a, g in addrs]
    conf = {"cniVersion": "1.0.0", "name": "bench-static", "type": "static",
            "ipam": {"type": "static", "addresses": ips, "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                     "dns": {"nameservers": ["10.127.0.1"]}}}
    if verb == "CHECK":  # the interface plugin's result, as libcni passes it
        conf = dict(conf, prevResult={"cniVersion": "1.0.0", "ips": ips, "dns": {}})

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        exec_plugin(os.path.join(bin_dir, "static"), verb, conf, s, rss, host_netns=host_path, ns_thread=True,
                    CNI_NETNS=ctr_path)

    def setup() -> None:
        for n in (host, ctr):
            subprocess.run(["ip", "netns", "add", n], check=True)
        subprocess.run(["ip", "-n", host, "link", "add", f"bsv{tag}", "type", "veth", "peer", "name", "eth0",
                        "netns", ctr], check=True)
        for a, _ in addrs:
            subprocess.run(["ip", "-n", ctr, "addr", "add", a, "dev", "eth0", *(["nodad"] if ":" in a else [])],
                           check=True)
        subprocess.run(["ip", "-n", ctr, "link", "set", "eth0", "up"], check=True)

    teardown = _namespaces(host, ctr)[1]
    what = {"ADD": "ADD (dual stack)", "CHECK": "CHECK (reads eth0's addresses)", "DEL": "DEL"}[verb]
    return Scenario(f"static {what}, per call", ["static"], run, setup, teardown, key="static")


def loopback_scenario(prefix: str = "") -> Scenario:
    """loopback ADD then DEL in a throwaway namespace (named ``prefix``lo when given)."""
    ns = f"{prefix}lo" if prefix else f"bench-{uuid.uuid4().hex[:8]}"
    path = os.path.join(NETNS_DIR, ns)
    conf = {"cniVersion": "1.0.0", "name": "bench-lo", "type": "loopback"}

    def run(bin_dir: str, s: Sample, rss: RssMeter | None) -> None:
        b = os.path.join(bin_dir, "loopback")
        exec_plugin(b, "ADD", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")
        exec_plugin(b, "DEL", conf, s, rss, CNI_NETNS=path, CNI_IFNAME="lo")

    return Scenario("loopback ADD+DEL", ["loopback"], run, key="loopback",
                    setup=lambda: subprocess.run(["ip", "netns", "add", ns], check=True),
                    teardown=lambda: subprocess.run(["ip", "netns", "delete", ns], check=False))


def measure(sc: Scenario, impls: list[tuple[str, str]], runs: int, meter: RssMeter, warmup: int = 3) -> dict:
    """Run ``sc`` for every (label, bin_dir) of ``impls`` in turn, ``runs`` times (after
    ``warmup`` each), then a few runs for peak RSS (measured separately: the wrapper would
    add to the times); return the row: medians in ms and peak RSS per label."""
    times: dict[str, list[float]] = {label: [] for label, _ in impls}
    rss = {label: 0 for label, _ in impls}
    sc.setup()
    try:
        for i in range(warmup + runs):
            for label, d in rotated(impls, i):
                s = Sample()
                sc.run(d, s, None)
                if i >= warmup:
                    times[label].append(s.seconds)
        for i in range(3):
            for label, d in rotated(impls, i):
                s = Sample()
                sc.run(d, s, meter)
                rss[label] = max(rss[label], s.max_rss_kib)
    finally:
        sc.teardown()
    return {"key": sc.key, "scenario": sc.name, "unit": "ms", "runs": runs,
            "values": {k: statistics.median(v) * 1000 for k, v in times.items()}, "rss_kib": rss}
