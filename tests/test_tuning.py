"""tuning: real plugin processes on the real kernel, inside throwaway namespaces.

What ADD leaves in the container (sysctls read from /proc, MAC, MTU, promisc, allmulti,
txqueuelen), that DEL restores every one of them (sysctls included), CHECK, the
allowlist, key precedence and Go key matching, hostile input, and differential tests
against the reference (Debian's 1.1.1 in /usr/lib/cni), including each reference bug
next to our behaviour. The plugin runs in a throwaway host namespace; eth0 lives in a
throwaway container namespace (tests.tuning_common.World).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.helpers import Netns, sh
from tests.tuning_common import CID, NET, World, bin_dir

TCP_RMEM = "net/ipv4/tcp_rmem"
ARP_NOTIFY = "net/ipv4/conf/eth0/arp_notify"


@pytest.fixture(scope="module")
def tuning(request) -> str:
    path = os.path.join(bin_dir(request), "tuning")
    if not os.path.exists(path):
        pytest.fail(f"no tuning plugin at {path}: run `make bin` (or set CNIPY_TEST_BIN_DIR)", pytrace=False)
    return path


@pytest.fixture
def w(tmp_path, tuning):
    world = World(tmp_path, tuning)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def wx(tmp_path, tuning):
    """eth0 is a macvlan on a parent of MTU 1500: an MTU of 9000 passes validation, then
    the kernel refuses it after other changes were made."""
    world = World(tmp_path, tuning, kind="macvlan")
    try:
        yield world
    finally:
        world.close()


FULL = dict(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1", "net/ipv4/tcp_rmem": "4096 87380 6291456",
                    "net.ipv4.ip_forward": "1"},
            mac="0a:00:00:00:00:42", mtu=1400, promisc=True, allmulti=True, txQLen=500)


# -- ADD and DEL ----------------------------------------------------------------------------

def test_add_sets_everything_and_del_restores_everything(w):
    before = w.link()
    sysctls = {p: w.sysctl(p) for p in (ARP_NOTIFY, TCP_RMEM, "net/ipv4/ip_forward")}
    conf = w.conf(**FULL)
    out = w.run("ADD", conf)
    assert out.ok, out
    expected = w.prev()
    expected["interfaces"][1]["mac"] = "0a:00:00:00:00:42"  # only the interface named CNI_IFNAME
    assert out.doc == expected
    assert w.link() == {"mac": "0a:00:00:00:00:42", "mtu": 1400, "promisc": True, "allmulti": True, "txqlen": 500}
    assert w.sysctl(ARP_NOTIFY) == "1" and w.sysctl("net/ipv4/ip_forward") == "1"
    assert w.sysctl(TCP_RMEM).split() == ["4096", "87380", "6291456"]
    # Backup: root's only (the reference makes directories 0600).
    [name] = w.backups()
    assert name == f"{CID}_eth0.json"
    assert stat.S_IMODE(os.stat(w.data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(w.data_dir, name)).st_mode) == 0o600
    assert w.run("CHECK", conf).ok
    assert w.run("DEL", conf).ok
    assert w.link() == before
    assert {p: w.sysctl(p) for p in sysctls} == sysctls
    assert w.backups() == []
    assert w.run("DEL", conf).ok  # twice is fine


def test_sysctl_only_config_and_empty_config(w):
    conf = w.conf(sysctl={"net/ipv6/conf/IFNAME/accept_ra": "0"})
    orig = w.sysctl("net/ipv6/conf/eth0/accept_ra")
    out = w.run("ADD", conf)
    assert out.ok and out.doc == w.prev(), out
    assert w.sysctl("net/ipv6/conf/eth0/accept_ra") == "0"
    assert w.run("DEL", conf).ok
    assert w.sysctl("net/ipv6/conf/eth0/accept_ra") == orig
    # podman's generated tuning entry has no keys at all: prevResult passes through.
    empty = w.conf(data_dir=False)
    out = w.run("ADD", empty)
    assert out.ok and out.doc == w.prev() and w.backups() == []
    assert w.run("CHECK", empty).ok and w.run("DEL", empty).ok


def test_repeated_add_keeps_the_original_values(w):
    orig = w.link()["mtu"]
    assert w.run("ADD", w.conf(mtu=1400)).ok
    assert w.run("ADD", w.conf(mtu=1300)).ok
    assert w.link()["mtu"] == 1300
    assert w.run("DEL", w.conf(mtu=1300)).ok
    assert w.link()["mtu"] == orig


def test_failed_add_reverts_every_change(wx):
    w = wx
    before, arp = w.link(), w.sysctl(ARP_NOTIFY)
    conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1"}, mac="0a:00:00:00:00:43", promisc=True,
                  mtu=9000)
    out = w.run("ADD", conf)
    assert out.code == 7 and "mtu" in out.doc["msg"], out
    assert w.link() == before and w.sysctl(ARP_NOTIFY) == arp
    assert w.backups() == []


def test_failed_sysctl_write_reverts_the_earlier_ones(w):
    arp = w.sysctl(ARP_NOTIFY)
    conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.IFNAME.arp_ignore": "abc"})
    out = w.run("ADD", conf)
    assert out.code == 7 and "arp_ignore" in out.doc["msg"], out
    assert w.sysctl(ARP_NOTIFY) == arp and w.backups() == []


def test_missing_interface_and_missing_prev_result(w):
    out = w.run("ADD", w.conf(mtu=1400), ifname="eth9")
    assert out.code == 104 and "eth9" in out.doc["msg"], out
    conf = w.conf(mtu=1400)
    del conf["prevResult"]
    out = w.run("ADD", conf)
    assert out.code == 7 and "prevResult" in out.doc["msg"], out
    assert w.link()["mtu"] == 1500 and w.backups() == []


# -- DEL ------------------------------------------------------------------------------------

def test_del_restores_an_interface_that_goes_back_to_the_host(w):
    """host-device style: a host interface is moved into the container, tuned, and handed
    back after DEL. Ours restores its sysctls and link attributes before it leaves; the
    reference restores the link attributes only."""
    for impl in ("ours", "ref"):
        name = f"hd{impl}"
        w.host.run("ip", "link", "add", name, "type", "veth", "peer", "name", f"p{impl}")
        w.host.run("ip", "link", "set", name, "netns", w.ctr.name)
        w.ctr.run("ip", "link", "set", name, "up")
        path = f"net/ipv4/conf/{name}/arp_ignore"
        orig, orig_mtu = w.sysctl(path), w.link(name)["mtu"]
        conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_ignore": "2"}, mtu=1280)
        run = w.run if impl == "ours" else w.ref
        assert run("ADD", conf, ifname=name).ok
        assert w.sysctl(path) == "2" and w.link(name)["mtu"] == 1280
        assert run("DEL", conf, ifname=name).ok
        assert w.link(name)["mtu"] == orig_mtu
        if impl == "ours":
            assert w.sysctl(path) == orig
        else:
            assert w.sysctl(path) == "2", "the reference was expected to leave the sysctl tuned"
        w.ctr.run("ip", "link", "set", name, "netns", w.host.name)  # host-device's DEL
        assert json.loads(sh("ip", "-j", "link", "show", name, ns=w.host.name))[0]["mtu"] == orig_mtu


def test_del_without_namespace_removes_the_backup(w, tmp_path):
    conf = w.conf(mtu=1400)
    assert w.run("ADD", conf).ok and w.backups()
    assert w.run("DEL", conf, netns="").ok
    assert w.backups() == []
    # The namespace gone (runtimes delete it before the second DEL): still exit 0.
    gone = Netns("tung")
    gone.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    assert w.run("ADD", conf, netns=gone.path, cid="gone1").ok
    path = gone.path
    gone.delete()
    assert w.run("DEL", conf, netns=path, cid="gone1").ok
    assert w.backups() == []


def test_reference_and_ours_read_each_others_backups(w):
    """Switching implementations on a live host: each DEL restores the other's ADD."""
    conf = w.conf(mtu=1400, mac="0a:00:00:00:00:44")
    before = w.link()
    assert w.run("ADD", conf).ok
    assert w.ref("DEL", conf).ok
    assert w.link() == before and w.backups() == []
    assert w.ref("ADD", conf).ok
    assert w.run("DEL", conf).ok
    assert w.link() == before and w.backups() == []


# -- CHECK ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, word", [
    (lambda w: w.set_sysctl(ARP_NOTIFY, "0"), "arp_notify"),
    (lambda w: w.ctr.run("ip", "link", "set", "eth0", "mtu", "1500"), "MTU"),
    (lambda w: w.ctr.run("ip", "link", "set", "eth0", "address", "0a:00:00:00:00:99"), "MAC"),
    (lambda w: w.ctr.run("ip", "link", "set", "eth0", "promisc", "off"), "promisc"),
    (lambda w: w.ctr.run("ip", "link", "set", "eth0", "allmulticast", "off"), "all-multicast"),
    (lambda w: w.ctr.run("ip", "link", "set", "eth0", "txqueuelen", "1000"), "txqueuelen"),
])
def test_check_passes_then_fails_after_a_manual_change(w, change, word):
    conf = w.conf(**FULL)
    assert w.run("ADD", conf).ok
    assert w.run("CHECK", conf).ok
    change(w)
    out = w.run("CHECK", conf)
    assert out.code == 103 and word in out.doc["msg"], out
    assert w.run("DEL", conf).ok


def test_check_compares_sysctls_as_the_kernel_prints_them(w):
    """tcp_rmem is printed with tabs: the reference's CHECK compares strings and fails."""
    conf = w.conf(sysctl={"net.ipv4.tcp_rmem": "4096  87380 6291456"})
    assert w.run("ADD", conf).ok
    assert w.run("CHECK", conf).ok
    ref = w.ref("CHECK", conf)
    assert not ref.ok and "tcp_rmem" in ref.doc["msg"], ref
    assert w.run("DEL", conf).ok


def test_check_substitutes_ifname(w):
    """Debian's reference 1.1.1 does not substitute IFNAME in CHECK (fixed upstream in 1.3.0)."""
    conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1"})
    assert w.run("ADD", conf).ok
    assert w.run("CHECK", conf).ok
    assert not w.ref("CHECK", conf).ok
    assert w.run("DEL", conf).ok


def test_check_ignores_promisc_set_by_someone_else(w):
    conf = w.conf(mtu=1400)
    assert w.run("ADD", conf).ok
    w.ctr.run("ip", "link", "set", "eth0", "promisc", "on")  # a later plugin's doing
    assert w.run("CHECK", conf).ok
    assert not w.ref("CHECK", conf).ok  # the reference insists on promisc off
    assert w.run("DEL", conf).ok


# -- sources, precedence and key case --------------------------------------------------------

def test_mac_precedence_matches_the_reference(w):
    """config < CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac (the reference's order)."""
    cases = [
        (dict(mac="0a:00:00:00:01:01"), "", "0a:00:00:00:01:01"),
        (dict(mac="0a:00:00:00:01:01"), "IgnoreUnknown=1;MAC=0a:00:00:00:01:02", "0a:00:00:00:01:02"),
        (dict(mac="0a:00:00:00:01:01", runtimeConfig={"mac": "0a:00:00:00:01:03"}),
         "IgnoreUnknown=1;MAC=0a:00:00:00:01:02", "0a:00:00:00:01:03"),
        (dict(mac="0a:00:00:00:01:01", runtimeConfig={"mac": "0a:00:00:00:01:03"},
              args={"cni": {"mac": "0a:00:00:00:01:04"}}), "IgnoreUnknown=1;MAC=0a:00:00:00:01:02",
         "0a:00:00:00:01:04"),
    ]
    for keys, args, mac in cases:
        results = []
        for run in (w.run, w.ref):
            conf = w.conf(**keys)
            out = run("ADD", conf, args=args)
            assert out.ok, out
            assert w.link()["mac"] == mac
            results.append(out.doc)
            assert run("DEL", conf, args=args).ok
        assert results[0] == results[1]


def test_args_cni_overrides_and_merges(w):
    conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.IFNAME.arp_ignore": "1"},
                  mtu=1400, promisc=False,
                  args={"cni": {"sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "2"}, "mtu": 1300, "promisc": True,
                                "allmulti": True, "txQLen": 200}})
    assert w.run("ADD", conf).ok
    assert w.sysctl(ARP_NOTIFY) == "1" and w.sysctl("net/ipv4/conf/eth0/arp_ignore") == "2"
    assert w.link() == {"mac": w.link()["mac"], "mtu": 1300, "promisc": True, "allmulti": True, "txqlen": 200}
    assert w.run("CHECK", conf).ok
    assert w.run("DEL", conf).ok
    assert w.sysctl("net/ipv4/conf/eth0/arp_ignore") == "0"


def test_args_cni_sysctl_without_top_level_sysctl(w):
    """The reference panics ("assignment to entry in nil map", exit 2, no JSON)."""
    conf = w.conf(args={"cni": {"sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}}})
    ref = w.ref("ADD", conf)
    assert ref.rc == 2 and ref.doc is None and b"nil map" in ref.stderr
    out = w.run("ADD", conf)
    assert out.ok and out.doc == w.prev(), out
    assert w.sysctl(ARP_NOTIFY) == "1"
    assert w.run("DEL", conf).ok and w.sysctl(ARP_NOTIFY) == "0"


def test_keys_in_go_field_case(w):
    """Keys re-cased as Go field names (containerd sends capability args so) work as in
    the reference; sysctl names are map keys and keep their case."""
    conf = w.conf(data_dir=False, SYSCTL={"net.ipv4.conf.IFNAME.arp_notify": "1"}, Mac="0a:00:00:00:00:45",
                  MTU=1400, Promisc=True, AllMulti=True, TxQLen=300, DataDir=w.data_dir,
                  RuntimeConfig={"MAC": "0a:00:00:00:00:46"})
    out = w.run("ADD", conf)
    assert out.ok, out
    assert w.link() == {"mac": "0a:00:00:00:00:46", "mtu": 1400, "promisc": True, "allmulti": True, "txqlen": 300}
    assert w.sysctl(ARP_NOTIFY) == "1" and w.backups()
    assert w.run("CHECK", conf).ok
    assert w.run("DEL", conf).ok
    assert w.link()["mtu"] == 1500 and w.backups() == []
    out2 = w.run("ADD", w.conf(Args={"CNI": {"Mtu": 1450}}))
    assert out2.ok and w.link()["mtu"] == 1450
    assert w.run("DEL", w.conf()).ok and w.link()["mtu"] == 1500


# -- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_version_passes_prev_result_on(w, version):
    if version in ("0.1.0", "0.2.0"):
        prev = {"cniVersion": version, "ip4": {"ip": "10.66.0.5/24", "gateway": "10.66.0.1",
                                               "routes": [{"dst": "0.0.0.0/0"}]}, "dns": {}}
    else:
        prev = w.prev(version)
        if version.startswith("0."):
            for ip in prev["ips"]:
                ip["version"] = "4"
    conf = w.conf(version, prev=prev, mac="0a:00:00:00:00:47", mtu=1400)
    out = w.run("ADD", conf)
    assert out.ok, out
    expected = json.loads(json.dumps(prev))
    if "interfaces" in expected:
        expected["interfaces"][1]["mac"] = "0a:00:00:00:00:47"
    assert out.doc == expected
    if version not in ("1.1.0",):  # Debian's reference 1.1.1 predates CNI 1.1.0
        assert w.run("DEL", conf).ok
        ref = w.ref("ADD", conf)
        assert ref.ok and ref.doc == out.doc, (ref, out)
        assert w.ref("DEL", conf).ok
    else:
        assert w.run("DEL", conf).ok
    if version >= "0.4.0":
        assert w.run("ADD", conf).ok and w.run("CHECK", conf).ok and w.run("DEL", conf).ok
    else:
        assert w.run("CHECK", conf).code == 1
    assert w.link()["mtu"] == 1500 and w.backups() == []


def test_gc_removes_stale_backups_of_its_network_only(w):
    for cid in ("keep1", "gone1"):
        assert w.run("ADD", w.conf(mtu=1400), cid=cid).ok
    other = dict(w.conf(mtu=1400), name="othernet")
    assert w.run("ADD", other, cid="other1").ok
    assert len(w.backups()) == 3
    gc = {"cniVersion": "1.1.0", "name": NET, "type": "tuning", "dataDir": w.data_dir,
          "cni.dev/valid-attachments": [{"containerID": "keep1", "ifname": "eth0"}]}
    assert w.run("GC", gc).ok
    assert w.backups() == ["keep1_eth0.json", "other1_eth0.json"]
    for cid, c in (("keep1", w.conf()), ("other1", other)):
        assert w.run("DEL", c, cid=cid).ok
    assert w.backups() == []
    assert w.run("STATUS", {"cniVersion": "1.1.0", "name": NET, "type": "tuning"}).ok


# -- the allowlist --------------------------------------------------------------------------

def test_allowlist(w):
    with open(w.allowlist, "w") as f:
        f.write("  ^net\\.ipv4\\.conf\\.IFNAME\\.arp_notify$\n\n^net/core/\n")
    ok = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1"})
    assert w.run("ADD", ok).ok and w.run("DEL", ok).ok
    bad = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.eth0.arp_ignore": "1"})
    out = w.run("ADD", bad)
    assert out.code == 7 and "arp_ignore" in out.doc["msg"] and "allowlist" in out.doc["msg"], out
    assert w.sysctl(ARP_NOTIFY) == "0" and w.backups() == []
    # args.cni keys are checked too (after the merge).
    out = w.run("ADD", w.conf(args={"cni": {"sysctl": {"net.ipv4.ip_forward": "1"}}}))
    assert out.code == 7 and "ip_forward" in out.doc["msg"]
    assert w.run("STATUS", {"cniVersion": "1.1.0", "name": NET, "type": "tuning"}).ok
    with open(w.allowlist, "w") as f:
        f.write("^net\\.(\n")
    out = w.run("ADD", ok)
    assert out.code == 7 and "line 1" in out.doc["msg"], out
    st = w.run("STATUS", {"cniVersion": "1.1.0", "name": NET, "type": "tuning"})
    assert st.code == 50, st
    os.unlink(w.allowlist)
    os.mkfifo(w.allowlist)  # never opened for reading in a way that blocks
    out = w.run("ADD", ok, timeout=10)
    assert out.code == 5, out
    os.unlink(w.allowlist)


# -- hostile input --------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    "kernel.hostname", "kernel/hostname", "net/../kernel/hostname", "net.ipv4/../../kernel/hostname",
    "/proc/sys/kernel/hostname", "net", "net/", "", "net/ipv4/../core/somaxconn", "IFNAME/ipv4/ip_forward",
    "net\u0000/ipv4/ip_forward",
])
def test_sysctl_keys_cannot_leave_proc_sys_net(w, key):
    conf = w.conf(sysctl={key: "1", "net.ipv4.conf.IFNAME.arp_notify": "1"})
    out = w.run("ADD", conf)
    assert out.code == 7 and out.doc and "traceback" not in out.stderr.decode().lower(), out
    assert w.sysctl(ARP_NOTIFY) == "0" and w.backups() == []


@pytest.mark.parametrize("key", ["/net/ipv4/conf/IFNAME/arp_notify", "../net/ipv4/conf/IFNAME/arp_notify",
                                 "net..ipv4.conf.IFNAME.arp_notify"])
def test_keys_are_relative_to_proc_sys_like_the_reference(w, key):
    """Every dot is a slash before anything else, so ``..`` in a key is two empty
    components, and a leading slash is dropped: both stay under /proc/sys (as in the
    reference, whose results agree)."""
    conf = w.conf(sysctl={key: "1"})
    out = w.run("ADD", conf)
    assert out.ok and w.sysctl(ARP_NOTIFY) == "1", out
    assert w.run("DEL", conf).ok and w.sysctl(ARP_NOTIFY) == "0"
    ref = w.ref("ADD", conf)
    assert ref.ok and ref.doc == out.doc and w.sysctl(ARP_NOTIFY) == "1"
    assert w.ref("DEL", conf).ok


@pytest.mark.parametrize("keys, word", [
    (dict(sysctl={"net.ipv4.ip_forward": 1}), "sysctl"),
    (dict(sysctl=["net.ipv4.ip_forward=1"]), "sysctl"),
    (dict(sysctl={"net.ipv4.no_such_entry": "1"}), "no such entry"),
    (dict(mac="zz:00:00:00:00:01"), "mac"),
    (dict(mac="01:00:5e:00:00:01"), "unicast"),
    (dict(mtu=10), "mtu"),
    (dict(mtu="1400"), "mtu"),
    (dict(txQLen=-1), "txQLen"),
    (dict(allmulti="yes"), "allmulti"),
    (dict(promisc=1), "promisc"),
    (dict(dataDir="relative/dir"), "dataDir"),
    (dict(runtimeConfig={"mac": 5}), "runtimeConfig.mac"),
    (dict(args={"cni": {"mtu": "big"}}), "args.cni.mtu"),
    (dict(args={"cni": "x"}), "args.cni"),
])
def test_bad_values_are_config_errors_and_change_nothing(w, keys, word):
    before = w.link()
    out = w.run("ADD", w.conf(**keys))
    assert out.code == 7 and word in out.doc["msg"], out
    assert w.link() == before and w.backups() == []


def test_duplicate_sysctl_keys_are_refused(w):
    raw = ('{"cniVersion":"1.0.0","name":"%s","type":"tuning","dataDir":"%s",'
           '"sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1","net.ipv4.conf.IFNAME.arp_notify":"2"},'
           '"prevResult":%s}' % (NET, w.data_dir, json.dumps(w.prev())))
    out = w.run("ADD", raw.encode())
    assert out.code == 7 and "twice" in out.doc["msg"], out
    assert w.sysctl(ARP_NOTIFY) == "0"


def test_cni_args_unknown_key_and_bad_mac(w):
    out = w.run("ADD", w.conf(mtu=1400), args="FOO=bar")
    assert out.code == 2, out
    out = w.run("ADD", w.conf(mtu=1400), args="IgnoreUnknown=1;MAC=nope")
    assert out.code == 7 and "CNI_ARGS MAC" in out.doc["msg"], out
    assert w.link()["mtu"] == 1500


def test_data_dir_symlink_fifo_and_foreign_files(w, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    out = w.run("ADD", w.conf(mtu=1400, dataDir=str(link)))
    assert out.code == 5 and "data directory" in out.doc["msg"], out
    assert w.link()["mtu"] == 1500 and os.listdir(target) == []
    # A FIFO under the attachment's name: DEL answers at once, ADD replaces it.
    os.makedirs(w.data_dir, mode=0o700)
    fifo = os.path.join(w.data_dir, f"{CID}_eth0.json")
    os.mkfifo(fifo)
    assert w.run("DEL", w.conf(), timeout=10).ok
    conf = w.conf(mtu=1400)
    assert w.run("ADD", conf, timeout=10).ok
    assert stat.S_ISREG(os.lstat(fifo).st_mode)
    assert w.run("DEL", conf).ok and w.link()["mtu"] == 1500
    # Someone else's file (or one others may write) is never read: no values of theirs are set.
    planted = {"mtu": 1280, "sysctl": {"net/ipv4/conf/eth0/arp_notify": "1"}}
    with open(fifo, "w") as f:
        json.dump(planted, f)
    os.chown(fifo, 65534, 65534)
    assert w.run("DEL", w.conf()).ok
    assert w.link()["mtu"] == 1500 and w.sysctl(ARP_NOTIFY) == "0"
    os.chown(fifo, 0, 0)
    os.chmod(fifo, 0o666)
    assert w.run("DEL", w.conf()).ok
    assert w.link()["mtu"] == 1500 and w.sysctl(ARP_NOTIFY) == "0"
    os.unlink(fifo)


def test_parents_of_the_data_dir_are_created_0700(w, tmp_path):
    d = tmp_path / "a" / "b" / "c"
    conf = w.conf(mtu=1400, dataDir=str(d))
    assert w.run("ADD", conf).ok
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
    assert w.run("DEL", conf).ok


def test_awkward_container_ids_get_unambiguous_backup_names(w):
    """(a_b, c) and (a, b_c) would share the reference's file name "a_b_c.json"."""
    w.ctr.run("ip", "link", "add", "b_c", "type", "veth", "peer", "name", "c0")
    w.ctr.run("ip", "link", "add", "c", "type", "veth", "peer", "name", "c1")
    ca, cb = w.conf(mtu=1400), w.conf(mtu=1300)
    assert w.run("ADD", ca, cid="a_b", ifname="c").ok
    assert w.run("ADD", cb, cid="a", ifname="b_c").ok
    assert len(w.backups()) == 2
    long_id = "x" * 5000
    assert w.run("ADD", w.conf(mtu=1280), cid=long_id).ok
    assert w.run("DEL", w.conf(), cid=long_id).ok and w.link()["mtu"] == 1500
    assert w.run("DEL", ca, cid="a_b", ifname="c").ok and w.link("c")["mtu"] == 1500
    assert w.run("DEL", cb, cid="a", ifname="b_c").ok and w.link("b_c")["mtu"] == 1500
    assert w.backups() == []


def test_hostile_netns_path_is_refused_in_time(w, tmp_path):
    fifo = str(tmp_path / "ns-fifo")
    os.mkfifo(fifo)
    out = w.run("ADD", w.conf(mtu=1400), netns=fifo, timeout=10)
    assert out.code == 8, out


# -- the kernel's view of promisc and allmulti ------------------------------------------------

def test_promiscuity_and_allmulti_counts_come_back_as_they_were(w):
    """eth0 as a bridge port: the bridge is one user of promiscuous and all-multicast mode
    (counts 1, no PROMISC/ALLMULTI flag). ADD adds one user of each (the flags), DEL takes
    exactly that one away: counts and flags as before, the bridge's use untouched."""
    w.ctr.run("ip", "link", "add", "tunbr0", "type", "bridge")
    w.ctr.run("ip", "link", "set", "eth0", "master", "tunbr0")
    before, counts = w.link(), w.counts()
    assert counts["promiscuity"] >= 1 and not before["promisc"] and not before["allmulti"], (before, counts)
    conf = w.conf(promisc=True, allmulti=True)
    assert w.run("ADD", conf).ok
    assert w.link()["promisc"] and w.link()["allmulti"]
    tuned = w.counts()
    assert tuned["promiscuity"] == counts["promiscuity"] + 1, (counts, tuned)
    if counts["allmulti"] is not None:  # older kernels do not report the count
        assert tuned["allmulti"] == counts["allmulti"] + 1, (counts, tuned)
    assert w.run("ADD", conf).ok  # repeated: no second user of either mode
    assert w.counts() == tuned
    assert w.run("CHECK", conf).ok
    assert w.run("DEL", conf).ok
    assert w.link() == before and w.counts() == counts


def test_reads_what_pyroute2_reads(w):
    """cnilib.rawlink's hand-parsed answer against pyroute2's decoding of the same link
    (and ``ip``'s, for the counts pyroute2 may not know), after ``ip`` changed everything
    tuning reads."""
    from cnilib import link, netns, nl, rawlink

    w.ctr.run("ip", "link", "set", "eth0", "mtu", "1300", "address", "0a:00:00:00:00:4b", "promisc", "on",
              "allmulticast", "on", "txqueuelen", "321")

    def read() -> tuple:
        with rawlink.Socket() as raw_sock, nl.Socket() as sock:
            return rawlink.get(raw_sock, "eth0"), link.get(sock, "eth0"), sock.get(
                link._ifinfo(attrs=[("IFLA_IFNAME", "eth0")]), nl.RTM_GETLINK, "ifinfmsg")

    ours, theirs, msg = netns.run_in(w.ctr.path, read)
    assert (ours.index, ours.name, ours.mac, ours.mtu, ours.flags, ours.promisc) == \
        (theirs.index, theirs.name, theirs.mac, theirs.mtu, theirs.flags, theirs.promisc)
    assert (ours.txqlen, ours.promiscuity) == (msg.get_attr("IFLA_TXQLEN"), msg.get_attr("IFLA_PROMISCUITY"))
    assert (ours.mac, ours.mtu, ours.promisc, ours.allmulti, ours.txqlen) == ("0a:00:00:00:00:4b", 1300, True, True,
                                                                              321)
    assert {"promiscuity": ours.promiscuity, "allmulti": ours.allmulti_count} == w.counts()

    def missing() -> object:
        with rawlink.Socket() as raw_sock:
            return rawlink.get(raw_sock, "eth9")

    assert netns.run_in(w.ctr.path, missing) is None


def test_link_requests_are_byte_for_byte_what_pyroute2_sends():
    """Each request tuning sends (read by name; MAC, MTU, promisc, allmulti, txqueuelen set
    and put back) is the message cnilib.link and pyroute2's ifinfmsg built before."""
    from cnilib import link, nl, rawlink

    def wire(m, msg_type: int = nl.RTM_NEWLINK) -> bytes:
        return nl.encode(m, msg_type, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 7)

    def ifinfo(**fields) -> object:
        attrs = fields.pop("attrs", [])
        return nl.msg("ifinfmsg", {"family": 0, "index": 0, "flags": 0, "change": 0, **fields}, attrs)

    assert wire(rawlink._ifinfo(attrs=rawlink._name_attr(rawlink.IFLA_IFNAME, "eth0")), nl.RTM_GETLINK) == \
        wire(link._ifinfo(attrs=[("IFLA_IFNAME", "eth0")]), nl.RTM_GETLINK)
    for kw in (dict(mac="0a:00:00:00:00:42"), dict(mac="9A:56:30:51:44:BE"), dict(mtu=1400), dict(mtu=65535),
               dict(promisc=True), dict(promisc=False)):
        assert wire(rawlink.set_link_request(5, **kw)) == wire(link.set_link_request(5, **kw)), kw
    for on in (True, False):
        assert wire(rawlink.set_link_request(5, allmulti=on)) == \
            wire(ifinfo(index=5, flags=0x200 if on else 0, change=0x200))
    for txqlen in (0, 500, 0xFFFFFFFF):
        assert wire(rawlink.set_link_request(5, txqlen=txqlen)) == wire(ifinfo(index=5, attrs=[("IFLA_TXQLEN",
                                                                                                   txqlen)]))
    for bad in (dict(mac="zz:00:00:00:00:01"), dict(mac="0a:00:00:00:00"), dict(txqlen=-1),
                dict(txqlen=1 << 32)):
        with pytest.raises(ValueError):
            rawlink.set_link_request(5, **bad)


# -- start-up --------------------------------------------------------------------------------

# Never imported by a tuning verb: pyroute2 (through its package root or cnilib.nl's lean
# loader, which imports pyroute2.netlink), the library layer on it, and the heavy standard
# modules of the README's start-up budget.
NETLINK_PYROUTE2 = ("pyroute2", "cnilib.link")
HEAVY = {"json", "re", "subprocess", "ipaddress", "threading", "socket", "typing", "logging", "ctypes"}


def _traced(w, request, verb: str, conf: dict, cid: str = CID) -> set[str]:
    """Run tuning from source in the host namespace with ``-X importtime``: the modules it
    imported (fails unless the call succeeded)."""
    src = os.environ.get("CNIPY_TEST_SRC_BIN_DIR") or request.getfixturevalue("src_bin")
    launcher = os.path.join(src, "tuning")
    with open(launcher) as f:
        python = f.readline()[2:].split()[0]
    gc = verb in ("GC", "STATUS")
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": "" if gc else cid,
           "CNI_NETNS": "" if gc else w.ctr.path, "CNI_IFNAME": "" if gc else "eth0", "CNI_PATH": src,
           "CNIPY_TUNING_ALLOWLIST": w.allowlist}
    p = subprocess.run(["ip", "netns", "exec", w.host.name, python, "-X", "importtime", "-IS", launcher],
                       input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=30, check=False)
    assert p.returncode == 0, (verb, p)
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert imported, "no import trace"
    return imported


def test_no_verb_imports_pyroute2(w, request):
    """Every verb, with every link key set (README, "Start-up budget"): link requests are
    packed by cnilib.rawlink, so no verb loads pyroute2, not even its message classes, nor
    a heavy standard module (traced with -X importtime, not timed). What the kernel holds
    is checked too: the traced calls did their work."""
    conf = w.conf(**FULL)
    before = w.link()
    with open(w.allowlist, "w") as f:  # STATUS and ADD read it (``re`` is its one import)
        f.write("^net\\.\n^net/\n")
    for verb in ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"):
        call = conf
        if verb in ("GC", "STATUS"):
            call = {"cniVersion": "1.1.0", "name": NET, "type": "tuning", "dataDir": w.data_dir,
                    "cni.dev/valid-attachments": []}
        imported = _traced(w, request, verb, call)
        bad = sorted(m for m in imported if any(m == p or m.startswith(p + ".") for p in NETLINK_PYROUTE2))
        assert not bad, (verb, bad)
        assert not imported & (HEAVY - {"re"}), (verb, sorted(imported & HEAVY))
        if verb in ("ADD", "CHECK", "DEL"):
            assert "cnilib.rawlink" in imported, verb
        if verb == "ADD":
            assert w.link() == {"mac": "0a:00:00:00:00:42", "mtu": 1400, "promisc": True, "allmulti": True,
                                "txqlen": 500}
    assert w.link() == before and w.backups() == []
    os.unlink(w.allowlist)
    assert not _traced(w, request, "ADD", conf) & HEAVY  # no allowlist file: no ``re`` either
    assert _traced(w, request, "DEL", conf) and w.link() == before


def test_sysctl_only_calls_do_not_import_netlink(w, request):
    """Only link changes need netlink: a sysctl-only ADD and a DEL with nothing but sysctls
    to restore import no netlink module at all (measured with -X importtime, not timed)."""
    conf = w.conf(sysctl={"net.ipv4.conf.IFNAME.arp_notify": "1"})
    for verb in ("ADD", "DEL", "VERSION"):
        imported = _traced(w, request, verb, conf)
        bad = sorted(m for m in imported if any(m == p or m.startswith(p + ".")
                                                for p in ("pyroute2", "cnilib.nl", "cnilib.rawlink", "cnilib.link")))
        assert not bad, (verb, bad)
        assert not imported & HEAVY, (verb, sorted(imported & HEAVY))
        if verb == "ADD":
            assert w.sysctl(ARP_NOTIFY) == "1"
    assert w.sysctl(ARP_NOTIFY) == "0"
