"""Chained plugin checks (needs prevResult, passes it on): checklist E22-E24, F26, G29 for
chained plugins (portmap, tuning, bandwidth, firewall), with the leak checker watching the
firewall, qdiscs and the settings of the pod's links.

Each profile names the config keys that make its plugin act (``Profile.effect``: port
mappings, an MTU and promiscuity, rates); the pod the prevResult describes is real (a veth
pair, profiles.pod_veth), so a plugin that looks at it (tuning, bandwidth) finds it.
"""

from __future__ import annotations

import pytest

from conformance import deviations
from conformance.checks.common import (
    CID, assert_error, effect_conf, need_profile, newest, passes_through, prev_result, run, supported_versions, with_prev,
)
from conformance.leak import diff, markers, snapshot
from conformance.proc import sh
from conformance.plugin import check, kinds

# What a chained plugin's ADD may change in the world (and its DEL must undo).
EFFECTS = ("host firewall", "host qdiscs", "host links", "container link settings")


def _effects(world) -> dict:
    return snapshot(world, EFFECTS)


def _assert_undone(world, before: dict, what: str) -> None:
    """Nothing of what ADD did is left (shared firewall scaffolding, which names no address
    or port of the world's, may stay, as the leak checker allows)."""
    left = diff(before, _effects(world), firewall_markers=markers(world))
    assert not left, f"{what} left: {' | '.join(left)}"


@check("E22-passthrough", "E Chaining", "M", "SPEC §Chained plugins (output = prevResult + changes); checklist E22")
@kinds("chained")
def test_output_is_prev_result(plugin, world):
    """With nothing to do (no mappings, no rates, no settings), ADD outputs prevResult
    unchanged (a plugin that acts on every ADD, as firewall, passes it on all the same)."""
    need_profile(plugin)
    if plugin.profile.given:
        pytest.skip(f"not applicable: the harness has only the config of {plugin.profile.given}, which may act; "
                    "it cannot tell an idle form of it (E22-effect-applied checks what the config does)")
    v = newest(plugin, world, "1.0.0")
    prev = prev_result(world, v)
    before = _effects(world)
    out = run(world, plugin, "ADD", with_prev(world.conf(v), prev))
    run(world, plugin, "DEL", world.conf(v))
    assert out.ok, out
    assert out.doc == prev, f"output differs from prevResult:\n{out.doc}\n{prev}"
    _assert_undone(world, before, "ADD then DEL (without prevResult)")


@check("E22-effect-applied", "E Chaining", "M", "SPEC §Chained plugins; checklist E22/F27")
@kinds("chained")
def test_effect_added_and_removed(plugin, world):
    """With what makes the plugin act (port mappings, rates, link settings): ADD passes
    prevResult on (plus the interfaces it adds) and changes the host or the pod; DEL
    (without prevResult) undoes it all (the leak checker compares the firewall, qdiscs,
    links and the pod's link settings)."""
    need_profile(plugin)
    v = newest(plugin, world, "1.0.0")
    prev = prev_result(world, v)
    conf = effect_conf(plugin, world, v)
    before = _effects(world)
    out = run(world, plugin, "ADD", with_prev(conf, prev))
    after = _effects(world)
    assert out.ok, out
    assert passes_through(out.doc, prev), f"output is not prevResult plus changes:\n{out.doc}\n{prev}"
    if not plugin.profile.given:  # a given config may act where the harness does not look (routes, sysctls)
        assert after != before, f"ADD with {sorted(set(conf) - set(world.conf(v)))} changed nothing the harness sees"
    out = run(world, plugin, "DEL", conf)
    assert out.ok and out.stdout.strip() == b"", out
    _assert_undone(world, before, "DEL (without prevResult)")


@check("G29-chained-check", "G CHECK", "M", "SPEC §CHECK; checklist G29/G31/G33")
@kinds("chained")
def test_check_after_add_and_after_del(plugin, world):
    """CHECK (with ADD's output as prevResult, as libcni sends it) passes right after ADD,
    fails without prevResult, and fails once DEL has undone what ADD did."""
    need_profile(plugin)
    v = newest(plugin, world, "1.1.0")
    prev = prev_result(world, v)
    conf = effect_conf(plugin, world, v)
    before = _effects(world)
    added = run(world, plugin, "ADD", with_prev(conf, prev))
    assert added.ok, added
    out = run(world, plugin, "CHECK", with_prev(conf, added.doc))
    try:
        assert out.ok and out.stdout.strip() == b"", f"CHECK right after ADD: {out}"
        assert_error(run(world, plugin, "CHECK", conf))
    finally:
        assert run(world, plugin, "DEL", conf).ok
    _assert_undone(world, before, "DEL (without prevResult)")
    assert_error(run(world, plugin, "CHECK", with_prev(conf, added.doc)))


@check("E23-prev-result-versions", "E Chaining", "M", "libcni passes prevResult unconverted; checklist E23")
@kinds("chained")
def test_prev_result_of_same_family(plugin, world):
    """A prevResult of another version of the same family is accepted and the output
    carries the config's version."""
    need_profile(plugin)
    vs = supported_versions(plugin, world)
    pairs = [(c, p) for c, p in (("0.4.0", "0.3.1"), ("0.3.1", "0.4.0"), ("1.1.0", "1.0.0"), ("1.0.0", "1.1.0"))
             if c in vs and p in vs]
    if not pairs:
        pytest.skip("not applicable: the plugin supports no two versions of one family")
    for conf_v, prev_v in pairs:
        out = run(world, plugin, "ADD", with_prev(world.conf(conf_v), prev_result(world, prev_v)))
        run(world, plugin, "DEL", world.conf(conf_v))
        assert out.ok, f"config {conf_v} with a {prev_v} prevResult: {out}"
        assert out.doc.get("cniVersion") == conf_v, f"output version {out.doc.get('cniVersion')} for config {conf_v}"


@check("E24-needs-prev-result", "E Chaining", "S", "SPEC §Chained plugins; checklist E24")
@kinds("chained")
def test_add_without_prev_result(plugin, world):
    need_profile(plugin)
    conf = effect_conf(plugin, world, newest(plugin, world, "1.0.0"))
    out = run(world, plugin, "ADD", conf)
    if out.ok:
        run(world, plugin, "DEL", conf)
    assert_error(out)


@check("DIFF-chained-outcomes", "Differential", "D", "same outcomes as the reference plugin of this type")
@kinds("chained")
def test_same_outcomes_as_reference(plugin, world):
    """The same inputs give the same outcomes as the reference plugin (in a world of its
    own): ADD with nothing to do, with what makes it act (its output = prevResult, plus the
    number of interfaces it appended), CHECK, DEL with and without that config, a second
    DEL, ADD without prevResult (an error for both; codes are not compared: the reference
    says 999 where we name the problem)."""
    need_profile(plugin)
    if plugin.reference is None:
        pytest.skip("not applicable: no reference plugin of this type to compare with (or it is the one under test)")
    from conformance.world import World

    v = "1.0.0"

    def outcomes(w, binary: str, path: str) -> list:
        prev = prev_result(w, v)
        acting = effect_conf(plugin, w, v)
        seen = []
        output = prev
        for verb, conf in (("ADD", with_prev(w.conf(v), prev)), ("ADD", with_prev(acting, prev)),
                           ("CHECK", None), ("DEL", acting), ("DEL", acting), ("DEL", w.conf(v)), ("ADD", acting)):
            if verb == "CHECK":
                conf = with_prev(acting, output)  # libcni sends the ADD output
            out = w.exec(binary, verb, conf, containerid="diff1", ifname="eth0", path=path)
            doc = out.doc if out.ok else None
            if verb == "ADD" and out.ok:
                output = doc
            # prevResult carries this world's own addresses and names: compare it as such.
            if doc == prev:
                doc = "prevResult"
            elif doc is not None and passes_through(doc, prev):
                added_dns = " + DNS entries" if doc.get("dns") != prev.get("dns") else ""
                doc = f"prevResult + {len(doc.get('interfaces', [])) - len(prev.get('interfaces', []))} interface(s){added_dns}"
            seen.append((verb, out.ok, doc))
        w.exec(binary, "DEL", w.conf(v), containerid="diff1", ifname="eth0", path=path)
        return seen

    with World(world.cni_path, plugin.profile) as other:
        ours = outcomes(world, plugin.binary, world.cni_path)
        ref = outcomes(other, plugin.reference, "/usr/lib/cni")
    known = deviations.reason(deviations.REFERENCE, plugin.type, "G29-chained-check")
    if known and ("CHECK", True, None) in ours and ("CHECK", False, None) in ref:
        # The reference's CHECK fails for a documented reason (portmap #819): not a difference.
        ref[ref.index(("CHECK", False, None))] = ("CHECK", True, None)
    assert ours == ref, f"ours: {ours}\nreference: {ref}"


def _need_gc_status(plugin, world) -> None:
    """Skip a GC/STATUS check for a plugin that does not speak CNI 1.1.0 (they came with it)."""
    need_profile(plugin)
    if "1.1.0" not in supported_versions(plugin, world):
        pytest.skip("not applicable: GC and STATUS came with CNI 1.1.0, which the plugin does not support")


@check("H34-chained-gc", "H GC", "M", "SPEC 1.1.0 §GC; checklist H34/H35")
@kinds("chained")
def test_chained_gc(plugin, world):
    """GC listing the attachment keeps what its ADD did (CHECK still passes). Then the pod
    goes without a DEL (its veth pair deleted, as when a runtime loses a container) and a GC
    that no longer lists it removes what is left of it on the host (rules, an IFB, qdiscs,
    state files: the leak checker compares)."""
    _need_gc_status(plugin, world)
    prev = prev_result(world, "1.1.0")
    conf = effect_conf(plugin, world, "1.1.0")
    before = _effects(world)
    added = run(world, plugin, "ADD", with_prev(conf, prev))
    assert added.ok, added
    gc = {k: v for k, v in conf.items() if k != "prevResult"}
    keep = world.exec(plugin.binary, "GC", dict(gc, **{"cni.dev/valid-attachments": [
        {"containerID": CID, "ifname": "eth0"}]}), containerid="", ifname="", netns="")
    out = run(world, plugin, "CHECK", with_prev(conf, added.doc))
    sh("ip", "link", "delete", world.sandbox.pod_veth, ns=world.host)  # the pod is gone, never DELeted
    drop = world.exec(plugin.binary, "GC", dict(gc, **{"cni.dev/valid-attachments": []}),
                      containerid="", ifname="", netns="")
    assert keep.ok and keep.stdout.strip() == b"", f"GC listing the attachment: {keep}"
    assert out.ok, f"CHECK after a GC that listed the attachment: {out}"
    assert drop.ok and drop.stdout.strip() == b"", f"GC without the attachment: {drop}"
    left = diff({k: v for k, v in before.items() if k != "container link settings"},
                {k: v for k, v in _effects(world).items() if k != "container link settings"},
                firewall_markers=markers(world))
    world.renew_namespaces()  # the pod back, for the leak checker's comparison of the rest (files)
    assert not left, f"GC without the attachment, the pod gone, left: {' | '.join(left)}"


@check("I39-chained-status", "I STATUS", "M", "SPEC 1.1.0 §STATUS; checklist I39/I40")
@kinds("chained")
def test_chained_status(plugin, world):
    """STATUS of a plugin that can work succeeds and prints nothing."""
    _need_gc_status(plugin, world)
    conf = effect_conf(plugin, world, "1.1.0")
    out = world.exec(plugin.binary, "STATUS", conf, containerid="", ifname="", netns="")
    assert out.ok and out.stdout.strip() == b"", f"STATUS: {out}"


@check("G31-chained-check-detects-loss", "G CHECK", "S", "SPEC §CHECK; checklist G31")
@kinds("chained")
def test_chained_check_notices_sabotage(plugin, world):
    """Undo what ADD did behind the plugin's back (profiles.Profile.sabotage): CHECK must fail."""
    need_profile(plugin)
    if plugin.profile.sabotage is None:
        pytest.skip("not applicable: the harness knows no way to undo this plugin's work behind its back")
    v = newest(plugin, world, "1.1.0")
    conf = effect_conf(plugin, world, v)
    added = run(world, plugin, "ADD", with_prev(conf, prev_result(world, v)))
    assert added.ok, added
    try:
        plugin.profile.sabotage(world, CID, "eth0")
        assert_error(run(world, plugin, "CHECK", with_prev(conf, added.doc)))
    finally:
        run(world, plugin, "DEL", conf)
