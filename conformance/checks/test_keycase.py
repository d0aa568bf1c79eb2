"""Re-cased config keys (checklist K, de facto): a plugin reads ``"HostPort"`` and
``"HOSTPORT"`` as ``hostPort``, as every Go plugin does.

Go's ``encoding/json`` matches object keys to struct fields case-insensitively (a key equal
to a field's name goes to it; otherwise one whose case-folded form equals it), and runtimes
rely on it: containerd's CRI (go-cni) marshals capability arguments from structs without
JSON tags, so ``runtimeConfig.portMappings`` arrives as ``[{"HostPort": 18080,
"ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}]``, ``bandwidth`` as
``{"IngressRate": .., "IngressBurst": 4294967295, ...}``, ``dns`` as ``{"Servers": [..],
"Searches": [..], "Options": [..]}``. A plugin matching keys exactly breaks under Kubernetes.

Each plugin gets a config using what its type reads (the profile's config plus
capabilities in ``runtimeConfig`` as a runtime injects them, ``args.cni``, a top-level
``dns``; for chained plugins a ``prevResult`` and port mappings), once as is and once per
re-casing variant (``conformance.recase``). Every run happens in fresh namespaces of the
same names and an emptied IPAM data dir, with the same container ID, so two runs of a
correct plugin differ only in what ``conformance.attachment_state`` normalises away.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable

import pytest

from conformance import attachment_state, leak
from conformance.checks.common import CID, VERSIONS, add_ok, del_ok, need_profile, newest, prev_result, run, with_prev
from conformance.plugin import check
from conformance.recase import VARIANTS, describe, recase, scopes
from conformance.proc import Outcome
from conformance.world import World

_REF = ("Go encoding/json Unmarshal matches keys to struct fields case-insensitively "
        "(pkg.go.dev/encoding/json); containerd CRI (go-cni) sends capabilities with Go field-name "
        "keys; more-plugins.md §0, §10")
_MAC = "02:42:0a:00:00:0f"  # the ``mac`` capability value (kept, not normalised: see attachment_state)
_DIFF_LINES = 24
_MAX_PROBES = 16  # re-runs spent, per failing variant, on finding which keys break it


def _net(world: World) -> str:
    """The world's IPv4 /24 without its last octet, e.g. ``10.231.7``."""
    return world.sandbox.subnet4.rsplit(".", 1)[0]


def _base_conf(plugin, world: World, version: str) -> dict:
    """The original config: the profile's, plus what a runtime adds and what the type reads."""
    conf = world.conf(version)
    net = _net(world)
    # What containerd's CRI injects into every plugin that declares the capability (here
    # with the tag-name keys; the go-field-case variant turns them into containerd's).
    caps = dict(conf.get("capabilities", {}), bandwidth=True, dns=True)
    caps["io.kubernetes.cri.pod-annotations"] = True
    rc: dict = {
        "bandwidth": {"ingressRate": 1000000, "ingressBurst": 4294967295,
                      "egressRate": 1000000, "egressBurst": 4294967295},
        "dns": {"servers": ["192.0.2.53"], "searches": ["example.test"], "options": ["ndots:2"]},
        # Annotation names are data: the check leaves these keys alone (recase.MAP_VALUED_KEYS).
        "io.kubernetes.cri.pod-annotations": {"io.kubernetes.pod/uid": "u1", "Example.com/Mixed-Case": "v"},
    }
    conf["dns"] = {"nameservers": ["192.0.2.53"], "domain": "example.test", "search": ["example.test"],
                   "options": ["ndots:2"]}
    conf["args"] = {"cni": {"ips": [f"{net}.15"]}}
    ipam = conf.get("ipam")
    if isinstance(ipam, dict) and ipam.get("type") == "host-local":
        resolv = os.path.join(world.tmp, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver 192.0.2.1\nsearch example.test\noptions ndots:3\n")
        # host-local prepends runtime ranges to ipam.ranges and leases one address per
        # range set: IPv4 from runtimeConfig.ipRanges, IPv6 from ipam.ranges.
        conf["ipam"] = dict(ipam, resolvConf=resolv, ranges=[[{"subnet": world.sandbox.subnet6}]],
                            routes=[{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": f"{net}.9"}])
        # args.cni.ips picks .15 inside the runtime range; its gateway (.9, not the default
        # .1) shows in the result and, for bridge, on the bridge.
        rc["ipRanges"] = [[{"subnet": world.sandbox.subnet4, "rangeStart": f"{net}.10",
                            "rangeEnd": f"{net}.20", "gateway": f"{net}.9"}]]
        caps["ipRanges"] = True
    if plugin.type == "bridge":
        conf.update(ipMasq=True, mtu=1400, hairpinMode=True)
    if plugin.type in ("bridge", "macvlan", "tuning"):  # the types with the ``mac`` capability
        rc["mac"] = _MAC
        caps["mac"] = True
    if plugin.kind == "chained":
        rc["portMappings"] = [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp", "hostIP": ""},
                              {"hostPort": 18053, "containerPort": 53, "protocol": "udp", "hostIP": ""}]
        caps["portMappings"] = True
        conf["prevResult"] = prev_result(world, version, full=True)
    conf["capabilities"] = caps
    conf["runtimeConfig"] = rc
    return conf


def _fresh(world: World) -> None:
    """New, empty host and container namespaces under the world's names, and an empty
    IPAM data dir: every run starts from the same state (allocation order included)."""
    world.renew_namespaces()
    for entry in os.listdir(world.sandbox.data_dir):
        p = os.path.join(world.sandbox.data_dir, entry)
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def _leaks(world: World, plugin, before: dict) -> list[str]:
    """What DEL left behind (the fixture's leak check, per run)."""
    return leak.settle(world, before, plugin.profile.residue_links(world.sandbox))


@dataclass
class Attempt:
    """ADD then DEL of one config in a fresh world."""

    add: Outcome
    state: dict[str, list[str]]
    delete: Outcome
    leaks: list[str]


def _attempt(plugin, world: World, conf: dict) -> Attempt:
    _fresh(world)
    before = world.snapshot()
    add = run(world, plugin, "ADD", conf)
    state = attachment_state.capture(world)
    # DEL with the same config (a chained plugin's keeps its prevResult, as libcni sends it).
    delete = run(world, plugin, "DEL", conf)
    return Attempt(add, state, delete, _leaks(world, plugin, before))


def _verdict(out: Outcome) -> str:
    if out.ok:
        return "ok"
    return f"failed (exit {out.rc}, code {out.code}: {_msg(out)})"


def _msg(out: Outcome) -> str:
    if isinstance(out.doc, dict):
        return f"{out.doc.get('msg', '')} {out.doc.get('details', '')}".strip()[:300]
    return (out.stdout or out.stderr).decode(errors="replace").strip()[:300]


def _short_diff(a: list[str], b: list[str]) -> str:
    lines = [l[:220] for l in difflib.unified_diff(a, b, n=0, lineterm="")
             if not l.startswith(("---", "+++", "@@"))]
    more = len(lines) - _DIFF_LINES
    tail = f"\n      ... {more} more lines" if more > 0 else ""
    return "\n".join("      " + l for l in lines[:_DIFF_LINES]) + tail


def _differences(orig: Attempt, alt: Attempt, conf: dict) -> list[str]:
    """What differs between the original run and a re-cased one, as message lines."""
    out = []
    if orig.add.ok != alt.add.ok or (not orig.add.ok and orig.add.code != alt.add.code):
        out.append(f"  ADD: original {_verdict(orig.add)}; re-cased {_verdict(alt.add)}")
    elif orig.add.ok:
        keep = attachment_state.macs_in(json.dumps(conf))
        a, b = attachment_state.compare_lines((orig.add.doc, orig.state), (alt.add.doc, alt.state), keep)
        if a != b:
            out.append("  ADD: both ok, but the result or the kernel state differs "
                       "(- original, + re-cased):\n" + _short_diff(a, b))
    if not alt.delete.ok or alt.delete.stdout.strip():
        out.append(f"  DEL: original {_verdict(orig.delete)}; re-cased {_verdict(alt.delete)}"
                   + (f", printed {alt.delete.stdout[:200]!r}" if alt.delete.ok else ""))
    if alt.leaks:
        out.append("  DEL with the re-cased config left behind: " + " | ".join(alt.leaks)[:1500])
    return out


def _localize(conf: dict, variant: str, breaks: Callable[[dict], bool]) -> list[tuple[str, str]]:
    """The parts of the config that already break the plugin when re-cased alone, as
    ``(where, description)``: the top-level key names, then the keys inside each top-level
    object and, for one that breaks, inside each of its own objects (e.g.
    ``runtimeConfig.portMappings``: exactly containerd's casing)."""
    found: list[tuple[str, str]] = []
    probes = 0

    def probe(within: tuple[str, ...]) -> bool:
        nonlocal probes
        probes += 1
        return breaks(recase(conf, variant, within))

    def entry(within: tuple[str, ...]) -> tuple[str, str]:
        return (".".join(within) or "top-level key names", describe(conf, variant, within))

    if probe(()):
        found.append(entry(()))
    for top in scopes(conf):
        if probes >= _MAX_PROBES:
            found.append(("...", "(stopped looking)"))
            break
        if probe(top):
            inner = [s for s in scopes(conf, top) if probes < _MAX_PROBES and probe(s)]
            found += [entry(s) for s in inner] or [entry(top)]
    return found


def _localize_once(earlier: list, conf: dict, variant: str, breaks: Callable[[dict], bool]) -> list[tuple[str, str]]:
    """``_localize`` for the first variant that breaks the plugin only: each probe is a whole
    ADD and DEL (or CHECK), and the parts that break under one casing are, in practice, the
    ones that break under the other; so a broken plugin costs the harness about twice a
    sound one's run, not five times."""
    if earlier:
        first = earlier[0].variant
        return [(f"as for {first}", f"not localised again (see {first}; each probe is a whole ADD and DEL)")]
    return _localize(conf, variant, breaks)


@dataclass
class Problem:
    """How one variant broke: where (localised) and what differed."""

    variant: str
    where: list[tuple[str, str]]
    details: list[str]


def _report(plugin, verb: str, conf: dict, problems: list[Problem]) -> str:
    """The failure message: a headline (also the last line, which the HTML report shows),
    then per variant where it breaks, the outcomes and diff, the re-cased config."""
    breaks = [f"{p.variant} breaks at " + (", ".join(w for w, _ in p.where) or "no single part alone")
              for p in problems]
    head = (f"{plugin.type} {verb} changes when config keys are re-cased (Go plugins match keys "
            f"case-insensitively): " + "; ".join(breaks))
    lines = [head]
    for p in problems:
        where = "; ".join(d for _, d in p.where) or "no part alone, only all keys re-cased together"
        lines.append(f"[{p.variant}] re-cased alone, each of these already breaks it: {where}")
        lines += p.details
        text = json.dumps(recase(conf, p.variant), separators=(",", ":"))
        lines.append(f"  re-cased config: {text[:1200]}")
    lines.append("summary: " + head)
    return "\n".join(lines)


@check("K-recased-keys", "K Configuration", "D", _REF)
def test_recased_keys(plugin, world):
    """ADD then DEL with every config key re-cased (Go field case, upper case) gives the
    same outcome as the original: same success or error code, the same result and kernel
    state (normalised, see conformance.attachment_state), and nothing left after DEL."""
    need_profile(plugin)
    v = newest(plugin, world, "1.1.0")
    conf = _base_conf(plugin, world, v)
    orig = _attempt(plugin, world, conf)
    assert orig.add.ok, f"ADD with the original (not re-cased) config failed, nothing to compare: {orig.add}"
    assert orig.delete.ok and not orig.leaks, (
        f"DEL with the original (not re-cased) config: {_verdict(orig.delete)}; leaks: {orig.leaks}")

    def breaks(c: dict) -> bool:
        return bool(_differences(orig, _attempt(plugin, world, c), conf))

    problems = []
    for variant in VARIANTS:
        found = _differences(orig, _attempt(plugin, world, recase(conf, variant)), conf)
        if found:
            problems.append(Problem(variant, _localize_once(problems, conf, variant, breaks), found))
    if problems:
        pytest.fail(_report(plugin, "ADD/DEL", conf, problems), pytrace=False)


@check("K-recased-keys-check", "K Configuration", "D", _REF)
def test_recased_keys_on_check(plugin, world):
    """After an ADD, CHECK with the config and prevResult re-cased succeeds exactly when
    CHECK with the original does (and fails with the same code when that fails, e.g. the
    reference portmap's CHECK right after ADD, deviation G29-chained-check)."""
    need_profile(plugin)
    v = newest(plugin, world, "1.1.0")
    if VERSIONS.index(v) < VERSIONS.index("0.4.0"):
        pytest.skip(f"not applicable: CHECK needs a 0.4.0+ config and {plugin.type} supports at most {v}")
    conf = _base_conf(plugin, world, v)
    res = add_ok(world, plugin, conf)
    try:
        chk = with_prev(conf, res)  # libcni sends the ADD result (for a chained plugin: its output)
        base = run(world, plugin, "CHECK", chk, cid=CID)

        def differs(c: dict) -> Outcome | None:
            alt = run(world, plugin, "CHECK", c, cid=CID)
            return alt if alt.ok != base.ok or (not base.ok and alt.code != base.code) else None

        problems = []
        for variant in VARIANTS:
            alt = differs(recase(chk, variant))
            if alt is not None:
                note = "" if base.ok else " (the original CHECK fails too: only the outcome is compared)"
                where = _localize_once(problems, chk, variant, lambda c: differs(c) is not None)
                problems.append(Problem(variant, where, [
                    f"  CHECK: original {_verdict(base)}; re-cased {_verdict(alt)}{note}"]))
        if problems:
            pytest.fail(_report(plugin, "CHECK", chk, problems), pytrace=False)
    finally:
        del_ok(world, plugin, conf)
