"""ADD / CHECK / DEL lifecycle, directly and through libcni (checklist D, G, L), and the
differential comparison with the reference plugin of the same type."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pytest

from conformance.checks.common import (
    CID, add_ok, assert_error, del_ok, ifname, need_many_attachments, need_profile, newest, run, with_prev,
)
from conformance.plugin import check, kinds


@check("G29-check-after-add", "G CHECK", "M", "SPEC §CHECK; checklist G29")
@kinds("ipam", "interface", "loopback")
def test_check_right_after_add(plugin, world):
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.1.0"))
    res = add_ok(world, plugin, conf)
    out = run(world, plugin, "CHECK", with_prev(conf, res))
    assert out.ok and out.stdout.strip() == b"", f"CHECK right after ADD: {out}"
    del_ok(world, plugin, conf)


@check("G31-check-detects-loss", "G CHECK", "S", "SPEC §CHECK; checklist G31")
@kinds("ipam", "interface", "loopback")
def test_check_notices_sabotage(plugin, world):
    """Undo part of the attachment behind the plugin's back: CHECK must fail."""
    need_profile(plugin)
    if plugin.profile.sabotage is None:
        pytest.skip("not applicable: the harness knows no way to break this plugin's attachment")
    conf = world.conf(newest(plugin, world, "1.1.0"))
    res = add_ok(world, plugin, conf)
    plugin.profile.sabotage(world, CID, ifname(plugin))
    out = run(world, plugin, "CHECK", with_prev(conf, res))
    assert_error(out)
    del_ok(world, plugin, conf)


@check("G33-check-needs-prevresult", "G CHECK", "M", "SPEC §CHECK (prevResult required); checklist G33")
@kinds("interface")
def test_check_without_prev_result(plugin, world):
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.1.0"))
    add_ok(world, plugin, conf)
    assert_error(run(world, plugin, "CHECK", conf))
    del_ok(world, plugin, conf)


@check("L50-parallel-adds", "L Concurrency", "M", "SPEC §Concurrency (plugins must lock); checklist L50")
@kinds("ipam", "interface")
def test_parallel_adds_and_dels(plugin, world):
    """32 ADDs for different containers at once: all succeed with distinct addresses; then
    32 DELs at once leave nothing (leak check)."""
    need_many_attachments(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    n = 32
    netns = [world.ctr_path] * n if plugin.kind == "ipam" else [world.new_netns() for _ in range(n)]

    def one(verb: str, i: int):
        return run(world, plugin, verb, conf, cid=f"par-{i}", netns=netns[i])

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        adds = list(ex.map(lambda i: one("ADD", i), range(n)))
    failed = [str(o) for o in adds if not o.ok]
    assert not failed, f"{len(failed)} of {n} parallel ADDs failed: {failed[:3]}"
    # One address per attachment and family (a dual-stack config gives each two).
    per_add = [[ipc["address"] for ipc in o.doc.get("ips", [])] for o in adds]
    addrs = [a for got in per_add for a in got]
    assert all(per_add), f"ADDs without an address: {[i for i, got in enumerate(per_add) if not got]}"
    assert len(set(addrs)) == len(addrs), f"addresses not distinct: {sorted(addrs)}"
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        dels = list(ex.map(lambda i: one("DEL", i), range(n)))
    failed = [str(o) for o in dels if not o.ok]
    assert not failed, f"{len(failed)} of {n} parallel DELs failed: {failed[:3]}"


@check("L50-interleaved", "L Concurrency", "M", "SPEC §Concurrency; checklist L50")
@kinds("ipam", "interface")
def test_interleaved_adds_and_dels(plugin, world):
    """ADDs of new containers racing DELs of old ones: every call succeeds, live
    attachments keep distinct addresses, and deleting all leaves nothing (leak check)."""
    need_many_attachments(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    n = 12
    netns = [world.ctr_path] * (2 * n) if plugin.kind == "ipam" else [world.new_netns() for _ in range(2 * n)]

    def one(verb: str, i: int):
        return verb, i, run(world, plugin, verb, conf, cid=f"mix-{i}", netns=netns[i])

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        first = list(ex.map(lambda i: one("ADD", i), range(n)))
        jobs = [("DEL", i) for i in range(n)] + [("ADD", n + i) for i in range(n)]
        mixed = list(ex.map(lambda j: one(*j), jobs))
    bad = [f"{v} {i}: {o}" for v, i, o in first + mixed if not o.ok]
    assert not bad, f"{len(bad)} calls failed: {bad[:3]}"
    per_add = [[ipc["address"] for ipc in o.doc.get("ips", [])] for v, i, o in mixed if v == "ADD"]
    live = [a for got in per_add for a in got]  # one per attachment and family
    assert len(per_add) == n and all(per_add), f"live attachments without an address: {per_add}"
    assert len(live) == len(set(live)), f"live attachments share addresses: {sorted(live)}"
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        last = list(ex.map(lambda i: one("DEL", n + i), range(n)))
    assert all(o.ok for _, _, o in last), [str(o) for _, _, o in last if not o.ok][:3]


@check("L51-attachment-keys", "L Concurrency", "M", "SPEC §Attachments (network, container, ifname); checklist L51")
@kinds("ipam", "interface")
def test_attachments_are_independent(plugin, world):
    """eth0 and eth1 of one container, and one container on two networks, are separate
    attachments: deleting one leaves the others intact (CHECK passes)."""
    need_many_attachments(plugin)
    v = newest(plugin, world, "1.1.0")
    a = world.conf(v)
    other = dataclasses.replace(world.sandbox, subnet4=world.other_subnet4) if plugin.profile.separate_subnets else None
    b = world.conf(v, name=f"other-{world.tag}", sandbox=other)
    res_a0 = add_ok(world, plugin, a, ifname_="eth0")
    res_a1 = add_ok(world, plugin, a, ifname_="eth1")
    res_b0 = add_ok(world, plugin, b, ifname_="eth2" if plugin.kind == "interface" else "eth0")
    del_ok(world, plugin, a, ifname_="eth0")
    out = run(world, plugin, "CHECK", with_prev(a, res_a1), ifname_="eth1")
    assert out.ok, f"eth1 broken by deleting eth0: {out}"
    out = run(world, plugin, "CHECK", with_prev(b, res_b0), ifname_="eth2" if plugin.kind == "interface" else "eth0")
    assert out.ok, f"the other network's attachment broken: {out}"
    del_ok(world, plugin, a, ifname_="eth1")
    del_ok(world, plugin, b, ifname_="eth2" if plugin.kind == "interface" else "eth0")
    assert res_a0 and res_a1


@check("LIBCNI-lifecycle", "Runtime", "M", "libcni AddNetworkList/CheckNetworkList/DelNetworkList")
@kinds("ipam", "interface", "loopback")
def test_through_libcni(plugin, world):
    """What containerd, CRI-O and podman do: add, check (prevResult from libcni's cache),
    del, del again, through the runtime library itself."""
    need_profile(plugin)
    from conformance.libcni import LibCNI, write_conflist

    v = newest(plugin, world, "1.0.0")  # Debian's libcni (1.1.2) stops at 1.0.0
    conf = world.conf(v)
    plugin_conf = {k: val for k, val in conf.items() if k not in ("cniVersion", "name")}
    write_conflist(world.conf_dir, conf["name"], [plugin_conf], v)
    cni = LibCNI(world.cni_path, world.conf_dir, world.cache_dir, in_netns=world.host)
    ifn = ifname(plugin)
    out = cni.add(conf["name"], world.ctr_path, ifn, container_id=CID)
    assert out.ok, f"libcni ADD: {out}"
    assert out.doc.get("cniVersion") == v, out
    out = cni.check(conf["name"], world.ctr_path, ifn, container_id=CID)
    assert out.ok, f"libcni CHECK: {out}"
    for _ in range(2):
        out = cni.delete(conf["name"], world.ctr_path, ifn, container_id=CID)
        assert out.ok, f"libcni DEL: {out}"


def _shape(result: object, bridge: str = "") -> object:
    """A result with the values that legitimately differ (addresses, MACs, paths, the
    world's bridge name, random host-side veth names) replaced by their kind, so ours and
    the reference's can be compared."""
    if isinstance(result, dict):
        return {k: _shape(v, bridge) for k, v in result.items()}
    if isinstance(result, list):
        return [_shape(v, bridge) for v in result]
    if isinstance(result, str):
        if bridge and result == bridge:
            return "<bridge>"
        if len(result) == 12 and result.startswith("veth") and all(c in "0123456789abcdef" for c in result[4:]):
            return "<veth>"
        if result.count(":") == 5 and len(result) == 17:
            return "<mac>"
        if "/" in result and (":" in result or "." in result):
            return "<cidr6>" if ":" in result.split("/")[0] else ("<cidr4>" if "." in result.split("/")[0] else "<path>")
        if result.startswith("/"):
            return "<path>"
        if result.count(".") == 3 or "::" in result:
            return "<ip>"
    return result


@check("DIFF-result-shape", "Differential", "D", "same result layout as the reference plugin")
@kinds("ipam", "interface", "loopback")
def test_same_shape_as_reference(plugin, world):
    """The ADD result has the same layout as the reference plugin's for the same config."""
    need_profile(plugin)
    if plugin.reference is None:
        pytest.skip("not applicable: no reference plugin of this type to compare with (or it is the one under test)")
    from conformance.world import World

    v = "1.0.0"
    with World(world.cni_path, plugin.profile) as other:
        ours = add_ok(world, plugin, world.conf(v))
        ref_out = other.exec(plugin.reference, "ADD", other.conf(v), containerid=CID, ifname=ifname(plugin),
                             path="/usr/lib/cni")
        assert ref_out.ok, f"the reference failed on the same config: {ref_out}"
        other.exec(plugin.reference, "DEL", other.conf(v), containerid=CID, ifname=ifname(plugin), path="/usr/lib/cni")
        del_ok(world, plugin, world.conf(v))
        other_bridge = other.sandbox.bridge
    assert _shape(ours, world.sandbox.bridge) == _shape(ref_out.doc, other_bridge), f"ours: {ours}\nreference: {ref_out.doc}"


def _kernel_shape(world) -> dict:
    """The container namespace's links, addresses and routes, with names and values that
    legitimately differ between implementations replaced by their kind."""
    from conformance.leak import _ipj

    links = sorted((l["ifname"], l.get("link_type"), "UP" in l.get("flags", []), l.get("mtu"))
                   for l in _ipj(world.ctr, "link", "show"))
    addrs = sorted((l["ifname"], a["family"], a["prefixlen"], a.get("scope"))
                   for l in _ipj(world.ctr, "addr", "show") for a in l.get("addr_info", []))
    routes = sorted((fam, "default" if r.get("dst") == "default" else "net", r.get("dev"), "gateway" in r, r.get("scope"))
                    for fam in ("-4", "-6") for r in _ipj(world.ctr, fam, "route", "show")
                    if not str(r.get("dst", "")).startswith("fe80"))
    return {"links": links, "addresses": addrs, "routes": routes}


@check("DIFF-kernel-state", "Differential", "D", "same container state as the reference plugin")
@kinds("interface", "loopback")
def test_same_kernel_state_as_reference(plugin, world):
    """After ADD of the same config, the container namespace holds the same kinds of
    links, addresses and routes as with the reference plugin."""
    need_profile(plugin)
    if plugin.reference is None:
        pytest.skip("not applicable: no reference plugin of this type to compare with (or it is the one under test)")
    from conformance.world import World

    v = "1.0.0"
    with World(world.cni_path, plugin.profile) as other:
        add_ok(world, plugin, world.conf(v))
        ref_out = other.exec(plugin.reference, "ADD", other.conf(v), containerid=CID, ifname=ifname(plugin),
                             path="/usr/lib/cni")
        assert ref_out.ok, f"the reference failed on the same config: {ref_out}"
        ours, ref = _kernel_shape(world), _kernel_shape(other)
        other.exec(plugin.reference, "DEL", other.conf(v), containerid=CID, ifname=ifname(plugin), path="/usr/lib/cni")
        del_ok(world, plugin, world.conf(v))
    assert ours == ref, f"ours: {ours}\nreference: {ref}"
