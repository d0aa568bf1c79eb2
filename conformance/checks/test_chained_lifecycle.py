"""The lifecycle of a chained (meta) plugin behind a real interface plugin, as runtimes
run it: each check puts the plugin under test after bridge (with host-local) in one network
list and drives the list through libcni, so the plugin's prevResult is what a real
interface plugin returned for a real pod, CHECK's prevResult comes from libcni's cache, and
DEL gets what libcni sends (the cached result, or nothing when there is none).

bridge and host-local come from the directory under test when it has them, else from the
reference plugins (``/usr/lib/cni``): libcni searches CNI_PATH in that order. Each pod is a
namespace of its own (``World.new_netns``); the bridge, which outlives its attachments by
design, is removed by the check before the leak checker compares the host namespace
(firewall rules, qdiscs, links) with what it held before.
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from conformance.checks.common import effect_conf, need_profile, newest
from conformance.plugin import check, kinds
from conformance.proc import sh

REFERENCE_DIR = "/usr/lib/cni"
PARALLEL_PODS = 12


class _Chain:
    """The network list [bridge + host-local, plugin under test] of a world, through libcni."""

    def __init__(self, plugin, world) -> None:
        from conformance.libcni import LibCNI, write_conflist

        need_profile(plugin)
        dirs = [world.cni_path] + ([REFERENCE_DIR] if os.path.isdir(REFERENCE_DIR) else [])
        for needed in ("bridge", "host-local"):
            if not any(os.access(os.path.join(d, needed), os.X_OK) for d in dirs):
                pytest.skip(f"not applicable: no {needed} plugin to chain behind (in {' or '.join(dirs)})")
        self.world = world
        self.version = newest(plugin, world, "1.0.0")  # Debian's libcni (1.1.2) stops at 1.0.0
        sb = world.sandbox
        interface = {"type": "bridge", "bridge": sb.bridge, "isGateway": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": sb.subnet4}]],
                              "dataDir": os.path.join(sb.data_dir, "chain"), "routes": [{"dst": "0.0.0.0/0"}]}}
        mine = {k: v for k, v in effect_conf(plugin, world, self.version).items() if k not in ("cniVersion", "name")}
        # Port mappings come as capability arguments, as a runtime passes them, and each pod
        # gets host ports of its own (two pods cannot map one host port).
        self.mappings = mine.get("runtimeConfig", {}).get("portMappings") \
            if mine.get("capabilities", {}).get("portMappings") else None
        if self.mappings is not None:
            rc = {k: v for k, v in mine["runtimeConfig"].items() if k != "portMappings"}
            mine = {k: v for k, v in mine.items() if k != "runtimeConfig"} | ({"runtimeConfig": rc} if rc else {})
        self.pods: dict[str, int] = {}
        self.name = f"chain-{world.tag}"
        self.type = plugin.type
        self._dirs, self._interface = dirs, interface
        write_conflist(world.conf_dir, self.name, [interface, mine], self.version)
        self.cni = LibCNI(dirs, world.conf_dir, world.cache_dir, in_netns=world.host)

    def call(self, verb: str, netns: str, cid: str):
        fn = {"ADD": self.cni.add, "CHECK": self.cni.check, "DEL": self.cni.delete}[verb]
        cap_args = None
        if self.mappings is not None:
            n = self.pods.setdefault(cid, len(self.pods))
            cap_args = {"portMappings": [dict(m, hostPort=m["hostPort"] + 10 * n) for m in self.mappings]}
        return fn(self.name, netns, "eth0", container_id=cid, cap_args=cap_args)

    def ok(self, verb: str, netns: str, cid: str):
        out = self.call(verb, netns, cid)
        if not out.ok:
            whose = self.whose_check(netns, cid) if verb == "CHECK" else ""
            pytest.fail(f"libcni {verb} of [bridge, {self.type}] for {cid}: {out}{whose}", pytrace=False)
        return out

    def whose_check(self, netns: str, cid: str) -> str:
        """Whose CHECK failed in the chain: bridge's alone, through libcni with the same
        network name and cache (so the same cached result as prevResult), tells bridge's
        from the plugin's (sbr and vrf move or drop the route bridge checks for)."""
        from conformance.libcni import LibCNI, write_conflist

        conf_dir = os.path.join(self.world.tmp, "net.d-interface-only")
        os.makedirs(conf_dir, exist_ok=True)
        write_conflist(conf_dir, self.name, [self._interface], self.version)
        alone = LibCNI(self._dirs, conf_dir, self.world.cache_dir, in_netns=self.world.host)
        out = alone.check(self.name, netns, "eth0", container_id=cid)
        if out.ok:
            return f" -- bridge's CHECK alone passes on the same pod: the CHECK that fails is {self.type}'s"
        return (f" -- bridge's CHECK alone fails too ({out.message}): the CHECK that fails is bridge's, "
                f"on the pod as {self.type} left it")

    def done(self) -> None:
        """Remove the bridge (it outlives its attachments by design), so that the leak
        checker sees only what the plugin under test left."""
        sh("ip", "link", "delete", self.world.sandbox.bridge, ns=self.world.host, check=False)


@check("LC-chained-lifecycle", "G CHECK", "M", "SPEC §CHECK, §DEL (idempotent); checklist G29/F25")
@kinds("chained")
def test_chained_add_check_del_twice(plugin, world):
    """ADD, CHECK (prevResult from libcni's cache), DEL, DEL again: each succeeds; what the
    plugin made is gone (leak check)."""
    chain = _Chain(plugin, world)
    pod = world.new_netns()
    added = chain.ok("ADD", pod, "lc-1")
    assert added.doc.get("cniVersion") == chain.version, added
    chain.ok("CHECK", pod, "lc-1")
    chain.ok("DEL", pod, "lc-1")
    chain.ok("DEL", pod, "lc-1")
    chain.done()


@check("LC-chained-del-never-added", "F DEL", "M", "SPEC §DEL; checklist F26")
@kinds("chained")
def test_chained_del_never_added(plugin, world):
    """DEL of an attachment libcni never added (no cached result: no prevResult) succeeds."""
    chain = _Chain(plugin, world)
    chain.ok("DEL", world.new_netns(), "lc-never")
    chain.done()


@check("LC-chained-del-netns-gone", "F DEL", "M", "SPEC §DEL (best effort, release everything); checklist F27")
@kinds("chained")
def test_chained_del_after_netns_gone(plugin, world):
    """ADD, the pod's namespace deleted, DEL: succeeds and removes what the plugin made on
    the host (leak check)."""
    chain = _Chain(plugin, world)
    pod = world.new_netns()
    chain.ok("ADD", pod, "lc-gone")
    world.drop_netns(pod)
    chain.ok("DEL", pod, "lc-gone")
    chain.done()


@check("LC-chained-parallel", "L Concurrency", "M", "SPEC §Concurrency (plugins must lock); checklist L50")
@kinds("chained")
def test_chained_parallel_adds_and_dels(plugin, world):
    """Pods added at once (each its own namespace), each then CHECKed, then all deleted at
    once: every call succeeds, the pods keep distinct addresses, nothing is left."""
    chain = _Chain(plugin, world)
    pods = [world.new_netns() for _ in range(PARALLEL_PODS)]
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_PODS) as ex:
        adds = list(ex.map(lambda i: chain.call("ADD", pods[i], f"lcp-{i}"), range(PARALLEL_PODS)))
    failed = [str(o) for o in adds if not o.ok]
    try:
        assert not failed, f"{len(failed)} of {PARALLEL_PODS} parallel ADDs failed: {failed[:3]}"
        addrs = [ipc["address"] for o in adds for ipc in o.doc.get("ips", [])]
        assert len(set(addrs)) == PARALLEL_PODS, f"addresses not distinct: {sorted(addrs)}"
        with concurrent.futures.ThreadPoolExecutor(PARALLEL_PODS) as ex:
            checks = list(ex.map(lambda i: chain.call("CHECK", pods[i], f"lcp-{i}"), range(PARALLEL_PODS)))
        failed = [i for i, o in enumerate(checks) if not o.ok]
        if failed:
            first = failed[0]
            pytest.fail(f"{len(failed)} of {PARALLEL_PODS} CHECKs after parallel ADDs failed: "
                        f"{[str(checks[i]) for i in failed[:3]]}"
                        f"{chain.whose_check(pods[first], f'lcp-{first}')} (pod lcp-{first})", pytrace=False)
    finally:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL_PODS) as ex:
            dels = list(ex.map(lambda i: chain.call("DEL", pods[i], f"lcp-{i}"), range(PARALLEL_PODS)))
    failed = [str(o) for o in dels if not o.ok]
    assert not failed, f"{len(failed)} of {PARALLEL_PODS} parallel DELs failed: {failed[:3]}"
    chain.done()


@check("LC-chained-interleaved", "L Concurrency", "M", "SPEC §Concurrency; checklist L50")
@kinds("chained")
def test_chained_interleaved_adds_and_dels(plugin, world):
    """ADDs of new pods racing DELs of old ones: every call succeeds, the live pods pass
    CHECK, and deleting them leaves nothing."""
    chain = _Chain(plugin, world)
    n = PARALLEL_PODS // 2
    pods = [world.new_netns() for _ in range(2 * n)]

    def one(job):
        verb, i = job
        return verb, i, chain.call(verb, pods[i], f"lci-{i}")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        first = list(ex.map(one, [("ADD", i) for i in range(n)]))
        mixed = list(ex.map(one, [("DEL", i) for i in range(n)] + [("ADD", n + i) for i in range(n)]))
        try:
            bad = [f"{v} {i}: {o}" for v, i, o in first + mixed if not o.ok]
            assert not bad, f"{len(bad)} calls failed: {bad[:3]}"
            checks = list(ex.map(one, [("CHECK", n + i) for i in range(n)]))
            bad = [i for _, i, o in checks if not o.ok]
            if bad:
                pytest.fail(f"live pods fail CHECK: {[f'CHECK {i}: {checks[i - n][2]}' for i in bad[:3]]}"
                            f"{chain.whose_check(pods[bad[0]], f'lci-{bad[0]}')} (pod lci-{bad[0]})", pytrace=False)
        finally:
            last = list(ex.map(one, [("DEL", n + i) for i in range(n)]))
    assert all(o.ok for _, _, o in last), [str(o) for _, _, o in last if not o.ok][:3]
    chain.done()
