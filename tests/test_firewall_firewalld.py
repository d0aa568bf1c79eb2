"""The firewall plugin's firewalld backend against a real firewalld (Debian's package),
started privately for each test: its own network namespace, a private mount namespace
with its own D-Bus system bus (tests/firewalld_env.py). The plugin runs inside the same
namespaces; what firewalld holds is read with ``firewall-cmd`` (firewalld's own client,
not ours), our records and rules with ``ls``/``nft``/``iptables``.

Which build runs: the source launchers (``dist/src-bin``) unless ``CNIPY_TEST_BIN_DIR``
names another directory holding the plugins (``dist/bin`` after ``make bin``).

Skipped only when firewalld is not installed (build/setup.sh installs it, starting
nothing), with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.firewall_common import NET, Host, prev_result, tag
from tests.firewalld_env import BUS_SOCKET, FirewalldEnv, missing
from tests.helpers import REF_BIN, SRC_BIN

ZONE = "trusted"
REF_FIREWALL = os.path.join(REF_BIN, "firewall")
FWD = {"backend": "firewalld"}
AUTO = {"backend": ""}


def _bin_dir() -> str:
    d = os.environ.get("CNIPY_TEST_BIN_DIR") or SRC_BIN
    if not os.path.exists(os.path.join(d, "firewall")):
        pytest.fail(f"no firewall plugin in {d}: run `make bin` or set CNIPY_TEST_BIN_DIR", pytrace=False)
    return d


@pytest.fixture
def env(tmp_path):
    """A private network + mount namespace with its own system bus; firewalld not started."""
    why = missing()
    if why:
        pytest.skip(why)
    e = FirewalldEnv(tmp_path, _bin_dir())
    try:
        e.start_bus()
        yield e
    finally:
        e.close()


@pytest.fixture
def fwd(env):
    """``env`` with firewalld running on its bus."""
    env.start_firewalld()
    return env


def _conf(addrs: list[str], version: str = "1.0.0", bridge: str = "cni0", **keys) -> dict:
    return Host.fw_conf(prev_result(addrs, bridge=bridge, version=version), version, **keys)


def _ok(out) -> None:
    assert out.ok, (out.rc, out.stdout, out.stderr[-2000:])


# -- ADD, DEL ---------------------------------------------------------------------------

def test_add_makes_zone_sources_and_del_without_prev_result_removes_them(fwd):
    conf = _conf(["10.88.0.5/24", "fd00:88::5/64"], **FWD)
    other = _conf(["10.88.0.6/24"], **FWD)
    out = fwd.plugin("ADD", conf)
    _ok(out)
    assert out.doc["ips"] == conf["prevResult"]["ips"]  # prevResult passed on
    _ok(fwd.plugin("ADD", other, cid="c2"))
    assert sorted(fwd.sources()) == ["10.88.0.5/32", "10.88.0.6/32", "fd00:88::5/128"]
    assert fwd.records() == [tag("c1"), tag("c2")]
    rec = fwd.record(tag("c1"))
    assert (rec["backend"], rec["zone"]) == ("firewalld", ZONE)
    assert rec["sources"] == ["10.88.0.5/32", "fd00:88::5/128"]
    assert fwd.run("stat", "-c", "%a", "/run/cni-py/firewalld").strip() == "700"
    assert fwd.run("stat", "-c", "%a", f"/run/cni-py/firewalld/{tag('c1')}").strip() == "600"
    assert "cnipy_firewall" not in fwd.nft() and "CNI-FORWARD" not in fwd.iptables()  # zone sources only
    out = fwd.plugin("DEL", Host.fw_conf(None, **FWD))
    assert out.ok and out.stdout == b"", out
    assert fwd.sources() == ["10.88.0.6/32"] and fwd.records() == [tag("c2")]
    _ok(fwd.plugin("CHECK", other, cid="c2"))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD)))  # again: nothing there, fine
    _ok(fwd.plugin("DEL", other, cid="c2"))
    assert fwd.sources() == [] and fwd.records() == []


def test_re_add_replaces_the_attachments_sources(fwd):
    _ok(fwd.plugin("ADD", _conf(["10.88.0.5/24", "10.88.0.6/24"], **FWD)))
    conf = _conf(["10.88.0.6/24", "10.88.0.8/24"], **FWD)
    _ok(fwd.plugin("ADD", conf))
    assert sorted(fwd.sources()) == ["10.88.0.6/32", "10.88.0.8/32"]
    assert fwd.record(tag("c1"))["sources"] == ["10.88.0.6/32", "10.88.0.8/32"]
    _ok(fwd.plugin("CHECK", conf))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD)))
    assert fwd.sources() == []


def test_parallel_adds_and_dels_keep_every_record(fwd):
    """Eight attachments at once, two of them sharing an address: every source and record
    is there after the ADDs (the backend's lock serializes the record updates), none after
    the DELs, the shared address going with its last holder."""
    from concurrent.futures import ThreadPoolExecutor

    addrs = {f"p{i}": f"10.88.1.{i % 7 + 2}/24" for i in range(8)}  # p0 and p7 share 10.88.1.2
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda c: fwd.plugin("ADD", _conf([addrs[c]], **FWD), cid=c), addrs))
    for out in outs:
        _ok(out)
    assert sorted(fwd.sources()) == sorted({a.replace("/24", "/32") for a in addrs.values()})
    assert fwd.records() == sorted(tag(c) for c in addrs)
    for c in addrs:
        _ok(fwd.plugin("CHECK", _conf([addrs[c]], **FWD), cid=c))
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda c: fwd.plugin("DEL", Host.fw_conf(None, **FWD), cid=c), addrs))
    for out in outs:
        _ok(out)
    assert fwd.sources() == [] and fwd.records() == []


def test_sources_shared_or_someone_elses_stay(fwd):
    """An address reused by a new attachment before the old one's DEL stays until the last
    holder goes; a source the administrator had put in the zone is never removed by us."""
    _ok(fwd.plugin("ADD", _conf(["10.88.0.5/24"], **FWD), cid="old"))
    _ok(fwd.plugin("ADD", _conf(["10.88.0.5/24"], **FWD), cid="new"))
    assert fwd.sources() == ["10.88.0.5/32"]
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD), cid="old"))
    assert fwd.sources() == ["10.88.0.5/32"], "the new attachment still holds it"
    _ok(fwd.plugin("CHECK", _conf(["10.88.0.5/24"], **FWD), cid="new"))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD), cid="new"))
    assert fwd.sources() == []
    fwd.cmd(f"--zone={ZONE}", "--add-source=10.88.0.9/32")  # the administrator's
    _ok(fwd.plugin("ADD", _conf(["10.88.0.9/24"], **FWD), cid="c3"))
    assert fwd.record(tag("c3"))["sources"] == [], "not ours: it was there before"
    _ok(fwd.plugin("CHECK", _conf(["10.88.0.9/24"], **FWD), cid="c3"))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD), cid="c3"))
    assert fwd.sources() == ["10.88.0.9/32"] and fwd.records() == []


def test_the_reference_ignores_querysource_and_del_needs_prev_result(fwd):
    """For comparison, the reference plugin (/usr/lib/cni/firewall) on the same firewalld:
    its CHECK passes with the source gone (it ignores querySource's answer), its DEL
    without prevResult removes nothing. Ours, given prevResult, releases what it left."""
    conf = _conf(["10.88.0.5/24"], **FWD)
    _ok(fwd.plugin("ADD", conf, binary=REF_FIREWALL))
    assert fwd.sources() == ["10.88.0.5/32"]
    fwd.cmd(f"--zone={ZONE}", "--remove-source=10.88.0.5/32")
    _ok(fwd.plugin("CHECK", conf, binary=REF_FIREWALL))  # the reference's defect
    _ok(fwd.plugin("ADD", conf, binary=REF_FIREWALL))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD), binary=REF_FIREWALL))
    assert fwd.sources() == ["10.88.0.5/32"], "the reference's DEL without prevResult removes nothing"
    out = fwd.plugin("CHECK", conf)  # ours: no record of ADD, whatever firewalld holds
    assert out.code == 102, out
    _ok(fwd.plugin("DEL", conf))  # ours with prevResult: the reference's source goes
    assert fwd.sources() == []


def test_del_with_prev_result_spares_sources_a_record_claims(fwd):
    """A reference-made attachment's DEL (prevResult, no record) removes its sources, but
    not one a record of ours claims (an address two attachments were given)."""
    _ok(fwd.plugin("ADD", _conf(["10.88.0.6/24"], **FWD), cid="ours"))
    _ok(fwd.plugin("ADD", _conf(["10.88.0.5/24", "10.88.0.6/24"], **FWD), binary=REF_FIREWALL, cid="ref"))
    assert sorted(fwd.sources()) == ["10.88.0.5/32", "10.88.0.6/32"]
    _ok(fwd.plugin("DEL", _conf(["10.88.0.5/24", "10.88.0.6/24"], **AUTO), cid="ref"))
    assert fwd.sources() == ["10.88.0.6/32"], "claimed by our record: stays"
    _ok(fwd.plugin("CHECK", _conf(["10.88.0.6/24"], **FWD), cid="ours"))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD), cid="ours"))
    assert fwd.sources() == [] and fwd.records() == []


def test_a_source_in_another_zone_is_a_conflict_nothing_left(fwd):
    fwd.cmd("--zone=public", "--add-source=10.88.0.6/32")
    out = fwd.plugin("ADD", _conf(["10.88.0.5/24", "10.88.0.6/24"], **FWD))
    assert out.code == 101 and "10.88.0.6/32" in out.doc["msg"], out
    assert fwd.sources() == [] and fwd.sources("public") == ["10.88.0.6/32"] and fwd.records() == []


def test_unknown_zone_is_code_7_naming_the_key(fwd):
    out = fwd.plugin("ADD", _conf(["10.88.0.5/24"], firewalldZone="nosuchzone", **FWD))
    assert out.code == 7 and "firewalldZone" in out.doc["msg"] and "nosuchzone" in out.doc["msg"], out
    assert fwd.records() == []
    out = fwd.plugin("STATUS", Host.fw_conf(None, "1.1.0", firewalldZone="nosuchzone", **FWD))
    assert out.code == 50 and "nosuchzone" in out.doc["msg"], out


# -- CHECK -------------------------------------------------------------------------------

def test_check_honours_firewalds_answer_and_creates_nothing(fwd):
    conf = _conf(["10.88.0.5/24", "fd00:88::5/64"], **FWD)
    out = fwd.plugin("CHECK", conf)
    assert out.code == 102, out
    assert fwd.sources() == [] and fwd.records() == [], "CHECK must create nothing"
    assert fwd.run("sh", "-c", "test -e /run/cni-py/firewalld && echo yes || echo no").strip() == "no"
    _ok(fwd.plugin("ADD", conf))
    _ok(fwd.plugin("CHECK", conf))
    fwd.cmd(f"--zone={ZONE}", "--remove-source=fd00:88::5/128")  # behind the plugin's back
    out = fwd.plugin("CHECK", conf)
    assert out.code == 102 and "fd00:88::5/128" in out.doc["msg"] and "10.88.0.5" not in out.doc["msg"], out
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD)))  # the source already gone: fine
    assert fwd.sources() == [] and fwd.records() == []


# -- the backend: automatic, chosen at ADD, not running ----------------------------------

def test_automatic_backend_is_firewalld_when_it_runs(fwd):
    conf = _conf(["10.88.0.5/24"], **AUTO)  # podman writes {"backend": ""}
    _ok(fwd.plugin("ADD", conf))
    assert fwd.sources() == ["10.88.0.5/32"] and fwd.records() == [tag("c1")]
    assert tag("c1") not in fwd.nft() and tag("c1") not in fwd.iptables()
    _ok(fwd.plugin("CHECK", conf))
    _ok(fwd.plugin("STATUS", Host.fw_conf(None, "1.1.0")))
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **AUTO)))
    assert fwd.sources() == [] and fwd.records() == []


def test_del_cleans_the_backend_add_used_whatever_started_or_stopped(env):
    # Added to firewalld, firewalld stopped: its runtime sources are gone; DEL succeeds, drops the record.
    env.start_firewalld()
    _ok(env.plugin("ADD", _conf(["10.88.0.5/24"], **AUTO), cid="f1"))
    assert env.sources() == ["10.88.0.5/32"]
    env.stop_firewalld()
    out = env.plugin("DEL", Host.fw_conf(None, **AUTO), cid="f1")
    assert out.ok and out.stdout == b"", out
    assert env.records() == []
    # Added while firewalld was stopped (automatic: nftables), firewalld started since: DEL
    # cleans nftables and leaves firewalld alone.
    _ok(env.plugin("ADD", _conf(["10.88.0.6/24"], **AUTO), cid="n1"))
    assert tag("n1") in env.nft() and env.records() == []
    env.start_firewalld()
    assert env.sources() == []
    _ok(env.plugin("CHECK", _conf(["10.88.0.6/24"], **AUTO), cid="n1"))  # checks what ADD made: nftables
    _ok(env.plugin("DEL", Host.fw_conf(None, **AUTO), cid="n1"))
    assert tag("n1") not in env.nft() and env.sources() == [] and env.records() == []


def test_explicit_firewalld_not_running_is_code_50_naming_the_bus_or_the_name(env, tmp_path):
    conf = _conf(["10.88.0.5/24"], **FWD)
    out = env.plugin("ADD", conf)  # a bus, no firewalld on it
    assert out.code == 50 and "org.fedoraproject.FirewallD1" in out.doc["msg"] and NET in out.doc["msg"], out
    assert BUS_SOCKET in out.doc["msg"], out
    nobus = str(tmp_path / "no-such-bus")
    out = env.plugin("ADD", conf, env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={nobus}"})
    assert out.code == 50 and nobus in out.doc["msg"] and "firewalld" in out.doc["msg"], out
    out = env.plugin("STATUS", Host.fw_conf(None, "1.1.0", **FWD))
    assert out.code == 50 and "firewalld" in out.doc["msg"], out
    assert env.records() == [] and tag("c1") not in env.nft()
    _ok(env.plugin("DEL", Host.fw_conf(None, **FWD)))  # DEL never blocks
    # Automatic without firewalld is ours (nftables here), as before.
    _ok(env.plugin("ADD", _conf(["10.88.0.5/24"], **AUTO)))
    assert tag("c1") in env.nft()
    _ok(env.plugin("DEL", Host.fw_conf(None, **AUTO)))


def test_status_is_firewalld_answering(fwd):
    _ok(fwd.plugin("STATUS", Host.fw_conf(None, "1.1.0", **FWD)))
    _ok(fwd.plugin("STATUS", Host.fw_conf(None, "1.1.0", ingressPolicy="same-bridge", **FWD)))
    fwd.stop_firewalld()
    out = fwd.plugin("STATUS", Host.fw_conf(None, "1.1.0", **FWD))
    assert out.code == 50 and "firewalld is not running" in out.doc["msg"], out


# -- GC ----------------------------------------------------------------------------------

def test_gc_removes_sources_of_attachments_not_listed(fwd):
    ca, cb = _conf(["10.88.0.5/24"], **FWD), _conf(["10.88.0.6/24"], **FWD)
    other_net = dict(_conf(["10.88.0.7/24"], **FWD), name="othernet")
    for cid, c in (("a", ca), ("b", cb), ("z", other_net)):
        _ok(fwd.plugin("ADD", c, cid=cid))
    valid = [{"containerID": "a", "ifname": "eth0"}]
    gc = Host.fw_conf(None, "1.1.0", **FWD, **{"cni.dev/valid-attachments": valid})
    out = fwd.plugin("GC", gc)
    assert out.ok and out.stdout == b"", out
    assert sorted(fwd.sources()) == ["10.88.0.5/32", "10.88.0.7/32"]
    assert fwd.records() == [tag("a"), tag("z", net="othernet")]
    _ok(fwd.plugin("CHECK", ca, cid="a"))
    fwd.stop_firewalld()  # GC with firewalld gone drops the records: their sources went with it
    gc = Host.fw_conf(None, "1.1.0", **FWD, **{"cni.dev/valid-attachments": []})
    _ok(fwd.plugin("GC", gc))
    assert fwd.records() == [tag("z", net="othernet")]
    _ok(fwd.plugin("DEL", other_net, cid="z"))
    assert fwd.records() == []


# -- ingressPolicy: isolation in our own backend -----------------------------------------

@pytest.mark.parametrize("isolation", ["nftables", "iptables"])
@pytest.mark.parametrize("policy", ["same-bridge", "isolated"])
def test_ingress_policy_isolation_goes_to_our_backend_and_is_cleaned(fwd, isolation, policy):
    """firewalld accepts (the zone); the bridge's isolation is ours, in the backend the
    automatic choice picks (iptables where iptables' FORWARD policy is DROP)."""
    if isolation == "iptables":
        fwd.run("iptables", "-P", "FORWARD", "DROP")
    conf = _conf(["10.88.0.5/24"], bridge="fwdbr0", ingressPolicy=policy, **FWD)
    _ok(fwd.plugin("ADD", conf))
    assert fwd.sources() == ["10.88.0.5/32"]
    assert fwd.record(tag("c1"))["isolation"] == ["fwdbr0", policy]
    if isolation == "nftables":
        text = fwd.nft()
        assert '"fwdbr0" . "fwdbr0"' in text and tag("c1") in text
        ours = text.split("table inet cnipy_firewall")[1]
        assert "10.88.0.5" not in ours, "no accept element: the zone decides"
    else:
        text = fwd.iptables()
        assert "-A CNI-ISOLATION-STAGE-2 -o fwdbr0" in text
        assert ("-i fwdbr0 -o fwdbr0" in text) == (policy == "isolated")
        assert f'-A CNI-FORWARD -s 10.88.0.5/32 -m comment --comment "{tag("c1")}/{policy}/fwdbr0"\n' in text
        assert "-j ACCEPT" not in text and "-j CNI-FORWARD" not in text, "no accept rule, no jump: a marker"
        assert "cnipy_firewall" not in fwd.nft()
    _ok(fwd.plugin("CHECK", conf))
    out = fwd.plugin("DEL", Host.fw_conf(None, **FWD))
    assert out.ok and out.stdout == b"", out
    assert fwd.sources() == [] and fwd.records() == []
    assert "fwdbr0" not in fwd.nft() and "fwdbr0" not in fwd.iptables() and tag("c1") not in fwd.iptables()


def test_isolation_missing_fails_check(fwd):
    conf = _conf(["10.88.0.5/24"], bridge="fwdbr0", ingressPolicy="same-bridge", **FWD)
    _ok(fwd.plugin("ADD", conf))
    fwd.run("nft", "flush", "set", "inet", "cnipy_firewall", "bridges")
    out = fwd.plugin("CHECK", conf)
    assert out.code == 102 and "fwdbr0" in out.doc["msg"], out
    _ok(fwd.plugin("DEL", conf))
    assert "fwdbr0" not in fwd.nft() and fwd.sources() == []


# -- versions ----------------------------------------------------------------------------

def test_every_spec_version(fwd):
    """Every version with chaining (prevResult came with 0.3.0); CHECK from 0.4.0, GC from 1.1.0."""
    for i, version in enumerate(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]):
        conf = _conf([f"10.88.0.{10 + i}/24"], version, **FWD)
        out = fwd.plugin("ADD", conf, cid=f"v{i}")
        assert out.ok and out.doc["cniVersion"] == version, (version, out)
        assert f"10.88.0.{10 + i}/32" in fwd.sources()
        if version >= "0.4.0":
            _ok(fwd.plugin("CHECK", conf, cid=f"v{i}"))
        _ok(fwd.plugin("DEL", Host.fw_conf(None, version, **FWD), cid=f"v{i}"))
    assert fwd.sources() == [] and fwd.records() == []


# -- our D-Bus client against the real bus ------------------------------------------------

CLIENT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from cnilib import dbus
FW, PATH = "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1"
out = {}
with dbus.Connection() as c:
    out["unique"] = c.unique_name
    out["owned"] = [c.name_has_owner(FW), c.name_has_owner("org.example.Nobody")]
    bus = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
    out["uid"] = c.call(*bus, "GetConnectionUnixUser", "s", (c.unique_name,))[0]
    out["creds"] = sorted(c.call(*bus, "GetConnectionCredentials", "s", (c.unique_name,))[0])
    out["zones"] = c.call(FW, PATH, FW + ".zone", "getZones")[0]
    out["added"] = c.call(FW, PATH, FW + ".zone", "addSource", "ss", ("trusted", "192.0.2.7/32"))[0]
    out["query"] = [c.call(FW, PATH, FW + ".zone", "querySource", "ss", ("trusted", s))[0]
                    for s in ("192.0.2.7/32", "192.0.2.8/32")]
    out["zone_of"] = c.call(FW, PATH, FW + ".zone", "getZoneOfSource", "s", ("192.0.2.7/32",))[0]
    out["state"] = c.call(FW, PATH, "org.freedesktop.DBus.Properties", "Get", "ss", (FW, "state"))[0]
    errors = []
    for args in (("addSource", "ss", ("trusted", "192.0.2.7/32")),
                 ("removeSource", "ss", ("trusted", "192.0.2.9/32")), ("noSuchMethod", "", ())):
        try:
            c.call(FW, PATH, FW + ".zone", *args)
        except dbus.DBusError as e:
            errors.append([e.name, e.message.split(":")[0]])
    out["errors"] = errors
    c.call(FW, PATH, FW + ".zone", "removeSource", "ss", ("trusted", "192.0.2.7/32"))
print(json.dumps(out))
"""


def test_our_dbus_client_against_the_real_bus_and_firewalld(fwd):
    """cnilib.dbus itself: authentication, Hello, the signatures we send (s, ss) and the
    replies we read (s, b, u, as, a{sv}, a variant), error names and messages."""
    with open(os.path.join(SRC_BIN, "firewall")) as f:
        python = f.readline()[2:].split()[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = json.loads(fwd.run(python, "-I", "-c", CLIENT_SCRIPT, root))
    assert out["unique"].startswith(":1.") and out["owned"] == [True, False] and out["uid"] == 0
    assert {"ProcessID", "UnixUserID"} <= set(out["creds"])
    assert {"trusted", "public", "drop"} <= set(out["zones"])
    assert out["added"] == "trusted" and out["query"] == [True, False] and out["zone_of"] == "trusted"
    assert out["state"] == "RUNNING"
    assert out["errors"] == [["org.fedoraproject.FirewallD1.Exception", "ZONE_ALREADY_SET"],
                             ["org.fedoraproject.FirewallD1.Exception", "UNKNOWN_SOURCE"],
                             ["org.freedesktop.DBus.Error.UnknownMethod", out["errors"][2][1]]]
    assert fwd.sources() == []


# -- a bus or a firewalld that does not answer -------------------------------------------

class HungBus:
    """A Unix socket that accepts connections and never says a word."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        os.unlink(self.path)


def test_a_hung_bus_is_a_bounded_time_error_naming_the_socket(env, tmp_path):
    hung = HungBus(str(tmp_path / "hung-bus"))
    try:
        bus = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={hung.path}"}
        for keys in (FWD, AUTO):  # automatic too: we cannot tell whether firewalld is in charge
            t0 = time.monotonic()
            out = env.plugin("ADD", _conf(["10.88.0.5/24"], **keys), env=bus)
            took = time.monotonic() - t0
            assert out.code == 11 and hung.path in out.doc["msg"], out
            assert 4.5 < took < 20, f"the bound is 5 s per connection; took {took:.1f} s"
        assert env.records() == [] and tag("c1") not in env.nft()
        before = hung.accepted
        t0 = time.monotonic()
        _ok(env.plugin("DEL", Host.fw_conf(None, **AUTO), env=bus))  # no record: no connection at all
        assert hung.accepted == before and time.monotonic() - t0 < 4
        out = env.plugin("STATUS", Host.fw_conf(None, "1.1.0", **FWD), env=bus)
        assert out.code == 11 and hung.path in out.doc["msg"], out
    finally:
        hung.close()


def test_a_frozen_firewalld_is_code_11_and_del_cleans_up_after(fwd):
    """firewalld stopped with SIGSTOP: the bus answers, firewalld does not. ADD fails in
    bounded time (one wait: the rollback does not wait again) and keeps the record of the
    source whose fate is unknown; once firewalld resumes, DEL without prevResult leaves
    nothing, whatever firewalld made of the queued call."""
    conf = _conf(["10.88.0.5/24"], **FWD)
    fwd.firewalld.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        out = fwd.plugin("ADD", conf)
        took = time.monotonic() - t0
    finally:
        fwd.firewalld.send_signal(signal.SIGCONT)
    assert out.code == 11 and "addSource" in out.doc["msg"] and BUS_SOCKET in out.doc["msg"], out
    assert 4.5 < took < 15, f"one bounded wait of 5 s; took {took:.1f} s"
    assert fwd.record(tag("c1"))["sources"] == ["10.88.0.5/32"], "a source whose fate is unknown is recorded"
    assert fwd.cmd("--state").strip() == "running"
    _ok(fwd.plugin("DEL", Host.fw_conf(None, **FWD)))
    assert fwd.sources() == [] and fwd.records() == []


# -- start-up ----------------------------------------------------------------------------

def _traced(env: FirewalldEnv, verb: str, conf: dict, cid: str = "c1") -> set[str]:
    """The modules the plugin run from source imports (``-X importtime``)."""
    src = os.environ.get("CNIPY_TEST_SRC_BIN_DIR") or SRC_BIN
    with open(os.path.join(src, "firewall")) as f:
        python = f.readline()[2:].split()[0]
    penv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": cid,
            "CNI_NETNS": "/var/run/netns/none", "CNI_IFNAME": "eth0", "CNI_PATH": src}
    argv = env.enter() + [python, "-X", "importtime", "-IS", os.path.join(src, "firewall")]
    p = subprocess.run(argv, input=json.dumps(conf).encode(), env=penv, capture_output=True, timeout=60,
                       check=False)
    assert p.returncode == 0, (verb, p.stdout, p.stderr[-2000:])
    lines = p.stderr.decode().splitlines()
    return {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}


def test_the_dbus_client_is_loaded_only_on_the_firewalld_path(env):
    """nftables/iptables runs (named, or automatic where no bus socket exists) never import
    the D-Bus client; the firewalld path imports ours, never python3-dbus, GLib or ``socket``."""
    for backend in ("nftables", "iptables"):
        conf = _conf(["10.88.0.5/24"], backend=backend)
        for verb in ("ADD", "CHECK", "DEL"):
            mods = _traced(env, verb, conf)
            assert not {"cnilib.dbus", "cnilib.firewall.firewalld.client"} & mods, (backend, verb)
    env.run("mv", BUS_SOCKET, "/run/dbus/moved")  # automatic with no bus socket: a stat, no client
    try:
        for verb in ("ADD", "CHECK", "DEL"):
            mods = _traced(env, verb, _conf(["10.88.0.6/24"], **AUTO), cid="auto")
            assert "cnilib.dbus" not in mods, verb
    finally:
        env.run("mv", "/run/dbus/moved", BUS_SOCKET)
    env.start_firewalld()
    mods = _traced(env, "ADD", _conf(["10.88.0.7/24"], **FWD), cid="f")
    assert "cnilib.dbus" in mods and "cnilib.firewall.firewalld.client" in mods
    unwanted = {"socket", "dbus", "gi", "selectors"} & mods
    assert not unwanted, unwanted
    _ok(env.plugin("DEL", Host.fw_conf(None, **FWD), cid="f"))
    assert env.sources() == [] and tag("c1") not in env.nft() and tag("auto") not in env.nft()
