"""IPAM plugin checks (host-local compatible config): results, GC, STATUS, failure
atomicity (checklist D, H, I, J45)."""

from __future__ import annotations

import os

import pytest

from conformance.checks.common import add_ok, assert_error, del_ok, need_profile, run, with_prev
from conformance.plugin import check, kinds


def _leases(world) -> set[str]:
    out = set()
    for d, _, files in os.walk(world.sandbox.data_dir):
        out.update(f for f in files if f != "lock" and not f.startswith("last_reserved_ip"))
    return out


def _need_state(plugin) -> None:
    """Skip a check of the lease store for an IPAM plugin that keeps none (the profile's
    ``stateless`` reason, e.g. static)."""
    need_profile(plugin)
    if plugin.profile.stateless:
        pytest.skip(f"not applicable: {plugin.profile.stateless}")


def _need_own_store(plugin) -> None:
    """Skip a check that shapes the pool through ``ipam.ranges`` or counts lease files in the
    data dir for an IPAM plugin whose pool and leases are elsewhere (the profile's
    ``external_store`` reason, e.g. dhcp: the DHCP server's pool, the daemon's leases)."""
    _need_state(plugin)
    if plugin.profile.external_store:
        pytest.skip(f"not applicable: {plugin.profile.external_store}")


def _gc(world, plugin, conf: dict, valid, key: str = "cni.dev/valid-attachments", drop_key: bool = False):
    c = dict(conf)
    if not drop_key:
        c[key] = valid
    return world.exec(plugin.binary, "GC", c, containerid="", ifname="", netns="")


@check("J45-ipam-result", "J Delegation", "M", "SPEC §IPAM plugins (no interfaces); checklist J45")
@kinds("ipam")
def test_ipam_result_has_no_interfaces(plugin, world):
    need_profile(plugin)
    conf = world.conf("1.0.0")
    res = add_ok(world, plugin, conf)
    assert "interfaces" not in res, f"an IPAM result must not list interfaces: {res}"
    assert res.get("ips"), f"no ips in the IPAM result: {res}"
    assert all("interface" not in ipc for ipc in res["ips"]), f"IPAM ips[] must not set interface: {res}"
    del_ok(world, plugin, conf)


@check("D21-failed-add-no-trace", "D ADD", "M", "SPEC §ADD (failure leaves nothing); checklist D21")
@kinds("ipam")
def test_failed_add_leaves_nothing(plugin, world):
    """Set 0 has room, set 1 is full: ADD fails and leaves no lease and no moved
    round-robin position."""
    _need_own_store(plugin)
    base = world.conf("1.0.0")
    v4 = base["ipam"]["ranges"][0][0]["subnet"]
    conf = dict(base)
    conf["ipam"] = dict(base["ipam"], ranges=[[{"subnet": v4}],
                                              [{"subnet": "fd00:99:1::/120", "rangeStart": "fd00:99:1::2",
                                                "rangeEnd": "fd00:99:1::2"}]])
    add_ok(world, plugin, conf, cid="filler")  # takes the only v6 address
    state = {f: open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(world.sandbox.data_dir) for f in fs}
    out = run(world, plugin, "ADD", conf, cid="victim")
    assert_error(out)
    after = {f: open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(world.sandbox.data_dir) for f in fs}
    assert after == state, f"a failed ADD changed the store: before {sorted(state)} after {sorted(after)}"
    del_ok(world, plugin, conf, cid="filler")


@check("H34-gc", "H GC", "M", "SPEC 1.1.0 §GC; checklist H34/H35")
@kinds("ipam")
def test_gc_releases_unlisted(plugin, world):
    """ADD A and B, GC with only A valid: B's lease goes, A's stays and passes CHECK."""
    _need_own_store(plugin)
    conf = world.conf("1.1.0")
    ra = add_ok(world, plugin, conf, cid="keep")
    add_ok(world, plugin, conf, cid="drop")
    out = _gc(world, plugin, conf, [{"containerID": "keep", "ifname": "eth0"}])
    assert out.ok and out.stdout.strip() == b"", f"GC: {out}"
    assert len(_leases(world)) == 1, f"GC left {sorted(_leases(world))}"
    out = run(world, plugin, "CHECK", with_prev(conf, ra), cid="keep")
    assert out.ok, f"CHECK of the kept attachment after GC: {out}"
    del_ok(world, plugin, conf, cid="keep")


@check("H37-gc-lists", "H GC", "M", "SPEC 1.1.0 §GC; checklist H37")
@kinds("ipam")
def test_gc_list_forms(plugin, world):
    """A null or missing list removes nothing; the legacy key cni.dev/attachments works."""
    _need_own_store(plugin)
    conf = world.conf("1.1.0")
    add_ok(world, plugin, conf, cid="a1")
    add_ok(world, plugin, conf, cid="a2")
    for out in (_gc(world, plugin, conf, None), _gc(world, plugin, conf, None, drop_key=True)):
        assert out.ok, f"GC: {out}"
        assert len(_leases(world)) == 2, "GC with a null or missing list removed leases"
    out = _gc(world, plugin, conf, [{"containerID": "a1", "ifname": "eth0"}], key="cni.dev/attachments")
    assert out.ok, f"GC with cni.dev/attachments: {out}"
    assert len(_leases(world)) == 1, f"legacy key ignored: {sorted(_leases(world))}"
    del_ok(world, plugin, conf, cid="a1")


@check("I39-status", "I STATUS", "M", "SPEC 1.1.0 §STATUS; checklist I39/I40")
@kinds("ipam")
def test_status_ready(plugin, world):
    need_profile(plugin)
    conf = world.conf("1.1.0")
    stat = {"cniVersion": "1.1.0", "name": conf["name"], "ipam": conf["ipam"], "type": conf["type"]}
    out = world.exec(plugin.binary, "STATUS", stat, containerid="", ifname="", netns="")
    assert out.ok and out.stdout.strip() == b"", f"STATUS of a healthy network: {out}"


@check("I39-status-not-ready", "I STATUS", "M", "SPEC 1.1.0 §STATUS (code 50); checklist I39")
@kinds("ipam")
def test_status_exhausted(plugin, world):
    """A pool with no free address is not ready: code 50 (or 51)."""
    _need_own_store(plugin)
    conf = world.conf("1.1.0")
    conf["ipam"] = dict(conf["ipam"], ranges=[[{"subnet": "10.254.254.0/30"}]])  # one usable address
    add_ok(world, plugin, conf, cid="only")
    out = world.exec(plugin.binary, "STATUS", conf, containerid="", ifname="", netns="")
    assert_error(out, {50, 51})
    del_ok(world, plugin, conf, cid="only")
