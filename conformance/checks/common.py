"""Shared steps for the checks: run verbs against a plugin in a world, assert error docs."""

from __future__ import annotations

import json

import pytest

from conformance.proc import Outcome
from conformance.world import World

CID = "ctr-conformance-1"
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
SPEC_CODES = set(range(1, 12)) | {50, 51, 999}


def need_profile(plugin) -> None:
    """Skip a check that needs a valid config when the harness has none for this type, or
    when this kernel cannot do the plugin's work (no ipvlan, no 802.1Q): such a check's
    ADD would fail for the kernel's reason, not the plugin's."""
    if plugin.profile is None:
        pytest.skip(f"not applicable: the harness has no config profile for type {plugin.type!r}")
    why = plugin.kernel_missing
    if why:
        pytest.skip(f"not applicable here: {why}; run the harness on a kernel that has it")


def need_many_attachments(plugin) -> None:
    """Skip a check that holds several attachments of one config at once, for a plugin
    whose config serves one at a time (vlan: one VLAN link per master and ID)."""
    need_profile(plugin)
    if plugin.profile.single_attachment:
        pytest.skip(f"not applicable: {plugin.profile.single_attachment}")


def supported_versions(plugin, world: World) -> list[str]:
    """The plugin's own VERSION answer (so old plugins are checked at their versions)."""
    out = world.exec(plugin.binary, "VERSION", {"cniVersion": "1.0.0"})
    if not out.ok or not isinstance(out.doc, dict):
        pytest.fail(f"VERSION failed: {out}")
    return [v for v in out.doc.get("supportedVersions", []) if v in VERSIONS]


def newest(plugin, world: World, at_most: str = "1.1.0") -> str:
    """The newest spec version the plugin supports, not above ``at_most``."""
    vs = [v for v in supported_versions(plugin, world) if VERSIONS.index(v) <= VERSIONS.index(at_most)]
    if not vs:
        pytest.fail("plugin supports none of the spec versions")
    return vs[-1]


def ifname(plugin) -> str:
    return plugin.profile.ifname if plugin.profile else "eth0"


def run(world: World, plugin, verb: str, conf: dict | bytes | str | None, *, cid: str = CID,
        ifname_: str | None = None, **kw) -> Outcome:
    """One verb for attachment (cid, ifname) in the world's container namespace."""
    return world.exec(plugin.binary, verb, conf, containerid=cid,
                      ifname=ifname(plugin) if ifname_ is None else ifname_, **kw)


def add_ok(world: World, plugin, conf: dict, **kw) -> dict:
    out = run(world, plugin, "ADD", conf, **kw)
    assert out.ok, f"ADD failed: {out}"
    assert isinstance(out.doc, dict), f"ADD printed no JSON result: {out}"
    return out.doc


def del_ok(world: World, plugin, conf: dict, **kw) -> None:
    conf = {k: v for k, v in conf.items() if k != "prevResult"} if isinstance(conf, dict) else conf
    out = run(world, plugin, "DEL", conf, **kw)
    assert out.ok, f"DEL failed: {out}"
    assert out.stdout.strip() == b"", f"successful DEL printed something: {out}"


def _mac(ns: str, link: str, fallback: str) -> str:
    from conformance.leak import _ipj

    found = _ipj(ns, "link", "show", "dev", link)
    return found[0].get("address", fallback) if found else fallback


def prev_result(world: World, version: str, full: bool = False) -> dict:
    """A chained plugin's prevResult, as a veth-based interface plugin (bridge, ptp) returns
    it for the pod the world holds (profiles.pod_veth): the host end (no sandbox), eth0 in
    the container, its address; ``full`` adds routes and every dns field (so that each
    object of a result is there, e.g. to be re-cased)."""
    from conformance.profiles import pod_address

    address, gateway = pod_address(world.sandbox)
    host_end = world.sandbox.pod_veth or world.sandbox.bridge
    ipc: dict = {"address": address, "gateway": gateway, "interface": 1}
    if version.startswith("0."):
        ipc["version"] = "4"
    res = {"cniVersion": version,
           "interfaces": [{"name": host_end, "mac": _mac(world.host, host_end, "02:00:00:00:00:01")},
                          {"name": "eth0", "mac": _mac(world.ctr, "eth0", "02:00:00:00:00:02"),
                           "sandbox": world.ctr_path}],
           "ips": [ipc], "dns": {}}
    if full:
        res["routes"] = [{"dst": "0.0.0.0/0", "gw": gateway}]
        res["dns"] = {"nameservers": [gateway], "domain": "example.test", "search": ["example.test"],
                      "options": ["ndots:2"]}
    return res


def passes_through(out: dict, prev: dict) -> bool:
    """Whether a chained plugin's output is its prevResult plus additions: interfaces
    appended (bandwidth's IFB) and DNS entries added (podman's dnsname adds its server and
    search domain), every entry of prevResult kept in its place -- the spec's "prevResult
    plus its changes"."""
    if not isinstance(out, dict):
        return False
    n = len(prev.get("interfaces", []))
    rest = ("interfaces", "dns")
    return (out.get("interfaces", [])[:n] == prev.get("interfaces", []) and _dns_extends(out.get("dns"), prev.get("dns"))
            and {k: v for k, v in out.items() if k not in rest} == {k: v for k, v in prev.items() if k not in rest})


def _dns_extends(out: object, prev: object) -> bool:
    """Whether DNS ``out`` holds every entry of ``prev`` (lists keep prev's entries first,
    a domain is kept or, when prev had none, added)."""
    prev = prev or {}
    if out is None:
        return not prev
    if not isinstance(out, dict) or not isinstance(prev, dict):
        return False
    for key in ("nameservers", "search", "options"):
        before = prev.get(key) or []
        if (out.get(key) or [])[:len(before)] != before:
            return False
    if prev.get("domain") and out.get("domain") != prev["domain"]:
        return False
    return set(out) <= {"nameservers", "search", "options", "domain"} | set(prev)


def effect_conf(plugin, world: World, version: str) -> dict:
    """The chained plugin's config with the keys that make its ADD act (profiles.effect)."""
    extra = plugin.profile.effect(world.sandbox) if plugin.profile.effect else {}
    return world.conf(version, **extra)


def with_prev(conf: dict, result: dict) -> dict:
    c = dict(conf)
    c["prevResult"] = result
    return c


def assert_error(out: Outcome, code: int | set[int] | None = None, mentions: str | None = None) -> None:
    """A failure: non-zero exit and exactly one JSON error object on stdout (SPEC "Error")."""
    assert out.rc != 0, f"expected failure, got exit 0: {out}"
    text = out.stdout.strip()
    assert text, f"failure printed nothing on stdout (error JSON belongs on stdout): {out}"
    try:
        doc = json.loads(text)
    except ValueError:
        pytest.fail(f"stdout is not one JSON document: {out}")
    assert isinstance(doc, dict), f"error is not a JSON object: {out}"
    assert isinstance(doc.get("code"), int) and not isinstance(doc.get("code"), bool), f"error has no integer code: {out}"
    assert isinstance(doc.get("msg"), str), f"error has no string msg: {out}"
    if code is not None:
        codes = {code} if isinstance(code, int) else code
        assert doc["code"] in codes, f"expected code {sorted(codes)}, got {doc['code']}: {out}"
    if mentions is not None:
        text_all = (doc.get("msg", "") + " " + str(doc.get("details", ""))).lower()
        assert mentions.lower() in text_all, f"error should mention {mentions!r}: {out}"
