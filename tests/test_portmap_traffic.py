"""portmap chained after bridge + host-local, with real traffic.

Every test builds its own world: a throwaway "host" namespace (where every plugin process
runs, as a runtime living there would run it, with forwarding on for both families), an
"outside" namespace joined to the host by a veth pair on its own subnet (with a default
route back to the host), and container namespaces attached to a bridge by the chain
bridge (host-local) -> portmap, exactly as libcni runs a conflist: ADD in order with each
plugin's result as the next one's ``prevResult``, DEL in reverse order, ``runtimeConfig``
with the ``portMappings`` capability. A small python3 server in a container answers TCP
with its name and echoes UDP prefixed with its name; clients connect with 2 s timeouts.

The bridge never masquerades (ipMasq false): whatever reaches the container through a host
port does so because of portmap alone.

Implementations: the Go reference plugins (Debian's 1.1.1, iptables only) and ours with
each firewall backend (``"backend": "nftables" | "iptables"``; skipped until
dist/bin/portmap exists).
"""

from __future__ import annotations

import difflib
import itertools
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import pytest

from tests.helpers import OUR_BIN, Netns, ip_json, run_plugin, sh

IMPLS = ["reference", "ours-nftables", "ours-iptables"]
CNI_VERSION = "1.0.0"
CTR_PORT = 8080        # where the container's server listens (never a host port)
TIMEOUT = 2.0          # client connect / receive timeout

# One /24 (and /64) per topology, distinct within a run.
_octets = itertools.count(random.randrange(256))


@dataclass(frozen=True)
class Impl:
    name: str
    bin_dir: str
    backend: str | None  # our portmap's "backend" key; None for the reference (no such key)


@pytest.fixture(params=IMPLS)
def impl(request) -> Impl:
    if request.param == "reference":
        return Impl("reference", request.getfixturevalue("ref_bin"), None)
    if not os.path.exists(os.path.join(OUR_BIN, "portmap")):
        pytest.skip("dist/bin/portmap not built yet")
    return Impl(request.param, request.getfixturevalue("our_bin"), request.param.split("-", 1)[1])


# -- servers and clients ------------------------------------------------------------------

SERVER = r"""
import select, socket, sys
name, port = sys.argv[1].encode(), int(sys.argv[2])
def sock(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack: v4 arrives mapped
    s.bind(("::", port))
    return s
tcp, udp = sock(socket.SOCK_STREAM), sock(socket.SOCK_DGRAM)
tcp.listen(16)
print("ready", flush=True)
while True:
    for s in select.select([tcp, udp], [], [])[0]:
        try:
            if s is tcp:
                c, _ = tcp.accept()
                with c:
                    c.sendall(name)
            else:
                data, peer = udp.recvfrom(2048)
                udp.sendto(name + b" " + data, peer)
        except OSError:  # a client that went away must not end the server
            pass
"""

CLIENT = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        data = b""
        while True:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.connect((host, port))  # connected: an ICMP port unreachable is ECONNREFUSED
        s.send(b"ping")
        data = s.recv(2048)
    print(data.decode(errors="replace"))
except Exception as e:
    print(f"ERR {type(e).__name__}: {e}")
"""


def reach(ns: str, addr: str, port: int, proto: str = "tcp") -> str:
    """What a client in namespace ``ns`` gets from addr:port: the reply, or ``ERR ...``."""
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-IS", "-c", CLIENT, proto, addr, str(port),
                        str(TIMEOUT)], capture_output=True, text=True, timeout=TIMEOUT + 10)
    out = p.stdout.strip()
    return out if p.returncode == 0 and out else f"ERR client exit {p.returncode}: {p.stderr.strip()}"


# -- the world ------------------------------------------------------------------------------

class Topology:
    """A host namespace with a bridge network, an outside namespace and containers.

    Addresses (k = this topology's octet):
      containers  10.180.k.0/24, fd00:180:k::/64 (gateway .1 / ::1 on the bridge)
      host<->outside veth  10.181.k.0/24, fd00:181:k::/64: host .1 / ::1 (``host_ip``), outside .2 / ::2
    ``close()`` removes everything (servers, namespaces with all they hold, the IPAM dir)."""

    def __init__(self, impl: Impl, *, dual: bool = False, hairpin: bool = False,
                 br_netfilter: bool | None = None) -> None:
        self.impl = impl
        self.dual = dual
        self.hairpin = hairpin
        self.br_netfilter = br_netfilter
        k = next(_octets) % 256
        self.subnet, self.subnet6 = f"10.180.{k}.0/24", f"fd00:180:{k:x}::/64"
        self.gw, self.gw6 = f"10.180.{k}.1", f"fd00:180:{k:x}::1"
        self.host_ip, self.host_ip6 = f"10.181.{k}.1", f"fd00:181:{k:x}::1"
        self.host_ip_extra = f"10.181.{k}.11"
        self.outside_ip, self.outside_ip6 = f"10.181.{k}.2", f"fd00:181:{k:x}::2"
        self.net = f"pmnet-{uuid.uuid4().hex[:8]}"
        self.bridge = f"cnpb{uuid.uuid4().hex[:8]}"
        self.namespaces: list[Netns] = []
        self.servers: list[subprocess.Popen] = []
        self.tmp = tempfile.mkdtemp(prefix="cnipm-")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _ns(self, prefix: str) -> Netns:
        n = Netns(prefix)
        self.namespaces.append(n)
        n.run("ip", "link", "set", "lo", "up")
        return n

    def _build(self) -> None:
        self.host = self._ns("cnph")
        # What a container host has: routing on for both families.
        self.host.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        if self.br_netfilter is not None:
            # Whether bridged IP traffic passes the IP hooks (br_netfilter; per namespace).
            # None leaves the machine's default (here: built in, on in a new namespace).
            if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
                v = int(self.br_netfilter)
                self.host.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={v}",
                              f"net.bridge.bridge-nf-call-ip6tables={v}")
            elif self.br_netfilter:
                pytest.skip("br_netfilter is not loaded on this machine")
        self.outside = self._ns("cnpo")
        h, o = self.host, self.outside
        h.run("ip", "link", "add", "vout", "type", "veth", "peer", "name", "vin", "netns", o.name)
        h.run("ip", "addr", "add", f"{self.host_ip}/24", "dev", "vout")
        h.run("ip", "-6", "addr", "add", f"{self.host_ip6}/64", "dev", "vout", "nodad")
        h.run("ip", "link", "set", "vout", "up")
        o.run("ip", "addr", "add", f"{self.outside_ip}/24", "dev", "vin")
        o.run("ip", "-6", "addr", "add", f"{self.outside_ip6}/64", "dev", "vin", "nodad")
        o.run("ip", "link", "set", "vin", "up")
        o.run("ip", "route", "add", "default", "via", self.host_ip)
        o.run("ip", "-6", "route", "add", "default", "via", self.host_ip6)

    def container(self) -> Netns:
        return self._ns("cnpc")

    def close(self) -> None:
        for s in self.servers:
            if s.poll() is None:
                s.kill()
            s.wait()
            for f in (s.stdout, s.stderr):
                if f:
                    f.close()
        for n in reversed(self.namespaces):
            n.delete()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- configs -------------------------------------------------------------------------
    def bridge_conf(self) -> dict:
        # isGateway plus default routes from the IPAM, as runtimes configure it: replies to
        # the outside's (un-masqueraded) addresses leave the container through the bridge.
        ranges = [[{"subnet": self.subnet}]]
        routes = [{"dst": "0.0.0.0/0"}]
        if self.dual:
            ranges.append([{"subnet": self.subnet6}])
            routes.append({"dst": "::/0"})
        conf = {"cniVersion": CNI_VERSION, "name": self.net, "type": "bridge", "bridge": self.bridge,
                "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": ranges, "routes": routes,
                         "dataDir": os.path.join(self.tmp, "ipam")}}
        if self.hairpin:
            conf["hairpinMode"] = True
        return conf

    def portmap_conf(self, mappings: list[dict], prev: dict | None = None, **extra) -> dict:
        conf = {"cniVersion": CNI_VERSION, "name": self.net, "type": "portmap",
                "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": mappings}}
        if self.impl.backend:
            conf["backend"] = self.impl.backend
        if prev is not None:
            conf["prevResult"] = prev
        conf.update(extra)
        return conf

    # -- the chain -----------------------------------------------------------------------
    def _run(self, plugin: str, verb: str, conf: dict, ctr: Netns, cid: str):
        return run_plugin(os.path.join(self.impl.bin_dir, plugin), verb, conf, containerid=cid, netns=ctr.path,
                          ifname="eth0", path=self.impl.bin_dir, in_netns=self.host.name, timeout=30)

    def add(self, ctr: Netns, cid: str, mappings: list[dict], **pm_extra) -> dict:
        """bridge ADD then portmap ADD (prevResult = bridge's result); portmap's result."""
        out = self._run("bridge", "ADD", self.bridge_conf(), ctr, cid)
        assert out.ok, f"bridge ADD failed: {out}"
        pm = self._run("portmap", "ADD", self.portmap_conf(mappings, out.doc, **pm_extra), ctr, cid)
        assert pm.ok, f"portmap ADD failed: {pm}"
        assert pm.doc["ips"] == out.doc["ips"], f"portmap changed the result: {pm.doc} vs {out.doc}"
        if self.dual:
            self.wait_v6_ready()
        return pm.doc

    def del_portmap(self, ctr: Netns, cid: str, mappings: list[dict], **pm_extra) -> None:
        out = self._run("portmap", "DEL", self.portmap_conf(mappings, **pm_extra), ctr, cid)
        assert out.ok and out.stdout == b"", f"portmap DEL failed: {out}"

    def del_bridge(self, ctr: Netns, cid: str) -> None:
        out = self._run("bridge", "DEL", self.bridge_conf(), ctr, cid)
        assert out.ok and out.stdout == b"", f"bridge DEL failed: {out}"

    def delete(self, ctr: Netns, cid: str, mappings: list[dict], **pm_extra) -> None:
        """The chain's DEL, in reverse order."""
        self.del_portmap(ctr, cid, mappings, **pm_extra)
        self.del_bridge(ctr, cid)

    def wait_v6_ready(self, timeout: float = 10.0) -> None:
        """Wait until the IPv6 addresses the traffic needs have passed DAD (~1-2 s after a
        link comes up; the plugins return before that): every global address, and in the
        host every address of its routed links (the bridge and ``vout``, link-local
        included: the kernel sends no neighbour solicitation for a forwarded packet while
        the outgoing link has no usable link-local address, so the first connections to a
        container would time out). Bridge ports' link-locals carry nothing: not awaited."""
        deadline = time.monotonic() + timeout
        while True:
            ports = {link["ifname"] for link in ip_json("link", "show", "master", self.bridge, ns=self.host.name)}
            pending = [f"{n.name}/{link['ifname']}/{a['local']}"
                       for n in self.namespaces for link in ip_json("-6", "addr", "show", "tentative", ns=n.name)
                       for a in link.get("addr_info", [])
                       if a.get("local") and (a.get("scope") == "global"
                                              or (n is self.host and link["ifname"] not in ports))]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"IPv6 addresses still tentative: {pending}")
            time.sleep(0.05)

    # -- servers and looking -----------------------------------------------------------------
    def serve(self, ctr: Netns, token: str, port: int = CTR_PORT) -> None:
        """Start the token/echo server in ``ctr`` (killed by close())."""
        p = subprocess.Popen(["ip", "netns", "exec", ctr.name, sys.executable, "-IS", "-c", SERVER, token, str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().strip() if ready else ""
        assert line == "ready", f"server in {ctr.name} did not start: {line!r} (exit {p.poll()})"

    def rules(self) -> str:
        """The host namespace's whole firewall: nftables and both iptables families."""
        return "\n".join(sh(*cmd, ns=self.host.name) for cmd in
                         (("nft", "list", "ruleset"), ("iptables-save",), ("ip6tables-save",)))

    def diagnostics(self, ctr: Netns | None = None) -> str:
        parts = [self.rules()]
        for f in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", f"net/ipv4/conf/{self.bridge}/route_localnet"):
            parts.append(f"{f} = {sh('cat', '/proc/sys/' + f, ns=self.host.name, check=False).strip()}")
        parts.append(sh("ip", "addr", ns=self.host.name))
        if ctr is not None:
            parts.append(sh("ip", "addr", ns=ctr.name) + sh("ip", "route", ns=ctr.name)
                         + sh("ip", "-6", "route", ns=ctr.name))
        return "\n".join(parts)

    def assert_reaches(self, ns: Netns, addr: str, port: int, token: str, proto: str = "tcp",
                       ctr: Netns | None = None) -> None:
        got = reach(ns.name, addr, port, proto)
        want = token if proto == "tcp" else f"{token} ping"
        if got != want:
            pytest.fail(f"{proto} {addr}:{port} from {ns.name}: got {got!r}, want {want!r}\n"
                        f"--- host namespace ---\n{self.diagnostics(ctr)}", pytrace=False)


@pytest.fixture
def topology(impl):
    """A factory: ``topology(dual=..., hairpin=...)``; all it made is removed afterwards."""
    made: list[Topology] = []

    def make(**kw) -> Topology:
        t = Topology(impl, **kw)
        made.append(t)
        return t

    try:
        yield make
    finally:
        for t in made:
            t.close()


def tcp(host_port: int, **kw) -> dict:
    return dict({"hostPort": host_port, "containerPort": CTR_PORT, "protocol": "tcp"}, **kw)


def ip_of(result: dict, family: int) -> str:
    return next(i["address"].split("/")[0] for i in result["ips"] if (":" in i["address"]) == (family == 6))


def normalized(ruleset: str) -> str:
    """A ruleset without what changes by itself: counters and the save tools' date lines."""
    text = re.sub(r"\[\d+:\d+\]|packets \d+ bytes \d+", "", ruleset)
    return "\n".join(l.rstrip() for l in text.splitlines() if not re.match(r"# (Generated by|Completed on)", l))


def mentions(text: str, needle: str) -> bool:
    """Does ``needle`` (an address, a subnet, a port or a container ID) occur as a whole
    token in a ruleset? Counters are ignored so a counter value cannot look like a port."""
    text = normalized(text)
    n = re.escape(needle)
    if needle.isdigit():                       # a port: "dport 18009", "18009,18010", ":18009"
        pat = r"(?<![\w.])" + n + r"(?!\w)"
    elif ":" in needle:                        # IPv6: "fd00:1::2", "[fd00:1::2]:8080", "fd00:1::/64"
        pat = r"(?<![\w:])" + n + r"(?![\w:])"
    else:                                      # IPv4: "10.1.2.3", "10.1.2.3:8080", "10.1.2.0/24"
        pat = r"(?<![\w.])" + n + r"(?!\w|\.\d)"
    return re.search(pat, text) is not None


# -- the cases -----------------------------------------------------------------------------

def test_outside_reaches_the_container_through_the_host_address(topology):
    t = topology()
    c = t.container()
    res = t.add(c, "pm-out", [tcp(18001)])
    t.serve(c, "ctr-out")
    # The container itself answers directly (the bridge works), not on the host port...
    assert reach(t.host.name, ip_of(res, 4), CTR_PORT) == "ctr-out"
    # ... and the outside reaches it only through the host's address and the mapped port.
    t.assert_reaches(t.outside, t.host_ip, 18001, "ctr-out", ctr=c)
    assert reach(t.outside.name, t.host_ip, CTR_PORT).startswith("ERR")
    t.delete(c, "pm-out", [tcp(18001)])


def test_host_reaches_its_own_address(topology):
    t = topology()
    c = t.container()
    t.add(c, "pm-self", [tcp(18002)])
    t.serve(c, "ctr-self")
    t.assert_reaches(t.host, t.host_ip, 18002, "ctr-self", ctr=c)
    t.delete(c, "pm-self", [tcp(18002)])


def test_host_reaches_localhost(topology):
    """127.0.0.1:hostPort from the host: needs the snat (default true) masquerade and
    route_localnet on the bridge, which portmap sets."""
    t = topology()
    c = t.container()
    t.add(c, "pm-lo", [tcp(18003)])
    t.serve(c, "ctr-lo")
    t.assert_reaches(t.host, "127.0.0.1", 18003, "ctr-lo", ctr=c)
    t.delete(c, "pm-lo", [tcp(18003)])


# Hairpin and container-to-container traffic take a different path with br_netfilter
# (bridged frames see the IP hooks: the DNAT happens at the bridge port, and the frame is
# bridged back out of the port it came from, hence hairpinMode) than without it (routed
# through the bridge device). A Kubernetes node has it on; a plain host usually off.
BR_NETFILTER = pytest.mark.parametrize("br_netfilter", [True, False], ids=["brnf-on", "brnf-off"])


@BR_NETFILTER
def test_hairpin_container_reaches_itself_through_the_host(topology, br_netfilter):
    t = topology(hairpin=True, br_netfilter=br_netfilter)
    c = t.container()
    t.add(c, "pm-hp", [tcp(18004)])
    t.serve(c, "ctr-hp")
    t.assert_reaches(c, t.host_ip, 18004, "ctr-hp", ctr=c)
    t.delete(c, "pm-hp", [tcp(18004)])


@BR_NETFILTER
def test_second_container_on_the_bridge_reaches_the_first(topology, br_netfilter):
    t = topology(hairpin=True, br_netfilter=br_netfilter)
    c1, c2 = t.container(), t.container()
    t.add(c1, "pm-c1", [tcp(18005)])
    t.add(c2, "pm-c2", [])  # the whole chain runs for every container, mostly without mappings
    t.serve(c1, "ctr-first")
    t.assert_reaches(c2, t.host_ip, 18005, "ctr-first", ctr=c1)
    t.assert_reaches(c2, t.gw, 18005, "ctr-first", ctr=c1)  # the bridge's address is the host's too
    t.delete(c2, "pm-c2", [])
    t.delete(c1, "pm-c1", [tcp(18005)])


def test_ipv6_outside_reaches_the_container(topology):
    t = topology(dual=True)
    c = t.container()
    res = t.add(c, "pm-v6", [tcp(18006)])
    t.serve(c, "ctr-v6")
    assert reach(t.host.name, ip_of(res, 6), CTR_PORT) == "ctr-v6"  # the v6 path itself works
    t.assert_reaches(t.outside, t.host_ip6, 18006, "ctr-v6", ctr=c)
    t.assert_reaches(t.outside, t.host_ip, 18006, "ctr-v6", ctr=c)  # and v4 still does
    t.delete(c, "pm-v6", [tcp(18006)])


def test_udp_mapping_echoes(topology):
    t = topology()
    c = t.container()
    udp = [{"hostPort": 18007, "containerPort": CTR_PORT, "protocol": "udp"}]
    t.add(c, "pm-udp", udp)
    t.serve(c, "ctr-udp")
    t.assert_reaches(t.outside, t.host_ip, 18007, "ctr-udp", proto="udp", ctr=c)
    # Only UDP is mapped.
    assert reach(t.outside.name, t.host_ip, 18007, "tcp").startswith("ERR")
    t.delete(c, "pm-udp", udp)


def test_host_ip_restricts_the_mapping_to_that_address(topology):
    t = topology()
    t.host.run("ip", "addr", "add", f"{t.host_ip_extra}/24", "dev", "vout")
    c = t.container()
    m = [tcp(18008, hostIP=t.host_ip)]
    t.add(c, "pm-hip", m)
    t.serve(c, "ctr-hip")
    t.assert_reaches(t.outside, t.host_ip, 18008, "ctr-hip", ctr=c)
    # The other address is the host's as well, and reachable...
    p = subprocess.run(["ip", "netns", "exec", t.outside.name, "ping", "-c1", "-W1", "-q", t.host_ip_extra],
                       capture_output=True)
    assert p.returncode == 0, "the host's second address is not reachable: the negative check would prove nothing"
    # ... but the port on it is not forwarded.
    got = reach(t.outside.name, t.host_ip_extra, 18008)
    assert got.startswith("ERR"), f"{t.host_ip_extra}:18008 answered {got!r} though hostIP is {t.host_ip}"
    t.delete(c, "pm-hip", m)


def test_del_stops_forwarding_and_leaves_no_rule(topology):
    """DEL of one container ends its forwarding (TCP and UDP, v4 and v6) and restores the
    firewall exactly as it was before its ADD, while another container's mapping keeps
    working; after the last DEL nothing mentions either container, its subnet or a port
    (the reference keeps its shared, empty skeleton chains: allowed)."""
    t = topology(dual=True)
    keep, c = t.container(), t.container()
    res0 = t.add(keep, "pm-keep", [tcp(18011)])
    t.serve(keep, "ctr-keep")
    skeleton = normalized(t.rules())  # the shared chains exist from here on

    m = [tcp(18009), {"hostPort": 18010, "containerPort": CTR_PORT, "protocol": "udp"}]
    res = t.add(c, "pm-del", m)
    t.serve(c, "ctr-del")
    ip4, ip6 = ip_of(res, 4), ip_of(res, 6)
    t.assert_reaches(t.outside, t.host_ip, 18009, "ctr-del", ctr=c)
    t.assert_reaches(t.outside, t.host_ip6, 18009, "ctr-del", ctr=c)
    t.assert_reaches(t.outside, t.host_ip, 18010, "ctr-del", proto="udp", ctr=c)
    assert mentions(t.rules(), ip4) and mentions(t.rules(), "18009"), "the rules are not what this test looks for"

    def assert_gone(when: str, needles: list[str], like: str | None = None) -> None:
        text = t.rules()
        left = [n for n in needles if mentions(text, n)]
        assert not left, f"after {when}, the firewall still mentions {left}:\n{text}"
        if like is not None and normalized(text) != like:
            diff = "\n".join(difflib.unified_diff(like.splitlines(), normalized(text).splitlines(),
                                                  "before ADD", f"after {when}", lineterm=""))
            pytest.fail(f"after {when}, the firewall differs from before the ADD:\n{diff}", pytrace=False)

    # portmap's DEL alone (the container, its address and its server still up) ends it all.
    t.del_portmap(c, "pm-del", m)
    assert reach(t.host.name, ip4, CTR_PORT) == "ctr-del"  # the container still answers directly
    for addr in (t.host_ip, t.host_ip6):
        got = reach(t.outside.name, addr, 18009)
        assert got.startswith("ERR"), f"{addr}:18009 still answers after portmap DEL: {got!r}"
    got = reach(t.outside.name, t.host_ip, 18010, "udp")
    assert got.startswith("ERR"), f"udp {t.host_ip}:18010 still answers after portmap DEL: {got!r}"
    mine = [ip4, ip6, "pm-del", "18009", "18010"]
    assert_gone("portmap DEL", mine, skeleton)
    t.del_bridge(c, "pm-del")
    assert_gone("the chain's DEL", mine, skeleton)
    assert reach(t.outside.name, t.host_ip, 18009).startswith("ERR")

    # The other container's mapping was left alone.
    t.assert_reaches(t.outside, t.host_ip, 18011, "ctr-keep", ctr=keep)
    t.assert_reaches(t.outside, t.host_ip6, 18011, "ctr-keep", ctr=keep)
    t.delete(keep, "pm-keep", [tcp(18011)])
    assert reach(t.outside.name, t.host_ip, 18011).startswith("ERR")
    assert_gone("the last DEL", mine + [ip_of(res0, 4), ip_of(res0, 6), "pm-keep", "18011", t.subnet, t.subnet6])


def test_traffic_to_a_non_local_address_is_not_translated(topology):
    """Only traffic to the host's own addresses is mapped: a connection through the host to
    another machine on the same port reaches that machine (the reference's early nftables
    backend caught forwarded traffic too, containernetworking/plugins#1209)."""
    t = topology()
    c = t.container()
    t.add(c, "pm-fwd", [tcp(18020)])
    t.serve(c, "ctr-fwd")
    # A "far" machine behind the host, on its own link, serving the same port.
    far = t._ns("cnpf")
    k = t.host_ip.split(".")[2]
    far_ip, host_far_ip = f"10.182.{k}.2", f"10.182.{k}.1"
    t.host.run("ip", "link", "add", "vfar", "type", "veth", "peer", "name", "vfin", "netns", far.name)
    t.host.run("ip", "addr", "add", f"{host_far_ip}/24", "dev", "vfar")
    t.host.run("ip", "link", "set", "vfar", "up")
    far.run("ip", "addr", "add", f"{far_ip}/24", "dev", "vfin")
    far.run("ip", "link", "set", "vfin", "up")
    far.run("ip", "route", "add", "default", "via", host_far_ip)
    t.serve(far, "far-machine", port=18020)
    assert reach(t.outside.name, far_ip, 18020) == "far-machine"
    t.assert_reaches(t.outside, t.host_ip, 18020, "ctr-fwd", ctr=c)  # the mapping itself works
    t.delete(c, "pm-fwd", [tcp(18020)])


def test_conditions_apply_to_their_own_container_only(topology):
    """conditionsV4 of one container keep the outside away from its port; another
    container's mapping on the same host is unaffected (in the reference's nftables
    backend the last ADD's conditions applied to every container)."""
    t = topology()
    if t.impl.backend == "nftables":
        cond = [f"ip saddr != {t.outside_ip}"]
    else:  # iptables syntax: ours with backend iptables, and the reference
        cond = ["!", "-s", f"{t.outside_ip}/32"]
    a, b = t.container(), t.container()
    t.add(a, "pm-cond-a", [tcp(18021)], conditionsV4=cond)
    t.add(b, "pm-cond-b", [tcp(18022)])
    t.serve(a, "ctr-a")
    t.serve(b, "ctr-b")
    assert reach(t.outside.name, t.host_ip, 18021).startswith("ERR"), "conditionsV4 did not exclude the outside"
    t.assert_reaches(t.host, t.host_ip, 18021, "ctr-a", ctr=a)  # other sources still pass
    t.assert_reaches(t.outside, t.host_ip, 18022, "ctr-b", ctr=b)
    t.delete(b, "pm-cond-b", [tcp(18022)])
    t.delete(a, "pm-cond-a", [tcp(18021)], conditionsV4=cond)
