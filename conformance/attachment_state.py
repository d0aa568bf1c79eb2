"""What an ADD leaves behind, as lines that two runs in identical fresh worlds can compare.

``capture(world)`` takes what the leak checker sees (``world.snapshot()``) and adds detail:
each link's kind, MTU, master, admin state, promiscuity, hairpin and MAC; every address
(also on ``lo``) and unicast route of the container namespace; the nftables ruleset and
iptables/ip6tables rules of both the host and the container namespace; IPv4 forwarding in
the host namespace; the IPAM data dir's files with their contents.

``compare_lines(...)`` renders a result and a state as lines with what legitimately differs
between two runs normalised away:

- MAC addresses the kernel or the plugin picked at random (a veth's, a bridge's, which
  follows its lowest port): every MAC not given in the config becomes ``<mac>``; one the
  config asked for (the ``mac`` capability) is compared;
- names a plugin makes up per run (the reference bridge's host veth ``veth`` + 8 random hex
  digits): a host or container link name present in one run but not the other is paired,
  in link order, with the other run's and both become ``<per-run name N>``; a name both
  runs share is compared;
- kernel interface indexes are not captured at all (a namespace's counter, and the peer of
  a veth created across namespaces takes whatever index is free); a result's
  ``ips[].interface`` *is* compared, it indexes the result's own interface list;
- nftables counters (``counter packets N bytes M``) and iptables-save comments/chain
  counters (timestamps, packet counts: the kernel sends IPv6 neighbour discovery and
  MLD on links coming up).

Not captured: the machine's own links (in the leak snapshot, but other processes on the
machine change them; the leak check after DEL still watches them), IPv6 link-local
addresses (derived from random MACs), local/broadcast routes (they mirror the addresses,
and an IPv6 one appears only once DAD has finished).
"""

from __future__ import annotations

import json
import os
import re
import shutil

from conformance.proc import sh
from conformance.world import World

# Every command must succeed (sh raises otherwise): a capture that silently came back empty
# would show up as a difference between two runs that is not the plugin's.

_MAC = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def _ipj(ns: str, *argv: str) -> list:
    out = sh("ip", "-j", *argv, ns=ns)
    return json.loads(out) if out.strip() else []


def _links(ns: str) -> list[str]:
    """One line per link, in link (creation) order."""
    out = []
    for l in _ipj(ns, "-d", "link", "show"):
        info = l.get("linkinfo", {})
        slave = info.get("info_slave_data", {})
        out.append(f"{l['ifname']} kind={info.get('info_kind', l.get('link_type'))} mtu={l.get('mtu')} "
                   f"master={l.get('master')} up={'UP' in l.get('flags', [])} "
                   f"promisc={l.get('promiscuity')} hairpin={slave.get('hairpin')} mac={l.get('address')}")
    return out


def _addrs(ns: str) -> list[str]:
    out = []
    for l in _ipj(ns, "addr", "show"):
        for a in l.get("addr_info", []):
            if a.get("scope") == "link" and a.get("family") == "inet6":
                continue  # the kernel adds these to every link by itself, from a random MAC
            out.append(f"{l['ifname']} {a['local']}/{a['prefixlen']} scope={a.get('scope')}")
    return sorted(out)


def _routes(ns: str) -> list[str]:
    out = []
    for fam in ("-4", "-6"):
        for r in _ipj(ns, fam, "route", "show", "table", "all"):
            # Local/broadcast routes: see the module doc (comparing them would race DAD).
            if r.get("dst", "").startswith("fe80") or r.get("type") in ("local", "broadcast", "multicast"):
                continue
            out.append(f"{r.get('type', 'unicast')} {r.get('dst')} dev={r.get('dev')} via={r.get('gateway')} "
                       f"table={r.get('table', 'main')} metric={r.get('metric')} scope={r.get('scope')}")
    return sorted(out)


def _firewall(ns: str) -> dict[str, list[str]]:
    out = {}
    if shutil.which("nft"):
        text = sh("nft", "list", "ruleset", ns=ns)
        out["nftables"] = [_NFT_COUNTER.sub("counter", l.rstrip()) for l in text.splitlines() if l.strip()]
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            text = sh(tool, ns=ns)
            out[tool] = [l.split(" [")[0] if l.startswith(":") else l
                         for l in text.splitlines() if l and not l.startswith("#")]
    return out


def _files(d: str) -> list[str]:
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            try:
                with open(p, "rb") as fh:
                    body = fh.read(4096).decode(errors="replace")
            except OSError:
                body = "<unreadable>"
            out.append(f"{os.path.relpath(p, d)}: {body!r}")
    return sorted(out)


def capture(world: World) -> dict[str, list[str]]:
    """The world's state now, section -> lines (order kept where it means something)."""
    state: dict[str, list[str]] = {}
    for k, v in world.snapshot().items():
        if k == "machine links":
            continue  # other processes on the machine change these (see module doc)
        if isinstance(v, set):
            state[f"leak snapshot: {k}"] = sorted(v)
    state["host links"] = _links(world.host)
    state["container links"] = _links(world.ctr)
    state["container addresses"] = _addrs(world.ctr)
    state["container routes"] = _routes(world.ctr)
    for where, ns in (("host", world.host), ("container", world.ctr)):
        for tool, lines in _firewall(ns).items():
            state[f"{where} {tool}"] = lines
    state["host ip_forward"] = [sh("sysctl", "-n", "net.ipv4.ip_forward", ns=world.host).strip()]
    state["IPAM data dir"] = _files(world.sandbox.data_dir)
    return state


def macs_in(text: str) -> set[str]:
    """The MAC addresses written in ``text`` (e.g. a config: those are compared, not normalised)."""
    return set(_MAC.findall(text))


def link_names(state: dict[str, list[str]]) -> list[str]:
    """Host then container link names of a captured state, in link order."""
    return [l.split(" ", 1)[0] for k in ("host links", "container links") for l in state.get(k, [])]


def render(result: object, state: dict[str, list[str]] | None) -> list[str]:
    """A result and a state as ``section: line`` lines (results as sorted, indented JSON)."""
    lines = [f"result: {l}" for l in json.dumps(result, indent=1, sort_keys=True).splitlines()]
    for k, v in (state or {}).items():
        lines += [f"{k}: {l}" for l in v] or [f"{k}: (nothing)"]
    return lines


def compare_lines(a: tuple[object, dict | None], b: tuple[object, dict | None],
                  keep_macs: set[str]) -> tuple[list[str], list[str]]:
    """Two runs' ``(result, state)`` rendered and normalised together (see module doc)."""
    names_a = link_names(a[1] or {})
    names_b = link_names(b[1] or {})
    only_a = [n for n in names_a if n not in names_b]
    only_b = [n for n in names_b if n not in names_a]
    rename_a: dict[str, str] = {}
    rename_b: dict[str, str] = {}
    if len(only_a) == len(only_b):
        for i, (x, y) in enumerate(zip(only_a, only_b)):
            rename_a[x] = rename_b[y] = f"<per-run name {i}>"
    keep = {m.lower() for m in keep_macs}

    def norm(lines: list[str], rename: dict[str, str]) -> list[str]:
        out = []
        for l in lines:
            for old, new in rename.items():
                l = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", new, l)
            l = _MAC.sub(lambda m: m.group(0) if m.group(0).lower() in keep else "<mac>", l)
            out.append(l)
        return out

    return norm(render(*a), rename_a), norm(render(*b), rename_b)
