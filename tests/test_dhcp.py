"""dhcp (IPAM plugin + daemon) against a real dnsmasq, through bridge and macvlan.

Everything runs for real: dnsmasq serves 10.77.0.0/24 in a "LAN" namespace, our daemon is a
child process of the test (killed by PID), containers are namespaces attached by the bridge
and macvlan plugins with ``"ipam": {"type": "dhcp"}``, plugins run from private source
launchers. The assertions read what dnsmasq's lease file, the kernel and the daemon's state
directory hold. See tests/dhcp_env.py for the topology.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from plugins.dhcp import codec
from tests.dhcp_env import SERVER, Daemon, Lan, build_launchers, wait_for
from tests.helpers import OUR_BIN, REF_BIN, Netns, ip_json, run_plugin, sh

pytestmark = pytest.mark.root
NET = "lan"
FAST = ("-timeout", "500ms", "-resendtimeout", "3s")


@pytest.fixture(scope="module")
def bins():
    """Private source launchers; CNIPY_DHCP_BINS=DIR runs the suite on another build (a frozen one)."""
    if os.environ.get("CNIPY_DHCP_BINS"):
        yield os.environ["CNIPY_DHCP_BINS"]
        return
    d = tempfile.mkdtemp(prefix="cnipy-dhcp-bin-")
    try:
        yield build_launchers(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lan():
    env = Lan()
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def daemon(bins, lan):
    d = Daemon(os.path.join(bins, "dhcp"), lan.tmp, *FAST)
    try:
        yield d.start()
    finally:
        d.kill()


@pytest.fixture
def containers():
    made: list[Netns] = []

    def make() -> Netns:
        made.append(Netns("dctr"))
        return made[-1]

    try:
        yield make
    finally:
        for ns in made:
            ns.delete()


def bridge_conf(d: Daemon, **ipam) -> dict:
    return {"cniVersion": "1.1.0", "name": NET, "type": "bridge", "bridge": "dbr0",
            "ipam": dict({"type": "dhcp", "daemonSocketPath": d.socket}, **ipam)}


def macvlan_conf(d: Daemon, **ipam) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "type": "macvlan", "master": "up1",
            "ipam": dict({"type": "dhcp", "daemonSocketPath": d.socket}, **ipam)}


def plugin(binary: str, verb: str, conf: dict, lan: Lan, c: Netns | None, cid: str, path: str, **kw):
    return run_plugin(binary, verb, conf, containerid=cid, netns=c.path if c else "", ifname="eth0",
                      path=path, in_netns=lan.host.name, **kw)


def clientid_hex(cid: str, ifname: str = "eth0") -> str:
    return codec.client_id(f"{cid}/{NET}/{ifname}").hex(":")


def lease_of(lan: Lan, cid: str) -> dict | None:
    return next((l for l in lan.leases() if l["clientid"] == clientid_hex(cid)), None)


def ctr_ipv4(c: Netns) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for l in ip_json("addr", "show", "dev", "eth0", ns=c.name)
            for a in l.get("addr_info", []) if a["family"] == "inet"]


def assert_full_result(res: dict, leased_ip: str) -> None:
    assert res["ips"][0]["address"] == f"{leased_ip}/24" and res["ips"][0]["gateway"] == SERVER
    assert {"dst": "0.0.0.0/0", "gw": SERVER} in res["routes"]
    assert res["dns"] == {"nameservers": [SERVER], "domain": "lan.test", "search": ["lan.test", "corp.test"]}


# -- slice 1: ADD / DEL / CHECK / GC / STATUS ---------------------------------------------

def test_bridge_add_gets_the_dnsmasq_lease_and_release_frees_it(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    c = containers()
    conf = bridge_conf(daemon)
    out = plugin(f"{bins}/bridge", "ADD", conf, lan, c, "c1", bins)
    assert out.ok, out.stdout
    lease = wait_for(lambda: lease_of(lan, "c1"), 5)
    assert lease, lan.leases()
    # The address dnsmasq leased to our client id and the container's MAC, with routes and DNS.
    mac = ip_json("link", "show", "eth0", ns=c.name)[0]["address"]
    assert lease["mac"] == mac
    assert_full_result(out.doc, lease["ip"])
    assert ctr_ipv4(c) == [f"{lease['ip']}/24"]
    sh("ping", "-c1", "-W2", SERVER, ns=c.name)
    assert len(daemon.state_files()) == 1
    # CHECK with the prevResult a runtime keeps.
    chk = plugin(f"{bins}/bridge", "CHECK", dict(conf, prevResult=out.doc), lan, c, "c1", bins)
    assert chk.ok, chk.stdout
    # The daemon's part of CHECK looks at the kernel: the leased address gone is code 102.
    sh("ip", "addr", "del", f"{lease['ip']}/24", "dev", "eth0", ns=c.name)
    chk = run_plugin(f"{bins}/dhcp", "CHECK", conf, containerid="c1", netns=c.path, ifname="eth0")
    assert chk.code == 102 and "is not on eth0" in chk.doc["msg"], chk.stdout
    sh("ip", "addr", "add", f"{lease['ip']}/24", "dev", "eth0", ns=c.name)
    # bridge's DEL runs IPAM DEL first, while the link is still there (as the reference
    # orders it): dnsmasq frees the lease, so our RELEASE (from the leased address, ciaddr
    # set) was honoured.
    out = plugin(f"{bins}/bridge", "DEL", conf, lan, c, "c1", bins)
    assert out.ok, out.stdout
    assert wait_for(lambda: lease_of(lan, "c1") is None, 5), lan.leases()
    assert "DHCPRELEASE(lanbr) " + lease["ip"] in lan.log()
    assert daemon.state_files() == []
    out = plugin(f"{bins}/bridge", "DEL", conf, lan, c, "c1", bins)
    assert out.ok, out.stdout  # a second DEL: the lease is unknown by now, still a success


def test_reference_macvlan_with_our_dhcp_add_del(bins, lan, daemon, containers):
    """The reference macvlan runs IPAM DEL before deleting its link: the whole chain releases."""
    lan.start_dnsmasq()
    c = containers()
    conf = macvlan_conf(daemon)
    out = plugin(f"{REF_BIN}/macvlan", "ADD", conf, lan, c, "m1", bins)
    assert out.ok, out.stdout
    lease = wait_for(lambda: lease_of(lan, "m1"), 5)
    assert lease and out.doc["ips"][0]["address"] == f"{lease['ip']}/24"
    assert {"dst": "0.0.0.0/0", "gw": SERVER} in out.doc["routes"]
    out = plugin(f"{REF_BIN}/macvlan", "DEL", conf, lan, c, "m1", bins)
    assert out.ok, out.stdout
    assert wait_for(lambda: lease_of(lan, "m1") is None, 5), lan.leases()
    assert daemon.state_files() == []


def test_our_macvlan_add_and_del(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    c = containers()
    conf = dict(macvlan_conf(daemon, priority=300), cniVersion="1.1.0")
    out = plugin(f"{bins}/macvlan", "ADD", conf, lan, c, "m2", bins)
    assert out.ok, out.stdout
    lease = wait_for(lambda: lease_of(lan, "m2"), 5)
    assert lease and ctr_ipv4(c) == [f"{lease['ip']}/24"]
    assert lease["mac"] == ip_json("link", "show", "eth0", ns=c.name)[0]["address"]
    assert out.doc["routes"] == [{"dst": "0.0.0.0/0", "gw": SERVER, "priority": 300}]  # `priority`: metric
    assert "metric 300" in sh("ip", "route", "show", "default", ns=c.name)
    out.doc["routes"][0].pop("priority")
    assert_full_result(out.doc, lease["ip"])
    sh("ping", "-c1", "-W2", SERVER, ns=c.name)
    out = plugin(f"{bins}/macvlan", "DEL", conf, lan, c, "m2", bins)
    assert out.ok, out.stdout
    # IPAM DEL runs before the link goes: the RELEASE leaves the container, the server frees it.
    assert wait_for(lambda: lease_of(lan, "m2") is None, 5), lan.leases()
    assert daemon.state_files() == []


def test_no_server_fails_in_time_and_leaves_nothing(bins, lan, daemon, containers):
    c = containers()  # no dnsmasq on the LAN
    before = daemon.threads()
    t = time.monotonic()
    out = plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon), lan, c, "n1", bins)
    took = time.monotonic() - t
    assert not out.ok and out.code == 11, out.stdout
    assert "no DHCPOFFER received on eth0" in out.doc["msg"] and "-resendtimeout 3s" in out.doc["msg"]
    assert took < 3 + 2.5, took
    assert daemon.state_files() == []
    st = run_plugin(f"{bins}/dhcp", "STATUS", bridge_conf(daemon))
    assert st.ok, st.stdout
    assert wait_for(lambda: daemon.threads() <= before, 3), (daemon.threads(), before)
    assert "veth" not in sh("ip", "-o", "link", ns=lan.host.name)  # bridge undid its ADD


def test_check_acquires_nothing(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    c = containers()
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "hv0", ns=c.name)
    out = run_plugin(f"{bins}/dhcp", "CHECK", bridge_conf(daemon), containerid="k1", netns=c.path, ifname="eth0")
    assert not out.ok and out.code == 102 and "CHECK acquires none" in out.doc["msg"], out.stdout
    time.sleep(0.5)
    assert lan.leases() == [] and daemon.state_files() == []
    assert "DHCPDISCOVER" not in lan.log()


def test_gc_releases_leases_not_in_valid_attachments(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    conf = bridge_conf(daemon)
    ca, cb = containers(), containers()
    for cid, c in (("ga", ca), ("gb", cb)):
        assert plugin(f"{bins}/bridge", "ADD", conf, lan, c, cid, bins).ok
    assert wait_for(lambda: lease_of(lan, "ga") and lease_of(lan, "gb"), 5)
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "ga", "ifname": "eth0"}]})
    out = run_plugin(f"{bins}/dhcp", "GC", gc, path=bins)
    assert out.ok, out.stdout
    assert wait_for(lambda: lease_of(lan, "gb") is None, 5), lan.leases()
    assert lease_of(lan, "ga") is not None and len(daemon.state_files()) == 1
    for cid, c in (("ga", ca), ("gb", cb)):
        assert plugin(f"{bins}/bridge", "DEL", conf, lan, c, cid, bins).ok
    assert daemon.state_files() == []


def test_status_is_50_without_a_daemon(bins, lan, daemon):
    assert run_plugin(f"{bins}/dhcp", "STATUS", bridge_conf(daemon)).ok
    daemon.kill()
    out = run_plugin(f"{bins}/dhcp", "STATUS", bridge_conf(daemon))
    assert out.code == 50 and daemon.socket in out.doc["msg"], out.stdout
    # DEL cannot know whether a lease is held: it fails (code 11) and the runtime retries, as
    # with the reference.
    out = run_plugin(f"{bins}/dhcp", "DEL", bridge_conf(daemon), containerid="z1", ifname="eth0")
    assert out.code == 11 and "error dialing DHCP daemon at " + daemon.socket in out.doc["msg"], out.stdout


def test_add_without_the_interface_is_a_clear_error(bins, lan, daemon, containers):
    c = containers()
    out = run_plugin(f"{bins}/dhcp", "ADD", bridge_conf(daemon), containerid="i1", netns=c.path, ifname="eth9")
    assert out.code == 102 and "cannot use interface 'eth9'" in out.doc["msg"], out.stdout
    assert daemon.state_files() == []


def test_socket_held_by_the_reference_daemon_is_a_clear_error(bins, lan, containers):
    """The reference daemon (Go net/rpc over HTTP) on the socket: an error naming it, fast."""
    sock = os.path.join(lan.tmp, "ref", "dhcp.sock")
    ref = subprocess.Popen([f"{REF_BIN}/dhcp", "daemon", "-socketpath", sock],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(sock), 5)
        c = containers()
        conf = {"cniVersion": "1.0.0", "name": NET, "type": "dhcp", "daemonSocketPath": sock,
                "ipam": {"type": "dhcp", "daemonSocketPath": sock}}
        t = time.monotonic()
        out = run_plugin(f"{bins}/dhcp", "ADD", conf, containerid="r1", netns=c.path, ifname="eth0")
        assert time.monotonic() - t < 7
        assert out.code == 11 and sock in out.doc["msg"] and "HTTP" in out.doc["msg"], out.stdout
    finally:
        ref.kill()
        ref.wait()


def test_silent_socket_is_bounded(bins, lan, containers):
    """Something listens but never answers: the plugin gives up after its answer timeout."""
    sock = os.path.join(lan.tmp, "silent.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.listen(8)  # never accepted: connect succeeds, nobody answers
    try:
        c = containers()
        conf = {"cniVersion": "1.0.0", "name": NET, "ipam": {"type": "dhcp", "daemonSocketPath": sock}}
        t = time.monotonic()
        out = run_plugin(f"{bins}/dhcp", "ADD", conf, containerid="s1", netns=c.path, ifname="eth0")
        took = time.monotonic() - t
        assert out.code == 11 and f"no answer from the dhcp daemon's socket {sock}" in out.doc["msg"], out.stdout
        assert 4 < took < 8, took
    finally:
        s.close()


def test_reference_plugin_against_our_daemon_is_a_clear_error(lan, daemon, containers):
    c = containers()
    out = run_plugin(f"{REF_BIN}/dhcp", "ADD", dict(bridge_conf(daemon), cniVersion="1.0.0"), containerid="x1", netns=c.path,
                     ifname="eth0", path=REF_BIN, timeout=20)
    assert not out.ok and "cni-py dhcp daemon" in (out.stdout + out.stderr).decode(), out.stdout


def test_config_errors_are_code_7(bins, daemon, containers):
    c = containers()
    for ipam, key in (({"request": [{"option": "no-such-option"}]}, "ipam.request[0].option"),
                      ({"provide": [{"option": "host-name", "value": "x" * 256}]}, "ipam.provide[0].value"),
                      ({"provide": [{"option": 53, "value": "x"}]}, "ipam.provide[0].option"),
                      ({"daemonSocketPath": "relative.sock"}, "ipam.daemonSocketPath")):
        conf = {"cniVersion": "1.0.0", "name": NET,
                "ipam": dict({"type": "dhcp", "daemonSocketPath": daemon.socket}, **ipam)}
        out = run_plugin(f"{bins}/dhcp", "ADD", conf, containerid="e1", netns=c.path, ifname="eth0")
        assert out.code == 7 and key in out.doc["msg"], out.stdout
    assert daemon.state_files() == []


# -- slice 2: persistence, concurrency ----------------------------------------------------

def test_sigkill_restart_resumes_and_releases(bins, lan, daemon, containers):
    # T2 of 4 s (dnsmasq then sends T1 3 s): its lease file shows each renewal as a later expiry.
    lan.start_dnsmasq("--dhcp-option=option:T2,4")
    c = containers()
    conf = bridge_conf(daemon)
    assert plugin(f"{bins}/bridge", "ADD", conf, lan, c, "p1", bins).ok
    first = wait_for(lambda: lease_of(lan, "p1"), 5)
    [state] = daemon.state_files()
    st = os.stat(os.path.join(daemon.state, state))
    assert st.st_mode & 0o777 == 0o600 and os.stat(daemon.state).st_mode & 0o777 == 0o700
    # Renewed at T1 by the first daemon.
    assert wait_for(lambda: (lease_of(lan, "p1") or first)["expiry"] > first["expiry"], 6), lan.leases()
    daemon.kill(signal.SIGKILL)
    assert os.path.exists(daemon.socket)  # stale socket left behind: the next start replaces it
    renewed = lease_of(lan, "p1")
    daemon.start()
    assert "resumed" in daemon.log()
    # The restarted daemon renews it again...
    assert wait_for(lambda: (lease_of(lan, "p1") or renewed)["expiry"] > renewed["expiry"], 6), lan.leases()
    # ...and releases it on DEL.
    out = run_plugin(f"{bins}/dhcp", "DEL", conf, containerid="p1", netns=c.path, ifname="eth0")
    assert out.ok, out.stdout
    assert wait_for(lambda: lease_of(lan, "p1") is None, 5), lan.leases()
    assert daemon.state_files() == []
    assert plugin(f"{bins}/bridge", "DEL", conf, lan, c, "p1", bins).ok


def test_concurrent_adds_of_one_attachment_make_one_lease(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    c = containers()
    # The container's end of a veth into the LAN bridge, made by hand: every ADD is for it.
    sh("ip", "link", "add", "eth0", "netns", c.name, "type", "veth", "peer", "name", "cc0", ns=lan.host.name)
    sh("ip", "link", "set", "cc0", "master", "dbr0", "up", ns=lan.host.name)
    conf = bridge_conf(daemon)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda _: run_plugin(f"{bins}/dhcp", "ADD", conf, containerid="same", netns=c.path,
                                                  ifname="eth0"), range(8)))
    assert all(o.ok for o in outs), [o.stdout for o in outs if not o.ok]
    assert len({o.doc["ips"][0]["address"] for o in outs}) == 1
    assert len(lan.leases()) == 1 and len(daemon.state_files()) == 1
    assert lan.log().count("DHCPDISCOVER") == 1
    assert run_plugin(f"{bins}/dhcp", "DEL", conf, containerid="same", netns=c.path, ifname="eth0").ok
    assert wait_for(lambda: lan.leases() == [], 5)


def test_concurrent_adds_without_a_server_share_one_failure(bins, lan, daemon, containers):
    c = containers()  # no server on the LAN
    sh("ip", "link", "add", "eth0", "netns", c.name, "type", "veth", "peer", "name", "cc1", ns=lan.host.name)
    sh("ip", "link", "set", "cc1", "master", "dbr0", "up", ns=lan.host.name)
    conf = bridge_conf(daemon)
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: run_plugin(f"{bins}/dhcp", "ADD", conf, containerid="lone", netns=c.path,
                                                  ifname="eth0"), range(4)))
    took = time.monotonic() - t
    assert all(o.code == 11 and "no DHCPOFFER received on eth0" in o.doc["msg"] for o in outs), outs
    assert took < 3 + 2.5, took  # one exchange's time, not one per waiting ADD
    assert daemon.state_files() == []


def test_32_parallel_adds(bins, lan, containers):
    lan.start_dnsmasq()
    # Timeouts of a real deployment's order (not FAST's): 32 exchanges at once on a busy
    # 2-core machine must not fail for want of patience.
    daemon = Daemon(os.path.join(bins, "dhcp"), lan.tmp, "-timeout", "2s", "-resendtimeout", "30s")
    try:
        _thirty_two(bins, lan, daemon.start(), containers)
    finally:
        daemon.kill()


def _thirty_two(bins, lan, daemon, containers):
    conf = bridge_conf(daemon)
    ctrs = [containers() for _ in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        outs = list(pool.map(lambda i: plugin(f"{bins}/bridge", "ADD", conf, lan, ctrs[i], f"q{i}", bins,
                                              timeout=60), range(32)))
    assert all(o.ok for o in outs), ([o.stdout for o in outs if not o.ok][:2], daemon.log()[-3000:])
    ips = {o.doc["ips"][0]["address"] for o in outs}
    assert len(ips) == 32
    assert wait_for(lambda: len(lan.leases()) == 32, 5)
    assert len(daemon.state_files()) == 32
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        dels = list(pool.map(lambda i: plugin(f"{bins}/bridge", "DEL", conf, lan, ctrs[i], f"q{i}", bins), range(32)))
    assert all(o.ok for o in dels)
    assert daemon.state_files() == []


# -- slice 3 (with dnsmasq): a lease whose namespace is gone is forgotten ------------------

def test_lease_of_a_deleted_namespace_is_forgotten(bins, lan, daemon, containers):
    lan.start_dnsmasq("--dhcp-option=option:T2,4")
    before = daemon.threads()
    c = Netns("dctr")
    try:
        assert plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon), lan, c, "g1", bins).ok
        assert wait_for(lambda: daemon.threads() == before + 1, 3)  # the lease's maintainer
    finally:
        c.delete()
    assert wait_for(lambda: daemon.state_files() == [], 8), daemon.log()
    assert wait_for(lambda: daemon.threads() == before, 3)
    assert "forgotten: its namespace" in daemon.log()


def test_renew_rebind_expire_with_short_leases(bins, lan, daemon, containers):
    """A server we control (tests/dhcp_server.py): lease 6 s, T1 2 s, T2 4 s."""
    lan.start_test_server(lease=6, t1=2, t2=4)
    c = containers()
    before = daemon.threads()
    out = plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon), lan, c, "r1", bins)
    assert out.ok, out.stdout
    addr = out.doc["ips"][0]["address"]
    ip = addr.split("/")[0]
    assert ctr_ipv4(c) == [addr]

    def seen(dst: str) -> bool:
        return any(e["type"] == "REQUEST" and e["ciaddr"] == ip and e["src"] == ip and e["dst"] == dst
                   for e in lan.server_log())

    # T1: a unicast REQUEST to the server from the leased address, ciaddr set; it is ACKed.
    assert wait_for(lambda: seen(SERVER), 5), lan.server_log()
    assert wait_for(lambda: "renewed" in daemon.log(), 2), daemon.log()
    os.kill(lan.dnsmasq.pid, signal.SIGUSR1)  # the server goes silent
    # T2: REQUESTs are broadcast (rebinding), still from the leased address.
    assert wait_for(lambda: seen("255.255.255.255"), 8), lan.server_log()
    # Expiry: the address leaves the interface, the lease and its thread are gone.
    assert wait_for(lambda: ctr_ipv4(c) == [], 8), daemon.log()
    assert wait_for(lambda: "the lease expired without renewal" in daemon.log(), 2), daemon.log()
    assert daemon.state_files() == []
    assert wait_for(lambda: daemon.threads() == before, 3)
    assert plugin(f"{bins}/bridge", "DEL", bridge_conf(daemon), lan, c, "r1", bins).ok


def test_restart_forgets_leases_whose_namespace_went_meanwhile(bins, lan, daemon):
    lan.start_dnsmasq()
    c = Netns("dctr")
    try:
        assert plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon), lan, c, "w1", bins).ok
        assert len(daemon.state_files()) == 1
        daemon.kill(signal.SIGKILL)
    finally:
        c.delete()
    daemon.start()
    assert daemon.state_files() == []
    assert "forgotten: its namespace went while the daemon was down" in daemon.log()


def test_broadcast_flag_is_honoured(bins, lan, containers):
    """-broadcast sets the BOOTP broadcast flag (the reference parses it and ignores it)."""
    lan.start_test_server(lease=60, t1=30, t2=50)
    d = Daemon(os.path.join(bins, "dhcp"), lan.tmp, "-broadcast", *FAST).start()
    try:
        c = containers()
        assert plugin(f"{bins}/bridge", "ADD", bridge_conf(d), lan, c, "b1", bins).ok
        sent = [e for e in lan.server_log() if e["type"] in ("DISCOVER", "REQUEST")]
        assert sent and all(e["flags"] == 0x8000 for e in sent), sent
        assert plugin(f"{bins}/bridge", "DEL", bridge_conf(d), lan, c, "b1", bins).ok
    finally:
        d.kill()


# -- slice 4: request / provide ------------------------------------------------------------

def test_provide_from_arg_and_requested_options(bins, lan, daemon, containers):
    lan.start_dnsmasq("--dhcp-option=option:classless-static-route,192.168.50.0/24,10.77.0.254,0.0.0.0/0,10.77.0.1",
                      "--dhcp-option=option:ntp-server,10.77.0.9")
    c = containers()
    ipam = {"request": [{"option": "classless-static-routes"}, {"option": "42"}],
            "provide": [{"option": "host-name", "value": "fallback", "fromArg": "K8S_POD_NAME"},
                        {"option": "vendor-class-identifier", "value": "cni-py-test"}],
            "priority": 50}
    out = plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon, **ipam), lan, c, "o1", bins,
                 args="K8S_POD_NAME=web-7;K8S_POD_NAMESPACE=default")
    assert out.ok, out.stdout
    lease = wait_for(lambda: lease_of(lan, "o1"), 5)
    assert lease["hostname"] == "web-7"  # fromArg wins over value, as the reference
    log = lan.log()
    assert "vendor class: cni-py-test" in log
    assert "42:ntp-server" in log and "121:classless-static-route" in log
    # Option 121 present: its routes only (RFC 3442), each with `priority` as metric.
    assert out.doc["routes"] == [{"dst": "192.168.50.0/24", "gw": "10.77.0.254", "priority": 50},
                                 {"dst": "0.0.0.0/0", "gw": SERVER, "priority": 50}]
    assert out.doc["dns"]["nameservers"] == [SERVER]
    assert plugin(f"{bins}/bridge", "DEL", bridge_conf(daemon, **ipam), lan, c, "o1", bins).ok


def test_skip_default_asks_only_for_what_is_listed(bins, lan, daemon, containers):
    lan.start_dnsmasq()
    c = containers()
    ipam = {"request": [{"skipDefault": True}, {"option": "subnet-mask"}, {"option": "routers"}],
            "provide": [{"option": "host-name", "value": "plain"}]}
    out = plugin(f"{bins}/bridge", "ADD", bridge_conf(daemon, **ipam), lan, c, "o2", bins)
    assert out.ok, out.stdout
    assert wait_for(lambda: lease_of(lan, "o2"), 5)["hostname"] == "plain"
    assert "requested options: 1:netmask, 3:router\n" in lan.log() + "\n"
    assert plugin(f"{bins}/bridge", "DEL", bridge_conf(daemon, **ipam), lan, c, "o2", bins).ok


# -- slice 5: systemd socket activation and the units ------------------------------------

def test_socket_activation_uses_the_inherited_socket(bins, lan, containers):
    """As systemd starts it (LISTEN_PID, LISTEN_FDS=1, the socket as fd 3): served there,
    no socket of its own created (not even the default /run/cni/dhcp.sock)."""
    lan.start_dnsmasq()
    path = os.path.join(lan.tmp, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    default_existed = os.path.exists("/run/cni/dhcp.sock")
    fd = listener.fileno()

    def as_systemd() -> None:
        os.dup2(fd, 3)
        os.putenv("LISTEN_PID", str(os.getpid()))
        os.putenv("LISTEN_FDS", "1")

    state = os.path.join(lan.tmp, "state")
    proc = subprocess.Popen([f"{bins}/dhcp", "daemon", "-statedir", state, *FAST], preexec_fn=as_systemd,
                            close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listener.close()  # the daemon holds it now
        conf = {"cniVersion": "1.1.0", "name": NET, "type": "bridge", "bridge": "dbr0",
                "ipam": {"type": "dhcp", "daemonSocketPath": path}}
        assert wait_for(lambda: run_plugin(f"{bins}/dhcp", "STATUS", conf).ok, 10)
        c = containers()
        out = plugin(f"{bins}/bridge", "ADD", conf, lan, c, "sa1", bins)
        assert out.ok, out.stdout
        assert wait_for(lambda: lease_of(lan, "sa1"), 5)
        assert plugin(f"{bins}/bridge", "DEL", conf, lan, c, "sa1", bins).ok
        assert os.path.exists("/run/cni/dhcp.sock") == default_existed
    finally:
        proc.kill()
        proc.wait()


def test_units_install_and_verify(bins, tmp_path):
    install = [os.path.join(os.path.dirname(os.path.dirname(__file__)), ".venv", "bin", "python3"),
               os.path.join(os.path.dirname(os.path.dirname(__file__)), "build", "install.py"), "--units",
               os.path.join(os.path.dirname(os.path.dirname(__file__)), "build", "systemd"), str(tmp_path), bins]
    assert subprocess.run(install, capture_output=True).returncode == 0
    service = (tmp_path / "cni-dhcp.service").read_text()
    sock = (tmp_path / "cni-dhcp.socket").read_text()
    assert f"ExecStart={bins}/dhcp daemon" in service and "Requires=cni-dhcp.socket" in service
    assert "ListenStream=/run/cni/dhcp.sock" in sock and "SocketMode=0660" in sock and "RemoveOnStop=true" in sock
    assert subprocess.run(install, capture_output=True).returncode == 0  # ours: replaced
    (tmp_path / "cni-dhcp.socket").write_text("[Socket]\nListenStream=/elsewhere\n")  # someone else's
    p = subprocess.run(install, capture_output=True, text=True)
    assert p.returncode == 1 and "refusing to overwrite cni-dhcp.socket" in p.stderr
    assert (tmp_path / "cni-dhcp.socket").read_text() == "[Socket]\nListenStream=/elsewhere\n"
    if shutil.which("systemd-analyze"):  # lint the units as systemd reads them, where it is installed
        (tmp_path / "cni-dhcp.socket").write_text(sock)
        v = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "cni-dhcp.socket"),
                            str(tmp_path / "cni-dhcp.service")], capture_output=True, text=True, timeout=60)
        assert v.returncode == 0, v.stderr


# -- the frozen build (dist/bin, made by `make bin`): both roles from the one executable -------

def test_frozen_binary_runs_both_roles(lan, containers):
    frozen = os.environ.get("CNIPY_DHCP_FROZEN", OUR_BIN)
    if not os.path.isfile(os.path.join(frozen, "dhcp")):
        pytest.fail(f"no frozen dhcp in {frozen}: run `make bin`", pytrace=False)
    lan.start_dnsmasq()
    d = Daemon(os.path.join(frozen, "dhcp"), lan.tmp, *FAST).start()
    try:
        c = containers()
        out = plugin(f"{frozen}/bridge", "ADD", bridge_conf(d), lan, c, "fz1", frozen)
        assert out.ok, out.stdout
        assert wait_for(lambda: lease_of(lan, "fz1"), 5)
        rel = run_plugin(f"{frozen}/dhcp", "DEL", bridge_conf(d), containerid="fz1", netns=c.path, ifname="eth0")
        assert rel.ok and wait_for(lambda: lease_of(lan, "fz1") is None, 5), lan.leases()
        assert plugin(f"{frozen}/bridge", "DEL", bridge_conf(d), lan, c, "fz1", frozen).ok
    finally:
        d.kill()


# -- units: codec and flags ---------------------------------------------------------------

def test_long_keys_stay_distinct_client_ids():
    """Option 61 holds 255 bytes: keys differing only past that (5,000-character container
    IDs) must not become one client (the reference truncates them into one)."""
    a, b = "c" * 5000 + "a/net/eth0", "c" * 5000 + "b/net/eth0"
    ia, ib = codec.client_id(a), codec.client_id(b)
    assert ia != ib and len(ia) == len(ib) == 255 and ia[0] == 0
    assert codec.client_id("short/net/eth0") == b"\0short/net/eth0"  # short keys as they are
    assert len(codec.client_id("x" * 254)) == 255  # the longest key that fits is kept whole
    assert codec.client_id("x" * 254)[1:] == b"x" * 254


def test_codec_round_trip_and_option_parsers():
    m = codec.Message(xid=7, chaddr=b"\x02\x00\x00\x00\x00\x01", options={53: b"\x01", 61: codec.client_id("a/b/c"),
                                                                         12: b"x" * 300})
    back = codec.Message.decode(m.encode())
    assert back.xid == 7 and back.type == 1 and back.options[12] == b"x" * 300  # split and rejoined (RFC 3396)
    routes = [("10.0.0.0", 8, "192.168.1.1"), ("0.0.0.0", 0, "192.168.1.254"), ("192.168.5.0", 24, "0.0.0.0")]
    assert codec.classless_routes(codec.encode_classless_routes(routes)) == routes
    assert codec.domain_list(codec.encode_domain_list(["a.test", "b.example"])) == ["a.test", "b.example"]
    # RFC 1035 compression pointer into the first name
    assert codec.domain_list(b"\x01a\x04test\x00\x01b\xc0\x02") == ["a.test", "b.test"]
    assert codec.static_routes(bytes([10, 1, 0, 0, 192, 168, 0, 1])) == [("10.1.0.0", 16, "192.168.0.1")]
    pkt = codec.udp_packet(b"\x0a\0\0\x02", b"\x0a\0\0\x01", 68, 67, b"hello")
    assert codec.udp_payload(pkt, 67) == (b"\x0a\0\0\x02", b"hello")


def test_sigterm_removes_socket_and_pidfile_keeps_leases(bins, lan):
    pidfile = os.path.join(lan.tmp, "dhcp.pid")
    d = Daemon(os.path.join(bins, "dhcp"), lan.tmp, "-pidfile", pidfile, *FAST).start()
    try:
        assert open(pidfile).read().strip() == str(d.proc.pid)
        assert os.stat(d.socket).st_mode & 0o077 == 0  # root only: it hands out addresses
        d.kill(signal.SIGTERM)
        assert not os.path.exists(pidfile) and not os.path.exists(d.socket)
        assert os.path.isdir(d.state)  # leases (none here) stay for the next start
    finally:
        d.kill()


def test_daemon_flags_parse_like_go():
    from plugins.dhcp import flags

    f = flags.parse(["-timeout", "1m2s", "--resendmax=500ms", "-broadcast", "-socketpath=/x/y.sock"])
    assert (f.timeout, f.resendmax, f.broadcast, f.socketpath) == (62.0, 0.5, True, "/x/y.sock")
    for bad in (["-pidfile", "rel"], ["-nope"], ["-timeout", "10"], ["-timeout"]):
        with pytest.raises(flags.UsageError):
            flags.parse(bad)
