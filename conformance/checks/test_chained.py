"""Chained plugin checks (portmap-like: needs prevResult, passes it on): checklist E22-E24,
F26, G29 for chained plugins, with the leak checker watching the firewall."""

from __future__ import annotations

import pytest

from conformance.checks.common import assert_error, need_profile, newest, run, supported_versions, with_prev
from conformance.plugin import check, kinds
from conformance.proc import sh


def _prev(world, version: str) -> dict:
    """A previous result as an interface plugin would have returned it."""
    a, b = world.sandbox.subnet4.split(".")[1:3]
    ipc = {"address": f"10.{a}.{b}.5/24", "gateway": f"10.{a}.{b}.1", "interface": 1}
    if version.startswith("0."):
        ipc["version"] = "4"
    return {"cniVersion": version,
            "interfaces": [{"name": world.sandbox.bridge, "mac": "02:00:00:00:00:01"},
                           {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": world.ctr_path}],
            "ips": [ipc], "dns": {}}


def _mappings(world) -> list[dict]:
    return [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}]


def _firewall(world) -> str:
    text = sh("nft", "list", "ruleset", ns=world.host, check=False)
    text += sh("iptables-save", ns=world.host, check=False)
    return text


@check("E22-passthrough", "E Chaining", "M", "SPEC §Chained plugins (output = prevResult + changes); checklist E22")
@kinds("chained")
def test_output_is_prev_result(plugin, world):
    """With nothing to do (no mappings), ADD outputs prevResult unchanged."""
    need_profile(plugin)
    v = newest(plugin, world, "1.0.0")
    prev = _prev(world, v)
    out = run(world, plugin, "ADD", with_prev(world.conf(v), prev))
    assert out.ok, out
    assert out.doc == prev, f"output differs from prevResult:\n{out.doc}\n{prev}"


@check("E22-mappings-installed", "E Chaining", "M", "SPEC §Chained plugins; checklist E22/F27")
@kinds("chained")
def test_mappings_added_and_removed(plugin, world):
    """With port mappings: ADD passes prevResult through and installs rules; DEL (without
    prevResult) removes them all (the leak checker compares the firewall)."""
    need_profile(plugin)
    v = newest(plugin, world, "1.0.0")
    prev = _prev(world, v)
    conf = world.conf(v, runtimeConfig={"portMappings": _mappings(world)})
    before = _firewall(world)
    out = run(world, plugin, "ADD", with_prev(conf, prev))
    assert out.ok, out
    assert out.doc == prev, f"output differs from prevResult:\n{out.doc}\n{prev}"
    assert _firewall(world) != before, "ADD with port mappings changed no firewall rule"
    out = run(world, plugin, "DEL", conf)
    assert out.ok and out.stdout.strip() == b"", out


@check("G29-chained-check", "G CHECK", "M", "SPEC §CHECK; checklist G29/G31/G33")
@kinds("chained")
def test_check_after_add_and_after_del(plugin, world):
    """CHECK passes right after ADD, fails without prevResult, and fails once DEL has
    removed the rules."""
    need_profile(plugin)
    v = newest(plugin, world, "1.1.0")
    prev = _prev(world, v)
    conf = world.conf(v, runtimeConfig={"portMappings": _mappings(world)})
    assert run(world, plugin, "ADD", with_prev(conf, prev)).ok
    out = run(world, plugin, "CHECK", with_prev(conf, prev))
    try:
        assert out.ok and out.stdout.strip() == b"", f"CHECK right after ADD: {out}"
        assert_error(run(world, plugin, "CHECK", conf))
    finally:
        assert run(world, plugin, "DEL", conf).ok
    assert_error(run(world, plugin, "CHECK", with_prev(conf, prev)))


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
        out = run(world, plugin, "ADD", with_prev(world.conf(conf_v), _prev(world, prev_v)))
        assert out.ok, f"config {conf_v} with a {prev_v} prevResult: {out}"
        assert out.doc.get("cniVersion") == conf_v, f"output version {out.doc.get('cniVersion')} for config {conf_v}"


@check("E24-needs-prev-result", "E Chaining", "S", "SPEC §Chained plugins; checklist E24")
@kinds("chained")
def test_add_without_prev_result(plugin, world):
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"), runtimeConfig={"portMappings": _mappings(world)})
    assert_error(run(world, plugin, "ADD", conf))


@check("DIFF-chained-outcomes", "Differential", "D", "same outcomes as the reference plugin of this type")
@kinds("chained")
def test_same_outcomes_as_reference(plugin, world):
    """The same inputs give the same outcomes as the reference plugin (in a world of its
    own): ADD without mappings, with mappings (its output = prevResult, byte for byte once
    parsed), DEL with and without mappings, a second DEL, ADD without prevResult (an error
    for both; codes are not compared: the reference says 999 where we name the problem)."""
    need_profile(plugin)
    if plugin.reference is None:
        pytest.skip("not applicable: no reference plugin of this type to compare with (or it is the one under test)")
    from conformance.world import World

    v = "1.0.0"

    def outcomes(w, binary: str, path: str) -> list:
        prev = _prev(w, v)
        with_maps = w.conf(v, runtimeConfig={"portMappings": _mappings(w)})
        seen = []
        for verb, conf in (("ADD", with_prev(w.conf(v), prev)), ("ADD", with_prev(with_maps, prev)),
                           ("DEL", with_maps), ("DEL", with_maps), ("DEL", w.conf(v)), ("ADD", with_maps)):
            out = w.exec(binary, verb, conf, containerid="diff1", ifname="eth0", path=path)
            doc = out.doc if out.ok else None
            # prevResult carries this world's own addresses: compare it as "= prevResult".
            seen.append((verb, out.ok, "prevResult" if doc == prev else doc))
        return seen

    with World(world.cni_path, plugin.profile) as other:
        ours = outcomes(world, plugin.binary, world.cni_path)
        ref = outcomes(other, plugin.reference, "/usr/lib/cni")
    assert ours == ref, f"ours: {ours}\nreference: {ref}"
