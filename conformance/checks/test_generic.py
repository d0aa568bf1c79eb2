"""Generic checks: every plugin, whatever it does (checklist sections A, B, C, F, K).

Each check's id starts with its checklist item (e.g. ``A1``); the marker carries the
section, the level (M = MUST, S = SHOULD, D = de facto) and the spec reference.
"""

from __future__ import annotations

import os

import pytest

from conformance.checks.common import (
    CID, SPEC_CODES, add_ok, assert_error, del_ok, ifname, need_profile, newest, run,
    supported_versions,
)
from conformance.plugin import check, kinds

REQUIRED = {
    "ADD": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME"),
}


def _conf(plugin, world, version="1.0.0"):
    if plugin.profile is None:
        return {"cniVersion": version, "name": f"net-{world.tag}", "type": plugin.type}
    return world.conf(version)


@check("A1-missing-required-var", "A Environment", "M", "SPEC §Parameters; checklist A1")
@pytest.mark.parametrize("verb,var", [(v, k) for v, ks in REQUIRED.items() for k in ks])
def test_missing_required_variable(plugin, world, verb, var):
    """A missing or empty required variable: non-zero exit, code 4 on stdout, nothing done."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": CID,
           "CNI_NETNS": world.ctr_path, "CNI_IFNAME": ifname(plugin), "CNI_ARGS": "", "CNI_PATH": world.cni_path}
    env[var] = ""
    out = world.exec(plugin.binary, verb, _conf(plugin, world), only_env=env)
    if var == "CNI_COMMAND":
        # With no command at all the reference describes itself on stderr; either that
        # (exit 0, nothing on stdout) or an error document is acceptable.
        assert out.stdout.strip() == b"" or (out.rc != 0 and out.code == 4), out
        return
    assert_error(out, 4)


@check("A1-cni-path-optional", "A Environment", "M", "SPEC §Parameters (CNI_PATH optional)")
@kinds("ipam", "loopback")
def test_cni_path_is_optional(plugin, world):
    """CNI_PATH is optional for plugins that delegate to nothing."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    out = run(world, plugin, "ADD", conf, path="")
    assert out.ok, f"ADD without CNI_PATH failed: {out}"
    out = run(world, plugin, "DEL", conf, path="")
    assert out.ok, f"DEL without CNI_PATH failed: {out}"


@check("A2-del-without-netns", "A Environment", "M", "SPEC §Parameters (CNI_NETNS optional for DEL); checklist A2")
def test_del_without_netns(plugin, world):
    need_profile(plugin)
    out = run(world, plugin, "DEL", world.conf(newest(plugin, world, "1.0.0")), netns="")
    assert out.ok and out.stdout.strip() == b"", out


@check("A2-version-only-command", "A Environment", "M", "SPEC §VERSION; checklist A2/C13")
def test_version_with_only_cni_command(plugin, world):
    out = world.exec(plugin.binary, "VERSION", {"cniVersion": "1.0.0"},
                     only_env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION"})
    assert out.ok, out
    assert isinstance(out.doc, dict) and isinstance(out.doc.get("supportedVersions"), list), out


@check("A3-unknown-command", "A Environment", "M", "SPEC §Parameters; checklist A3")
def test_unknown_command(plugin, world):
    out = run(world, plugin, "FROB", _conf(plugin, world))
    assert_error(out, 4)


@check("A4-bad-ifname", "A Environment", "M", "SPEC §Parameters (CNI_IFNAME); checklist A4")
@pytest.mark.parametrize("name", ["a" * 16, "eth/0", "eth:0", "eth 0", ".", ".."])
def test_bad_interface_name(plugin, world, name):
    """An unusable interface name is refused, with no side effects (leak check)."""
    need_profile(plugin)
    if plugin.kind == "loopback":
        pytest.skip("not applicable: loopback works on lo whatever CNI_IFNAME says")
    out = run(world, plugin, "ADD", world.conf(newest(plugin, world, "1.0.0")), ifname_=name)
    assert_error(out)


@check("A5-container-id", "A Environment", "S", "SPEC §Parameters (CNI_CONTAINERID); checklist A5")
@kinds("ipam", "interface", "loopback")
def test_container_ids(plugin, world):
    """IDs matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ work; others are refused or at least never
    used as a path."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    add_ok(world, plugin, conf, cid="Ab9_x.y-z")
    del_ok(world, plugin, conf, cid="Ab9_x.y-z")
    for bad in ("../../../escape", "a/b", "-lead", "sp ace"):
        out = run(world, plugin, "ADD", conf, cid=bad)
        if out.ok:
            run(world, plugin, "DEL", conf, cid=bad)
        stray = [os.path.join(d, f) for d, _, fs in os.walk(world.tmp) for f in fs if "escape" in f or "lead" in f]
        assert not stray, f"container ID {bad!r} was used in a path: {stray}"
        assert not os.path.exists(os.path.join(world.tmp, "escape")), f"container ID {bad!r} escaped the data dir"


@check("A6-ignore-unknown", "A Environment", "M", "CONVENTIONS.md (CNI_ARGS, IgnoreUnknown); checklist A6")
@kinds("ipam", "interface", "loopback")
def test_cni_args_ignore_unknown(plugin, world):
    """With IgnoreUnknown=1, unknown CNI_ARGS keys do not fail ADD or DEL."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    args = "IgnoreUnknown=1;K8S_POD_NAME=x;FOO=y"
    out = run(world, plugin, "ADD", conf, args=args)
    assert out.ok, f"ADD with CNI_ARGS={args!r} failed: {out}"
    del_ok(world, plugin, conf, args=args)


@check("A6-well-known-cni-args", "A Environment", "S", "CONVENTIONS.md (CNI_ARGS shared by a chain)")
@kinds("ipam", "interface", "loopback")
def test_cni_args_well_known_keys(plugin, world):
    """The Kubernetes keys every runtime sends do not fail a plugin even without
    IgnoreUnknown: CNI_ARGS reaches every plugin of a chain."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    args = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1"
    out = run(world, plugin, "ADD", conf, args=args)
    assert out.ok, f"ADD with CNI_ARGS={args!r} failed: {out}"
    del_ok(world, plugin, conf, args=args)


@check("B9-error-document", "B Output", "S", "SPEC §Error; checklist B8/B9")
def test_error_document_on_stdout(plugin, world):
    out = run(world, plugin, "ADD", b'{"cniVersion": "1.0.0", "name": ')
    assert_error(out)
    assert out.code in SPEC_CODES or out.code >= 100, f"undefined error code {out.code}"


@check("B11-bad-stdin", "B Output", "M", "SPEC §Error codes 6/7; checklist B11")
@pytest.mark.parametrize("stdin,code", [
    (b"", 6), (b"{not json", 6), (b"[1, 2]", 6),
    (b'{"cniVersion": "1.0.0", "type": "x"}', 7),
    (b'{"cniVersion": "1.0.0", "name": "bad/name", "type": "x"}', 7),
], ids=["empty", "garbage", "array", "no-name", "bad-name"])
def test_bad_stdin(plugin, world, stdin, code):
    assert_error(run(world, plugin, "ADD", stdin), code)


@check("B12-silent-success", "B Output", "M", "SPEC §DEL/CHECK output; checklist B12")
def test_del_prints_nothing(plugin, world):
    need_profile(plugin)
    del_ok(world, plugin, world.conf(newest(plugin, world, "1.0.0")))


@check("C13-version", "C Versions", "M", "SPEC §VERSION; checklist C13")
def test_version_answer(plugin, world):
    vs = supported_versions(plugin, world)
    assert "1.0.0" in vs, f"supportedVersions lacks 1.0.0: {vs}"
    out = world.exec(plugin.binary, "VERSION", {"cniVersion": "1.0.0"})
    assert isinstance(out.doc.get("cniVersion"), str), out


@check("C13-version-1.1.0", "C Versions", "M", "SPEC 1.1.0 (current); checklist C13")
def test_supports_current_spec(plugin, world):
    assert "1.1.0" in supported_versions(plugin, world)


@check("C14-result-schema", "C Versions", "M", "SPEC §Result, spec-upgrades.md; checklist C14")
@kinds("ipam", "interface", "loopback")
def test_result_in_each_version(plugin, world):
    """For every supported version V, ADD answers in V with V's schema."""
    need_profile(plugin)
    for v in supported_versions(plugin, world):
        conf = world.conf(v)
        res = add_ok(world, plugin, conf)
        try:
            assert res.get("cniVersion") == v, f"asked {v}, got cniVersion {res.get('cniVersion')!r}"
            if v in ("0.1.0", "0.2.0"):
                assert set(res) <= {"cniVersion", "ip4", "ip6", "dns"}, f"{v} result has keys {sorted(res)}"
                assert "ip4" in res or "ip6" in res, f"{v} result has no ip4/ip6"
            else:
                assert set(res) <= {"cniVersion", "interfaces", "ips", "routes", "dns"}, f"{v} result keys {sorted(res)}"
                for ipc in res.get("ips", []):
                    if v.startswith("0."):
                        assert ipc.get("version") in ("4", "6"), f"{v} ips[] entry without version: {ipc}"
                    else:
                        assert "version" not in ipc, f"{v} ips[] entry still has version: {ipc}"
                    assert "/" in ipc["address"], f"address not in CIDR form: {ipc}"
        finally:
            del_ok(world, plugin, conf)


@check("C15-unsupported-version", "C Versions", "M", "SPEC §Version; checklist C15")
@pytest.mark.parametrize("version", ["0.99.0", "2.0.0", "1.1", "banana"])
def test_unsupported_version(plugin, world, version):
    conf = _conf(plugin, world)
    conf["cniVersion"] = version
    assert_error(run(world, plugin, "ADD", conf), 1)


@check("C17-check-gating", "C Versions", "D", "SPEC §Version considerations; checklist C17")
def test_check_gated_by_version(plugin, world):
    """CHECK needs a 0.4.0+ config: code 1 below."""
    assert_error(run(world, plugin, "CHECK", _conf(plugin, world, "0.3.1")), 1)


@check("C17-gc-status-gating", "C Versions", "D", "SPEC 1.1.0 §GC/§STATUS; checklist C17")
@pytest.mark.parametrize("verb", ["GC", "STATUS"])
def test_gc_status_gated_by_version(plugin, world, verb):
    """GC and STATUS need a 1.1.0 config: code 1 below."""
    assert_error(run(world, plugin, verb, _conf(plugin, world, "1.0.0")), 1)


@check("F25-del-twice", "F DEL", "M", "SPEC §DEL (idempotent); checklist F25")
@kinds("ipam", "interface", "loopback")
def test_del_twice(plugin, world):
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    add_ok(world, plugin, conf)
    del_ok(world, plugin, conf)
    del_ok(world, plugin, conf)


@check("F26-del-never-added", "F DEL", "M", "SPEC §DEL; checklist F26")
def test_del_never_added(plugin, world):
    need_profile(plugin)
    del_ok(world, plugin, world.conf(newest(plugin, world, "1.0.0")), cid="never-added")


@check("F27-del-netns-gone", "F DEL", "M", "SPEC §DEL (best effort, release everything); checklist F27")
@kinds("ipam", "interface", "loopback")
def test_del_after_netns_deleted(plugin, world):
    """DEL after the container's namespace is gone succeeds and releases everything
    outside it (leases, host-side links, rules: the leak check)."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    ns = world.new_netns()
    add_ok(world, plugin, conf, netns=ns)
    world.drop_netns(ns)
    del_ok(world, plugin, conf, netns=ns)


@check("F28-del-after-killed-add", "F DEL", "M", "SPEC §DEL; checklist F28")
@kinds("ipam", "interface", "loopback")
@pytest.mark.parametrize("after", [0.0, 0.005, 0.02])
def test_del_after_add_killed(plugin, world, after):
    """ADD killed with SIGKILL part-way, then DEL (without prevResult, as libcni sends it):
    DEL succeeds and nothing is left."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    world.exec(plugin.binary, "ADD", conf, containerid=CID, ifname=ifname(plugin), kill_after=after)
    del_ok(world, plugin, conf)


@check("K47-tolerated-keys", "K Configuration", "M", "SPEC §Network configuration; checklist K47")
@kinds("ipam", "interface", "loopback")
def test_tolerates_standard_keys(plugin, world):
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"), runtimeConfig={}, args={"foo": {"bar": 1}},
                      capabilities={"ips": True}, **{"cni.dev/x": 1})
    add_ok(world, plugin, conf)
    del_ok(world, plugin, conf)


@check("K48-runtime-config-tolerated", "K Configuration", "M", "CONVENTIONS.md capabilities; checklist K48")
@kinds("ipam", "interface", "loopback")
def test_tolerates_other_capabilities(plugin, world):
    """runtimeConfig carrying the standard capabilities a plugin does not use is ignored
    (those its config declares in ``capabilities`` it uses, so they are left out)."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    caps = conf.get("capabilities")
    declared = {k for k, v in caps.items() if v} if isinstance(caps, dict) else set()
    rc = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
          "bandwidth": {"ingressRate": 1000, "ingressBurst": 100, "egressRate": 1000, "egressBurst": 100},
          "dns": {"servers": ["192.0.2.53"], "searches": ["example.test"], "options": ["ndots:2"]},
          "aliases": ["web"], "cgroupPath": "/kubepods/x", "deviceID": "0000:00:1f.6",
          "infinibandGUID": "c2:11:22:33:44:55:66:77"}
    conf["runtimeConfig"] = {k: v for k, v in rc.items() if k not in declared}
    add_ok(world, plugin, conf)
    del_ok(world, plugin, conf)
