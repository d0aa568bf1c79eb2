"""Interface plugin checks (bridge-like: creates CNI_IFNAME, delegates to IPAM):
checklist D18-D20, G31/G33 (in test_lifecycle), J43-J46."""

from __future__ import annotations

import json

from conformance.checks.common import CID, add_ok, assert_error, del_ok, need_profile, newest, run, with_prev
from conformance.plugin import check, kinds
from conformance.proc import sh


def _ipj(ns: str, *argv: str) -> list:
    out = sh("ip", "-j", *argv, ns=ns, check=False)
    return json.loads(out) if out.strip() else []


def _link(ns: str, name: str) -> dict | None:
    return next((l for l in _ipj(ns, "link", "show") if l["ifname"] == name), None)


@check("D18-interface-created", "D ADD", "M", "SPEC §ADD; checklist D18")
@kinds("interface")
def test_interface_and_addresses_in_namespace(plugin, world):
    """CNI_IFNAME exists in CNI_NETNS holding the result's addresses and routes."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.1.0"))
    res = add_ok(world, plugin, conf)
    link = _link(world.ctr, "eth0")
    assert link is not None, "eth0 was not created in the container namespace"
    have = {f"{a['local']}/{a['prefixlen']}" for l in _ipj(world.ctr, "addr", "show", "dev", "eth0") for a in l["addr_info"]}
    for ipc in res.get("ips", []):
        assert ipc["address"] in have, f"{ipc['address']} from the result is not on eth0 ({sorted(have)})"
    routes = {r.get("dst") for fam in ("-4", "-6") for r in _ipj(world.ctr, fam, "route", "show")}
    for r in res.get("routes", []):
        dst = "default" if r["dst"] in ("0.0.0.0/0", "::/0") else r["dst"]
        assert dst in routes, f"route {r} from the result is not in the container ({sorted(routes)})"
    del_ok(world, plugin, conf)
    assert _link(world.ctr, "eth0") is None, "DEL left eth0 in the container"


@check("D19-ifname-exists", "D ADD", "M", "SPEC §ADD (interface exists: error); checklist D19")
@kinds("interface")
def test_existing_interface_is_an_error(plugin, world):
    """An interface called CNI_IFNAME already in the container: ADD fails and leaves the
    existing interface as it was."""
    need_profile(plugin)
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", ns=world.ctr)
    before = _link(world.ctr, "eth0")
    conf = world.conf(newest(plugin, world, "1.1.0"))
    assert_error(run(world, plugin, "ADD", conf))
    after = _link(world.ctr, "eth0")
    assert after is not None and (after["ifindex"], after.get("address")) == (before["ifindex"], before.get("address")), \
        f"the existing eth0 was changed: {before} -> {after}"
    sh("ip", "link", "delete", "eth0", ns=world.ctr)
    del_ok(world, plugin, conf)


@check("F28-del-spares-foreign-interface", "F DEL", "S", "SPEC §DEL (release what the plugin made); checklist F28")
@kinds("interface")
def test_del_after_refused_add_spares_existing_interface(plugin, world):
    """Runtimes send DEL after a failed ADD. When ADD failed because CNI_IFNAME already
    existed, that DEL must not delete the interface the plugin never made."""
    need_profile(plugin)
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", ns=world.ctr)
    conf = world.conf(newest(plugin, world, "1.1.0"))
    assert_error(run(world, plugin, "ADD", conf))
    del_ok(world, plugin, conf)
    still = _link(world.ctr, "eth0") is not None
    if still:
        sh("ip", "link", "delete", "eth0", ns=world.ctr)
    assert still, "DEL deleted an eth0 that the plugin did not create"


@check("D20-result-layout", "D ADD", "M", "SPEC §Result; checklist D20")
@kinds("interface")
def test_result_layout(plugin, world):
    """interfaces lists what was created, the container's with sandbox = CNI_NETNS;
    ips[].interface points at the container interface; addresses and dsts are CIDRs."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.1.0"))
    res = add_ok(world, plugin, conf)
    ifs = res.get("interfaces", [])
    ctr = [i for i, x in enumerate(ifs) if x.get("name") == "eth0" and x.get("sandbox") == world.ctr_path]
    assert ctr, f"no interface eth0 with sandbox {world.ctr_path} in {ifs}"
    for ipc in res.get("ips", []):
        assert ipc.get("interface") in ctr, f"ips[] entry does not point at the container interface: {ipc}"
        assert "/" in ipc["address"], ipc
    for r in res.get("routes", []):
        assert "/" in r["dst"], r
    assert set(res.get("dns", {})) <= {"nameservers", "domain", "search", "options"}, res.get("dns")
    del_ok(world, plugin, conf)


@check("J43-ipam-delegation", "J Delegation", "M", "SPEC §Delegated plugins; checklist J43/J44")
@kinds("interface")
def test_ipam_gets_same_env_and_whole_config(plugin, world):
    """The IPAM plugin is found through CNI_PATH, gets our environment (only CNI_COMMAND
    may differ) and the whole config; its addresses come back with interface set."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"), ipam=world.spy_ipam())
    args = "IgnoreUnknown=1;K8S_POD_NAME=spy"
    res = add_ok(world, plugin, conf, path=world.spy_path, args=args)
    calls = world.spy_calls()
    assert calls, "the IPAM plugin was never called (is it looked up through CNI_PATH?)"
    env = calls[0]["env"]
    expect = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": CID, "CNI_NETNS": world.ctr_path, "CNI_IFNAME": "eth0",
              "CNI_ARGS": args, "CNI_PATH": world.spy_path}
    got = {k: env.get(k) for k in expect}
    assert got == expect, f"IPAM saw a different environment: {got}"
    assert json.loads(calls[0]["stdin"]) == conf, "IPAM did not get the whole network config"
    addrs = [ipc["address"] for ipc in res.get("ips", [])]
    assert addrs == [conf["ipam"]["address"]], f"the IPAM address did not come back: {res}"
    del_ok(world, plugin, conf, path=world.spy_path)


@check("J43-ipam-verbs-forwarded", "J Delegation", "M", "SPEC §Delegated plugins; checklist J32/J36/J42/J43")
@kinds("interface")
def test_ipam_sees_check_and_del(plugin, world):
    """CHECK and DEL are passed on to the IPAM plugin."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"), ipam=world.spy_ipam())
    res = add_ok(world, plugin, conf, path=world.spy_path)
    out = run(world, plugin, "CHECK", with_prev(conf, res), path=world.spy_path)
    assert out.ok, f"CHECK: {out}"
    del_ok(world, plugin, conf, path=world.spy_path)
    verbs = [c["env"].get("CNI_COMMAND") for c in world.spy_calls()]
    assert "CHECK" in verbs and "DEL" in verbs, f"IPAM saw only {verbs}"


@check("J46-ipam-error-code", "J Delegation", "M", "SPEC §Delegated plugins (errors pass through); checklist J46")
@kinds("interface")
def test_ipam_error_keeps_code(plugin, world):
    """An IPAM error fails ADD with the IPAM's own code and leaves nothing (leak check)."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"), ipam=world.spy_ipam())
    world.spy_reply("ADD", json.dumps({"cniVersion": "1.0.0", "code": 117, "msg": "spy says no"}), 1)
    out = run(world, plugin, "ADD", conf, path=world.spy_path)
    assert_error(out, 117)
    del_ok(world, plugin, conf, path=world.spy_path)


@check("J46-ipam-released", "J Delegation", "M", "SPEC §ADD (failure releases); checklist D21/J46")
@kinds("interface")
def test_ipam_released_when_add_fails_later(plugin, world):
    """A failure after IPAM ADD (a route the kernel refuses) undoes everything and calls
    IPAM DEL, so the address is not leaked."""
    need_profile(plugin)
    ipam = world.spy_ipam(routes=[{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}])  # unreachable gateway
    conf = world.conf(newest(plugin, world, "1.0.0"), ipam=ipam)
    out = run(world, plugin, "ADD", conf, path=world.spy_path)
    assert_error(out)
    verbs = [c["env"].get("CNI_COMMAND") for c in world.spy_calls()]
    assert verbs[:1] == ["ADD"] and "DEL" in verbs, f"IPAM calls after a failed ADD: {verbs}"
    del_ok(world, plugin, conf, path=world.spy_path)


@check("J-gc-status-forwarded", "J Delegation", "M", "SPEC 1.1.0 §GC/§STATUS (pass on to IPAM); checklist H36/I42")
@kinds("interface")
def test_gc_and_status_reach_ipam(plugin, world):
    """GC (with the same stdin: valid attachments) and STATUS are passed on to IPAM, and
    a failing IPAM STATUS fails the plugin's STATUS with its code."""
    need_profile(plugin)
    conf = world.conf("1.1.0", ipam=world.spy_ipam())
    conf["cni.dev/valid-attachments"] = []
    out = world.exec(plugin.binary, "GC", conf, containerid="", ifname="", netns="", path=world.spy_path)
    assert out.ok, f"GC: {out}"
    stat = {k: v for k, v in conf.items() if k != "cni.dev/valid-attachments"}
    out = world.exec(plugin.binary, "STATUS", stat, containerid="", ifname="", netns="", path=world.spy_path)
    assert out.ok, f"STATUS: {out}"
    calls = world.spy_calls()
    verbs = [c["env"].get("CNI_COMMAND") for c in calls]
    assert "GC" in verbs and "STATUS" in verbs, f"IPAM saw only {verbs}"
    gc_stdin = json.loads(calls[verbs.index("GC")]["stdin"])
    assert gc_stdin.get("cni.dev/valid-attachments") == [], "IPAM GC did not get the valid attachments"
    world.spy_reply("STATUS", json.dumps({"cniVersion": "1.1.0", "code": 50, "msg": "pool gone"}), 1)
    out = world.exec(plugin.binary, "STATUS", stat, containerid="", ifname="", netns="", path=world.spy_path)
    assert_error(out, 50)
