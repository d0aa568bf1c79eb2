"""bandwidth: real plugin processes on the real kernel, inside throwaway namespaces.

What ADD leaves on the host side (the TBF on the host veth, the IFB with its TBF, the
ingress qdisc and the redirect filter: rates, buffers and limits read back with ``tc``),
that DEL removes all of it (with and without prevResult, with the namespace gone), CHECK
passing and then failing after each kind of manual change, containerd's payload (Go-cased
keys, 2^32-1-bit bursts, clamped), the precedence of config keys and capability, two
attachments of one container, a failed ADD leaving nothing, GC, every spec version,
hostile input, differential runs against the reference (Debian's 1.1.1 in /usr/lib/cni),
and shaping verified by measured TCP throughput in both directions.
"""

from __future__ import annotations

import os

import pytest

from tests.bandwidth_common import CID, NET, U32_MAX, World, bin_dir, ticks

MBIT = 1_000_000
CONTAINERD_BURST = 4294967295


@pytest.fixture(scope="module")
def bandwidth(request) -> str:
    path = os.path.join(bin_dir(request), "bandwidth")
    if not os.path.exists(path):
        pytest.fail(f"no bandwidth plugin at {path}: run `make bin` (or set CNIPY_TEST_BIN_DIR)", pytrace=False)
    return path


@pytest.fixture
def w(bandwidth):
    world = World(bandwidth)
    try:
        yield world
    finally:
        world.close()


BOTH = {"ingressRate": 8 * MBIT, "ingressBurst": 80000, "egressRate": 16 * MBIT, "egressBurst": 160000}


def _ifb_name(out) -> str:
    return out.doc["interfaces"][-1]["name"]


def test_psched_clock_is_what_the_helpers_assume():
    with open("/proc/net/psched") as f:
        t2us, us2t, res = (int(x, 16) for x in f.read().split()[:3])
    assert t2us / us2t * res / 1e6 == 15.625


# -- ADD, CHECK, DEL --------------------------------------------------------------------------

def test_add_shapes_both_directions_and_del_removes_everything(w):
    conf = w.conf(**BOTH)
    out = w.run("ADD", conf)
    assert out.ok, out
    prev = w.prev()
    assert out.doc["interfaces"][:2] == prev["interfaces"] and out.doc["ips"] == prev["ips"]
    ifb = _ifb_name(out)
    assert len(out.doc["interfaces"]) == 3 and ifb.startswith("bwp") and len(ifb) == 15
    dev = w.ifbs()[ifb]
    assert out.doc["interfaces"][2] == {"name": ifb, "mac": dev["address"]}
    assert dev["ifalias"] == f"cnipy:{NET}:{CID}:eth0" and "UP" in dev["flags"] and dev["mtu"] == 1500
    assert dev.get("txqlen", 0) == 0
    assert w.tbf(w.vh) == {"handle": "1:", "rate": 1_000_000, "buffer": ticks(80000, 8 * MBIT), "limit": 35000,
                           "burst": 10000}
    assert w.tbf(ifb) == {"handle": "1:", "rate": 2_000_000, "buffer": ticks(160000, 16 * MBIT), "limit": 70000,
                          "burst": 20000}
    assert w.has_ingress(w.vh) and w.redirects(w.vh) == [ifb]  # one redirect (the reference adds two)
    assert w.run("CHECK", conf).ok
    conf["prevResult"] = out.doc  # as libcni passes it to DEL
    assert w.run("DEL", conf).ok
    assert w.clean()
    assert w.run("DEL", conf).ok  # twice is fine


def test_ingress_only_and_egress_only(w):
    out = w.run("ADD", w.conf(ingressRate=8 * MBIT, ingressBurst=80000))
    assert out.ok and len(out.doc["interfaces"]) == 2 and not w.ifbs()
    assert w.tbf(w.vh)["rate"] == 1_000_000 and not w.has_ingress(w.vh)
    assert w.run("DEL", w.conf()).ok and w.clean()
    out = w.run("ADD", w.conf(egressRate=8 * MBIT, egressBurst=80000))
    assert out.ok and w.tbf(w.vh) is None and w.redirects(w.vh) == [_ifb_name(out)]
    assert w.run("DEL", w.conf()).ok and w.clean()


def test_no_limits_passes_prev_result_through(w):
    for keys in ({}, {"ingressRate": 0, "ingressBurst": 0}, {"runtimeConfig": {"bandwidth": {}}}):
        out = w.run("ADD", w.conf(**keys))
        assert out.ok and out.doc == w.prev(), out
        assert w.clean() and w.run("CHECK", w.conf(**keys)).ok


def test_del_without_prev_result(w):
    conf = w.conf(**BOTH)
    assert w.run("ADD", conf).ok
    del conf["prevResult"]
    assert w.run("DEL", conf).ok
    assert w.clean()


def test_del_with_the_namespace_gone(w):
    conf = w.conf(**BOTH)
    out = w.run("ADD", conf)
    assert out.ok
    path = w.ctr.path
    w.ctr.delete()  # the veth pair dies with it; the IFB stays in the host
    assert list(w.ifbs()) == [_ifb_name(out)]
    assert w.run("DEL", w.conf(prev=out.doc), netns=path).ok
    assert not w.ifbs()
    # containerd's second DEL: no namespace, no prevResult.
    conf.pop("prevResult")
    assert w.run("DEL", conf, netns="").ok


def test_del_without_namespace_or_prev_result_finds_our_bridge_tag(w):
    """CNI_NETNS empty and no prevResult: the veth is found by the owner tag our bridge
    puts on its host veth (ip link alias); the IFB by its name in any case."""
    w.host.run("ip", "link", "set", w.vh, "alias", f"cnipy:{NET}:{CID}:eth0")
    assert w.run("ADD", w.conf(**BOTH)).ok
    conf = w.conf(**BOTH)
    del conf["prevResult"]
    assert w.run("DEL", conf, netns="").ok
    assert w.clean()


@pytest.mark.parametrize("change, code, word", [
    (lambda w, ifb: w.host.run("tc", "qdisc", "change", "dev", w.vh, "root", "handle", "1:", "tbf", "rate", "9mbit",
                               "burst", "10000", "latency", "25ms"), 103, "rate"),
    (lambda w, ifb: w.host.run("tc", "qdisc", "del", "dev", w.vh, "root"), 102, "ingress shaping"),
    (lambda w, ifb: w.host.run("tc", "qdisc", "change", "dev", ifb, "root", "handle", "1:", "tbf", "rate",
                               "16mbit", "burst", "30000", "latency", "25ms"), 103, "buffer"),
    (lambda w, ifb: w.host.run("ip", "link", "del", ifb), 102, "does not exist"),
    (lambda w, ifb: w.host.run("ip", "link", "set", ifb, "down"), 103, "down"),
    (lambda w, ifb: w.host.run("tc", "qdisc", "del", "dev", w.vh, "ingress"), 102, "ingress qdisc"),
    (lambda w, ifb: w.host.run("tc", "filter", "del", "dev", w.vh, "parent", "ffff:"), 102, "redirect"),
])
def test_check_fails_after_a_manual_change(w, change, code, word):
    conf = w.conf(**BOTH)
    out = w.run("ADD", conf)
    assert out.ok and w.run("CHECK", conf).ok
    change(w, _ifb_name(out))
    res = w.run("CHECK", conf)
    assert res.code == code and word in res.doc["msg"], res
    assert w.run("DEL", conf).ok and w.clean()


def test_check_with_a_different_config_fails(w):
    assert w.run("ADD", w.conf(**BOTH)).ok
    res = w.run("CHECK", w.conf(**dict(BOTH, ingressRate=4 * MBIT)))
    assert res.code == 103 and "rate" in res.doc["msg"], res
    assert w.run("DEL", w.conf()).ok


# -- containerd, capability, precedence --------------------------------------------------------

CONTAINERD = {"bandwidth": {"IngressRate": 8 * MBIT, "IngressBurst": CONTAINERD_BURST,
                            "EgressRate": 8 * MBIT, "EgressBurst": CONTAINERD_BURST}}


def test_containerd_payload_is_read_and_its_bursts_clamped(w):
    conf = w.conf(capabilities={"bandwidth": True}, runtimeConfig=CONTAINERD)
    out = w.run("ADD", conf)
    assert out.ok, out
    ifb = _ifb_name(out)
    for dev in (w.vh, ifb):
        t = w.tbf(dev)
        # 536870911 bytes at 1e6 bytes/s last 536.9 s: more than 2^32-1 ticks (274.9 s).
        assert t["rate"] == 1_000_000 and t["buffer"] == U32_MAX, t
        assert t["limit"] == 25000 + int(U32_MAX / 15.625 * 1_000_000 / 1e6)
    assert w.run("CHECK", conf).ok
    assert w.run("DEL", conf).ok and w.clean()
    # The reference wraps the tick count instead: some other, smaller bucket.
    out = w.ref("ADD", conf)
    assert out.ok, out
    assert w.tbf(w.vh)["buffer"] == (ticks(CONTAINERD_BURST, 8 * MBIT) & U32_MAX) != U32_MAX
    assert w.ref("DEL", conf).ok
    w.host.run("tc", "qdisc", "del", "dev", w.vh, "root")
    w.host.run("tc", "qdisc", "del", "dev", w.vh, "ingress")
    assert w.clean()


def test_precedence_lower_rate_and_burst_win_per_direction(w):
    """Config 16 Mbit/80000 bits in, the pod's capability 8 Mbit/2^32-1 in and
    4 Mbit/40000 out: ingress 8 Mbit (capability) with burst 80000 (config), egress from
    the capability alone. The reference ignores the whole capability here."""
    keys = {"ingressRate": 16 * MBIT, "ingressBurst": 80000,
            "runtimeConfig": {"bandwidth": {"ingressRate": 8 * MBIT, "ingressBurst": CONTAINERD_BURST,
                                            "egressRate": 4 * MBIT, "egressBurst": 40000}}}
    out = w.run("ADD", w.conf(**keys))
    assert out.ok, out
    assert w.tbf(w.vh)["rate"] == 1_000_000 and w.tbf(w.vh)["buffer"] == ticks(80000, 8 * MBIT)
    assert w.tbf(_ifb_name(out))["rate"] == 500_000
    assert w.run("CHECK", w.conf(**keys)).ok
    assert w.run("DEL", w.conf(**keys)).ok and w.clean()
    # Config lower than the capability: the config's rate holds.
    keys2 = {"ingressRate": 4 * MBIT, "ingressBurst": 80000,
             "runtimeConfig": {"bandwidth": {"ingressRate": 8 * MBIT, "ingressBurst": 40000}}}
    assert w.run("ADD", w.conf(**keys2)).ok
    assert w.tbf(w.vh)["rate"] == 500_000 and w.tbf(w.vh)["buffer"] == ticks(40000, 4 * MBIT)
    assert w.run("DEL", w.conf(**keys2)).ok and w.clean()
    out = w.ref("ADD", w.conf(**keys))
    assert out.ok and len(out.doc["interfaces"]) == 2, out  # no egress shaping: capability ignored
    assert w.tbf(w.vh)["rate"] == 2_000_000
    assert w.ref("DEL", w.conf(**keys)).ok
    w.host.run("tc", "qdisc", "del", "dev", w.vh, "root")


# -- two attachments, failed ADD, GC ------------------------------------------------------

def test_two_attachments_of_one_container_do_not_clash(w):
    w.attach("eth1", 2)
    c0, c1 = w.conf(**BOTH), w.conf(ifname="eth1", **BOTH)
    o0, o1 = w.run("ADD", c0), w.run("ADD", c1, ifname="eth1")
    assert o0.ok and o1.ok, (o0, o1)
    assert _ifb_name(o0) != _ifb_name(o1) and set(w.ifbs()) == {_ifb_name(o0), _ifb_name(o1)}
    assert w.redirects(w.veths["eth1"]) == [_ifb_name(o1)]
    assert w.run("DEL", c0).ok
    assert set(w.ifbs()) == {_ifb_name(o1)} and w.run("CHECK", c1, ifname="eth1").ok
    assert w.run("DEL", c1, ifname="eth1").ok and w.clean()
    # The reference: one IFB name per (network, container), so the second ADD fails.
    assert w.ref("ADD", c0).ok
    r1 = w.ref("ADD", c1, ifname="eth1")
    assert not r1.ok and "exists" in r1.doc["msg"], r1
    assert w.ref("DEL", c0).ok
    for v in w.veths.values():
        w.host.run("tc", "qdisc", "del", "dev", v, "root", check=False)
        w.host.run("tc", "qdisc", "del", "dev", v, "ingress", check=False)
    assert w.clean()


def test_failed_add_leaves_nothing(w):
    """Someone else's ingress qdisc on the veth: the egress step fails after the ingress
    TBF and the IFB were made; both are undone (the reference leaves them)."""
    w.host.run("tc", "qdisc", "add", "dev", w.vh, "ingress")
    out = w.run("ADD", w.conf(**BOTH))
    assert out.code == 101 and "ingress qdisc" in out.doc["msg"], out
    assert not w.ifbs() and w.tbf(w.vh) is None and w.has_ingress(w.vh)  # theirs stays
    out = w.ref("ADD", w.conf(**BOTH))
    assert not out.ok and w.ifbs() and w.tbf(w.vh) is not None  # the reference's leftovers
    assert w.ref("DEL", w.conf(**BOTH)).ok
    w.host.run("tc", "qdisc", "del", "dev", w.vh, "root")
    w.host.run("tc", "qdisc", "del", "dev", w.vh, "ingress")
    assert w.clean()


def test_gc_removes_the_ifbs_of_attachments_not_kept(w):
    a, b = w.conf(**BOTH), w.conf(**BOTH)
    oa = w.run("ADD", a, cid="keep1")
    w.attach("eth1", 2)
    ob = w.run("ADD", w.conf(ifname="eth1", **BOTH), cid="gone1", ifname="eth1")
    assert oa.ok and ob.ok
    gc = {"cniVersion": "1.1.0", "name": NET, "type": "bandwidth",
          "cni.dev/valid-attachments": [{"containerID": "keep1", "ifname": "eth0"}]}
    other = dict(gc, name="othernet", **{"cni.dev/valid-attachments": []})
    assert w.run("GC", other).ok and len(w.ifbs()) == 2  # another network's GC keeps ours
    assert w.run("GC", {k: v for k, v in gc.items() if k != "cni.dev/valid-attachments"}).ok
    assert len(w.ifbs()) == 2  # no list: nothing removed
    assert w.run("GC", gc).ok
    assert list(w.ifbs()) == [_ifb_name(oa)]
    assert w.run("DEL", b, cid="keep1").ok
    assert w.run("DEL", w.conf(ifname="eth1"), cid="gone1", ifname="eth1").ok and w.clean()
    assert w.run("STATUS", {"cniVersion": "1.1.0", "name": NET, "type": "bandwidth"}).ok


# -- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_spec_version(w, version):
    conf = w.conf(version, **BOTH)
    out = w.run("ADD", conf)
    assert out.ok and out.doc["cniVersion"] == version, out
    assert w.tbf(w.vh)["rate"] == 1_000_000 and len(w.ifbs()) == 1
    if version in ("0.1.0", "0.2.0"):
        assert out.doc["ip4"]["ip"] == "10.77.1.2/24" and "interfaces" not in out.doc
    else:
        assert out.doc["interfaces"][-1]["name"] in w.ifbs()
    if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        assert w.run("CHECK", w.conf(version, prev=out.doc, **BOTH)).ok
    assert w.run("DEL", conf).ok and w.clean()


# -- hostile input ------------------------------------------------------------------------

@pytest.mark.parametrize("keys, word", [
    ({"ingressRate": "8000000", "ingressBurst": 80000}, "ingressRate"),
    ({"ingressRate": -1, "ingressBurst": 80000}, "ingressRate"),
    ({"ingressRate": 1.5, "ingressBurst": 80000}, "ingressRate"),
    ({"ingressRate": 2 ** 64, "ingressBurst": 80000}, "ingressRate"),
    ({"ingressRate": 8 * MBIT}, "burst must also be set"),
    ({"egressBurst": 80000}, "rate must also be set"),
    ({"egressRate": 8 * MBIT, "egressBurst": 8 * 0xFFFFFFFF}, "4GB"),
    ({"ingressRate": 8 * MBIT, "ingressBurst": 8000}, "full-size packet"),
    ({"ingressRate": 2 ** 64 - 1, "ingressBurst": 100000}, "full-size packet"),
    ({"ingressRate": 7, "ingressBurst": 100000}, "at least 8 bits/s"),
    ({"runtimeConfig": {"bandwidth": [1]}}, "runtimeConfig.bandwidth"),
    ({"runtimeConfig": {"bandwidth": {"EgressRate": True, "EgressBurst": 1}}}, "runtimeConfig.bandwidth.egressRate"),
    ({"prevResult": None, "ingressRate": 8 * MBIT, "ingressBurst": 80000}, "prevResult"),
])
def test_bad_input_is_code_7_and_changes_nothing(w, keys, word):
    conf = w.conf(**BOTH)
    for k in BOTH:
        conf.pop(k)
    conf.update(keys)
    if conf.get("prevResult") is None:
        conf.pop("prevResult", None)
    out = w.run("ADD", conf)
    assert out.code == 7 and word in out.doc["msg"], out
    assert b"Traceback" not in out.stderr and w.clean()


def test_wrong_interface_is_an_error(w):
    out = w.run("ADD", w.conf(**BOTH), ifname="eth9")
    assert out.code == 104 and "eth9" in out.doc["msg"], out
    w.ctr.run("ip", "link", "add", "mv0", "link", "eth0", "type", "macvlan")
    out = w.run("ADD", w.conf(**BOTH), ifname="mv0")
    assert out.code == 7 and "veth" in out.doc["msg"], out
    prev = w.prev()
    prev["interfaces"][0]["name"] = "other0"
    out = w.run("ADD", w.conf(prev=prev, **BOTH))
    assert out.code == 7 and "prevResult" in out.doc["msg"], out
    assert w.clean()


def test_unparsable_stdin_and_bad_env(w):
    out = w.run("ADD", b'{"cniVersion": "1.0.0", "name": ')
    assert out.code == 6 and b"Traceback" not in out.stderr
    out = w.run("ADD", w.conf(**BOTH), ifname="")
    assert out.code == 4


# -- differential -------------------------------------------------------------------------

@pytest.mark.parametrize("keys", [BOTH, {"ingressRate": 16 * MBIT, "ingressBurst": CONTAINERD_BURST},
                                  {"egressRate": 100 * MBIT, "egressBurst": 10 ** 7},
                                  {"ingressRate": 80 * 10 ** 9, "ingressBurst": 10 ** 8}])
def test_same_kernel_state_as_the_reference(w, keys):
    """Where nothing overflows, ours programs what the reference programs."""
    conf = w.conf(**keys)
    states = {}
    for impl, run in (("ours", w.run), ("ref", w.ref)):
        out = run("ADD", conf)
        assert out.ok, (impl, out)
        ifb = out.doc["interfaces"][-1]["name"] if len(out.doc["interfaces"]) == 3 else None
        states[impl] = (w.tbf(w.vh), w.tbf(ifb) if ifb else None, len(out.doc["interfaces"]),
                        bool(ifb and w.redirects(w.vh)[:1] == [ifb]))
        assert run("DEL", w.conf(prev=out.doc, **keys)).ok
        w.host.run("tc", "qdisc", "del", "dev", w.vh, "root", check=False)  # the reference's DEL leaves them
        w.host.run("tc", "qdisc", "del", "dev", w.vh, "ingress", check=False)
        assert w.clean()
    assert states["ours"] == states["ref"]


def test_our_del_removes_the_references_ifb(w):
    """Switching implementations on a live host: the reference's ADD, our DEL."""
    conf = w.conf(**BOTH)
    assert w.ref("ADD", conf).ok and len(w.ifbs()) == 1
    assert w.run("DEL", conf).ok
    assert w.clean()


# -- throughput -----------------------------------------------------------------------------

def _measure(w, direction: str, rate: int) -> float:
    """One measurement, retried once: on a loaded 2-core VM the sender or the receiver
    can be starved of CPU for a while (reading low), or the shaper's first burst can leak
    into the window (reading high); a real shaping fault fails both tries."""
    bps = w.throughput(direction)
    if abs(bps - rate) <= 0.2 * rate:
        return bps
    return w.throughput(direction)


def test_throughput_is_shaped_in_each_direction(w):
    unshaped_in, unshaped_out = w.throughput("ingress", seconds=2), w.throughput("egress", seconds=2)
    rates = {"ingress": 16 * MBIT, "egress": 12 * MBIT}
    conf = w.conf(ingressRate=rates["ingress"], ingressBurst=160000, egressRate=rates["egress"], egressBurst=120000)
    assert w.run("ADD", conf).ok
    try:
        measured = {d: _measure(w, d, r) for d, r in rates.items()}
    finally:
        assert w.run("DEL", conf).ok
    print(f"\nmeasured: {measured}, unshaped: ingress {unshaped_in:.3g}, egress {unshaped_out:.3g} bit/s")
    for d, r in rates.items():
        assert abs(measured[d] - r) <= 0.2 * r, f"{d}: {measured[d]:.4g} bit/s against {r} configured"
    assert unshaped_in > 4 * rates["ingress"] and unshaped_out > 4 * rates["egress"]
    assert w.clean()


# -- start-up budget ----------------------------------------------------------------------

# No verb imports pyroute2: neither its package root nor, through cnilib.nl's lean loader,
# pyroute2.netlink (every message class is under it), nor cnilib.link built on it.
HEAVY = ("json", "re", "subprocess", "ipaddress", "threading", "socket", "typing", "logging", "hashlib", "ctypes",
         "pyroute2", "pyroute2.netlink", "pyroute2.iproute", "pyroute2.ndb", "pyroute2.netlink.rtnl.tcmsg",
         "cnilib.link")


@pytest.mark.parametrize("verb", ["ADD", "CHECK", "DEL", "VERSION"])
def test_start_up_imports_stay_lean(w, verb):
    """Run from source (CNIPY_TEST_BIN_DIR's launcher, else dist/src-bin's) under
    ``-X importtime``: no pyroute2 package root, no tcmsg, none of the heavy standard
    modules; VERSION imports no pyroute2 at all."""
    import subprocess

    from tests.helpers import SRC_BIN

    launcher = os.path.join(os.environ.get("CNIPY_TEST_BIN_DIR") or SRC_BIN, "bandwidth")
    with open(launcher, "rb") as f:
        first = f.readline()
    assert first.startswith(b"#!") and b"python" in first, f"{launcher} is not a source launcher"
    python = first[2:].split()[0].decode()
    if verb in ("CHECK", "DEL"):
        assert w.run("ADD", w.conf(**BOTH)).ok
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": CID, "CNI_NETNS": w.ctr.path,
           "CNI_IFNAME": "eth0", "CNI_PATH": os.path.dirname(launcher)}
    import json

    p = subprocess.run(["ip", "netns", "exec", w.host.name, python, "-X", "importtime", "-IS", launcher],
                       input=json.dumps(w.conf(**BOTH)).encode(), env=env, capture_output=True, timeout=30,
                       check=False)
    assert p.returncode == 0, p
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))
    if verb == "VERSION":
        assert not any(m.startswith("pyroute2") for m in imported)
    assert w.run("DEL", w.conf()).ok and w.clean()
