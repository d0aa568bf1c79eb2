"""cnilib.conntrack against the real kernel: dump and delete-by-destination-port.

Everything happens in throwaway namespaces A -- R -- B: R routes between A and B and has an
nftables ``ct state`` rule, so R's conntrack table tracks what A sends to B. The code under
test runs inside R, in a subprocess (``ip netns exec R python3 -c ...``), the way a plugin
runs in a host namespace. Oracle: the traffic we sent (addresses, protocols, ports) and the
kernel's own view of the table through ``/proc/net/nf_conntrack`` for the counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, Netns, sh, unique

PY = sys.executable

V4 = {"family": 2, "a": "10.231.1.2", "ra": "10.231.1.1", "rb": "10.231.2.1", "b": "10.231.2.2",
      "plen": "24", "ip": ["ip"]}
V6 = {"family": 10, "a": "fd00:231:1::2", "ra": "fd00:231:1::1", "rb": "fd00:231:2::1", "b": "fd00:231:2::2",
      "plen": "64", "ip": ["ip", "-6"]}
FAMILIES = [pytest.param(V4, id="ipv4"), pytest.param(V6, id="ipv6")]

PORT = 5353  # the "host port" whose entries go
OTHER = 5354  # another destination port: its entries stay

# Sends UDP datagrams to (dst, port) from `count` sockets each (so `count` entries per
# port), and makes one TCP connection to every port in `tcp` (B listens there).
SENDER = r"""
import json, socket, sys
spec = json.loads(sys.argv[1])
fam = socket.AF_INET6 if spec["family"] == 10 else socket.AF_INET
socks = []
for port, count in spec["udp"]:
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.sendto(b"x", (spec["dst"], port))
        socks.append(s)
for port in spec["tcp"]:
    c = socket.create_connection((spec["dst"], port), timeout=10)
    c.close()
"""

# Listens on TCP ports (both families) so A's connections are established ones, which stay
# in conntrack for minutes rather than the 10 s of a refused one.
LISTENER = r"""
import socket, sys
ls = []
for port in map(int, sys.argv[1:]):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(64)
        ls.append(s)
print("ready", flush=True)
sys.stdin.read()
"""

# Runs a cnilib.conntrack call in the current namespace and prints the outcome as JSON.
CALL = r"""
import json, sys
from cnilib import conntrack
def plain(e):
    return [e.family, e.proto, e.src, e.dst, e.sport, e.dport]
out = []
for fn, args in json.loads(sys.argv[1]):
    try:
        r = getattr(conntrack, fn)(*args)
    except OSError as e:
        out.append({"errno": e.errno, "msg": str(e)})
        continue
    out.append([plain(e) for e in r] if isinstance(r, list) else r)
print(json.dumps(out))
"""


def ct(ns: str, *calls: tuple, prefix: tuple = ()) -> list:
    """Run ``cnilib.conntrack`` calls ((name, args), ...) inside namespace ``ns``;
    their results (dumps as lists of [family, proto, src, dst, sport, dport])."""
    argv = ["ip", "netns", "exec", ns, *prefix, PY, "-c", CALL, json.dumps([list(c) for c in calls])]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class Topo:
    """A -- R -- B for both families; R forwards and tracks connections (nftables)."""

    def __init__(self) -> None:
        self.ns: list[Netns] = []
        try:
            self._build()
        except BaseException:
            self.delete()
            raise

    def _build(self) -> None:
        self.a, self.r, self.b = (self._netns(p) for p in ("ctA", "ctR", "ctB"))
        for x, peer_ns, x_if, peer_if in ((self.a, self.r, "eth0", "ra"), (self.b, self.r, "eth0", "rb")):
            tmp = unique("ct")
            sh("ip", "link", "add", tmp, "netns", x.name, "type", "veth", "peer", "name", peer_if,
               "netns", peer_ns.name)
            x.run("ip", "link", "set", tmp, "name", x_if)
        for x in (self.a, self.r, self.b):
            for link in ("lo", "eth0", "ra", "rb"):
                x.run("ip", "link", "set", link, "up", check=False)
        for f in (V4, V6):
            for x, dev, addr in ((self.a, "eth0", f["a"]), (self.r, "ra", f["ra"]),
                                 (self.r, "rb", f["rb"]), (self.b, "eth0", f["b"])):
                extra = ["nodad"] if f is V6 else []
                x.run(*f["ip"], "addr", "add", f"{addr}/{f['plen']}", "dev", dev, *extra)
            self.a.run(*f["ip"], "route", "add", "default", "via", f["ra"])
            self.b.run(*f["ip"], "route", "add", "default", "via", f["rb"])
        self.r.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.r.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # A `ct` expression registers conntrack's hooks in R (for both families: inet).
        self.r.run("nft", "add", "table", "inet", "t")
        self.r.run("nft", "add", "chain", "inet", "t", "c", "{ type filter hook forward priority 0; }")
        self.r.run("nft", "add", "rule", "inet", "t", "c", "ct", "state", "new", "counter")
        self.listener = subprocess.Popen(["ip", "netns", "exec", self.b.name, PY, "-c", LISTENER, str(PORT)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout.readline().strip() == "ready"

    def _netns(self, prefix: str) -> Netns:
        ns = Netns(prefix)
        self.ns.append(ns)
        return ns

    def send(self, f: dict, udp: list[tuple[int, int]], tcp: list[int] = ()) -> None:
        spec = {"family": f["family"], "dst": f["b"], "udp": udp, "tcp": list(tcp)}
        self.a.run(PY, "-c", SENDER, json.dumps(spec))

    def proc_count(self, f: dict, proto: str, dport: int) -> int:
        """How many entries /proc/net/nf_conntrack in R lists (the kernel's own view)."""
        fam = "ipv4" if f["family"] == 2 else "ipv6"
        n = 0
        for line in self.r.run("cat", "/proc/net/nf_conntrack").splitlines():
            w = line.split()
            if w[0] == fam and w[2] == proto:
                # The first dport= is the original direction's.
                n += next(x for x in w if x.startswith("dport=")) == f"dport={dport}"
        return n

    def settle(self, f: dict, proto: str, dport: int, want: int) -> None:
        """Wait (briefly) until R's table lists ``want`` such entries: datagrams A sent
        may still be crossing the veths when the sender exits."""
        deadline = time.monotonic() + 5
        while self.proc_count(f, proto, dport) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.proc_count(f, proto, dport) == want

    def delete(self) -> None:
        listener = getattr(self, "listener", None)
        if listener is not None:
            listener.stdin.close()
            try:
                listener.wait(timeout=10)
            except subprocess.TimeoutExpired:
                listener.kill()
                listener.wait()
        for ns in self.ns:
            ns.delete()


@pytest.fixture
def topo():
    t = Topo()
    try:
        yield t
    finally:
        t.delete()


def _kinds(entries: list) -> list:
    """(proto, dport) of each entry, sorted."""
    return sorted((e[1], e[5]) for e in entries)


def _ours(dump: list, f: dict) -> list:
    """The entries of A's traffic to B (R may track nothing else, but be sure)."""
    return sorted(e for e in dump if e[2] == f["a"] and e[3] == f["b"])


@pytest.mark.parametrize("f", FAMILIES)
def test_delete_dport_udp(topo, f):
    topo.send(f, udp=[(PORT, 1), (OTHER, 1)], tcp=[PORT])
    topo.settle(f, "udp", OTHER, 1)
    (before,) = ct(topo.r.name, ("dump", [f["family"]]))
    before = _ours(before, f)
    assert _kinds(before) == sorted([(17, PORT), (17, OTHER), (6, PORT)])
    for e in before:
        assert e[0] == f["family"] and 1024 <= e[4] <= 65535
    assert topo.proc_count(f, "udp", PORT) == 1

    fam = f["family"]
    n, after, again, none = ct(topo.r.name, ("delete_dport", [PORT, 17, fam]), ("dump", [fam]),
                               ("delete_dport", [PORT, 17, fam]), ("delete_dport", [4242, 17, fam]))
    assert n == 1
    after = _ours(after, f)
    assert _kinds(after) == sorted([(17, OTHER), (6, PORT)])
    # The remaining ones are the very entries dumped before (same source ports).
    assert after == [e for e in before if (e[1], e[5]) != (17, PORT)]
    assert again == 0 and none == 0
    assert topo.proc_count(f, "udp", PORT) == 0
    assert topo.proc_count(f, "udp", OTHER) == 1
    assert topo.proc_count(f, "tcp", PORT) == 1


@pytest.mark.parametrize("f", FAMILIES)
def test_other_family_untouched(topo, f):
    """delete_dport for one family leaves the other family's entries for that port."""
    other = V6 if f is V4 else V4
    topo.send(f, udp=[(PORT, 1)])
    topo.send(other, udp=[(PORT, 1)])
    topo.settle(f, "udp", PORT, 1)
    topo.settle(other, "udp", PORT, 1)
    n, d_other, d_all = ct(topo.r.name, ("delete_dport", [PORT, 17, f["family"]]),
                           ("dump", [other["family"]]), ("dump", [0]))
    assert n == 1
    assert _kinds(_ours(d_other, other)) == [(17, PORT)]
    assert _ours(d_all, f) == []
    assert _kinds(_ours(d_all, other)) == [(17, PORT)]


@pytest.mark.parametrize("f", FAMILIES)
def test_tcp_by_proto(topo, f):
    """proto=6 deletes the TCP entry (and only it) that proto=17 left alone."""
    topo.send(f, udp=[(PORT, 1)], tcp=[PORT])
    topo.settle(f, "udp", PORT, 1)
    n, d = ct(topo.r.name, ("delete_dport", [PORT, 6, f["family"]]), ("dump", [f["family"]]))
    assert n == 1
    assert _kinds(_ours(d, f)) == [(17, PORT)]
    assert topo.proc_count(f, "tcp", PORT) == 0


@pytest.mark.parametrize("f", FAMILIES)
def test_large_table(topo, f):
    """Hundreds of entries: the dump spans many netlink datagrams (~32 KiB each) and every
    matching entry is deleted."""
    many = 600
    topo.send(f, udp=[(PORT, many), (OTHER, 50)])
    topo.settle(f, "udp", PORT, many)
    topo.settle(f, "udp", OTHER, 50)
    d, n, d2 = ct(topo.r.name, ("dump", [f["family"]]), ("delete_dport", [PORT, 17, f["family"]]),
                  ("dump", [f["family"]]))
    d = _ours(d, f)
    assert sum(e[5] == PORT for e in d) == many and sum(e[5] == OTHER for e in d) == 50
    assert len({e[4] for e in d if e[5] == PORT}) == many  # distinct entries, parsed whole
    assert n == many
    d2 = _ours(d2, f)
    assert [e[5] for e in d2] == [OTHER] * 50
    assert topo.proc_count(f, "udp", PORT) == 0


# Counts the datagrams a dump reads, to show the large-table test crosses datagrams.
COUNT_RECV = r"""
import json, sys
from cnilib import conntrack
n = 0
real = conntrack._Socket._recv
def counted(self):
    global n
    n += 1
    return real(self)
conntrack._Socket._recv = counted
print(json.dumps([len(conntrack.dump(int(sys.argv[1]))), n]))
"""


def test_dump_spans_datagrams(topo):
    topo.send(V4, udp=[(PORT, 400)])
    topo.settle(V4, "udp", PORT, 400)
    entries, datagrams = json.loads(topo.r.run(PY, "-c", COUNT_RECV, "2"))
    assert entries == 400 and datagrams > 2


def test_per_namespace(topo):
    """The table is the calling namespace's: A (no conntrack hooks) sees nothing of R's,
    and deleting in A leaves R's entries."""
    topo.send(V4, udp=[(PORT, 1)])
    topo.settle(V4, "udp", PORT, 1)
    d_a, n_a = ct(topo.a.name, ("dump", [2]), ("delete_dport", [PORT]))
    assert d_a == [] and n_a == 0
    assert topo.proc_count(V4, "udp", PORT) == 1


def test_gone_entry_is_not_an_error(topo):
    """Deleting an entry that no longer exists (here: one never made) counts 0, no error."""
    code = ("from cnilib import conntrack as c; import json; "
            "e = c.Entry(2, 17, '10.231.1.2', '10.231.2.2', 40000, 9); "
            "print(json.dumps([c.delete([e])]))")
    out = topo.r.run(PY, "-c", code)
    assert json.loads(out) == [0]


def test_eperm_is_oserror(topo):
    """Without CAP_NET_ADMIN over the namespace the kernel refuses: OSError, clear message."""
    topo.send(V4, udp=[(PORT, 1)])
    topo.settle(V4, "udp", PORT, 1)
    (r,) = ct(topo.r.name, ("delete_dport", [PORT]), prefix=("unshare", "--user"))
    assert r["errno"] == 1
    assert "conntrack" in r["msg"] and "IPv4" in r["msg"] and "not permitted" in r["msg"]
    assert topo.proc_count(V4, "udp", PORT) == 1


@pytest.mark.parametrize("call", [
    lambda c: c.delete_dport(70000),
    lambda c: c.delete_dport(-1),
    lambda c: c.delete_dport(53, proto=1),
    lambda c: c.delete_dport(53, family=7),
    lambda c: c.dump(7),
    lambda c: c._tuple(c.Entry(2, 1, "10.0.0.1", "10.0.0.2", None, None)),
])
def test_bad_arguments(call):
    """Refused before any socket is opened (runs in process, touches no namespace)."""
    from cnilib import conntrack

    with pytest.raises(ValueError):
        call(conntrack)


def test_import_cost():
    """The module imports only C modules of the standard library (no pyroute2, socket,
    os, struct)."""
    code = ("import sys; before = set(sys.modules); import cnilib.conntrack; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    new = set(p.stdout.split())
    assert new <= {"cnilib", "cnilib.conntrack", "_socket", "_struct"}, new
