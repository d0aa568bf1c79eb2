"""The leak checker: what a plugin may not leave behind once its attachments are deleted.

A snapshot covers the world's host namespace (links, addresses, routes, policy rules, the
nftables ruleset, iptables and ip6tables rules, qdiscs other than the kernel's defaults),
its container namespace (links, their settings: MTU, MAC, promiscuity..., addresses,
routes, policy rules), the processes running in either namespace, the world's links in the
machine's own namespace (named with its tag, or with a peer in one of its namespaces),
the IPAM data dir (lease files; ``lock`` and ``last_reserved_ip.*`` are bookkeeping, not
leases), libcni's cache dir, and the machine's state directories (``/run``,
``/var/lib/cni``: files whose path names the world's tag, as a network name does, e.g.
dnsname's ``/run/containers/cni/dnsname/<network>``). ``diff`` reports what appeared; the
bridge a bridge plugin keeps by design (as the reference does) and its addresses and
connected routes are allowed. A new firewall rule counts when it is about one of the
world's attachments: it names its addresses or mapped ports (``markers``), or a link that
the host namespace did not have before (a pod's veth, gone with the pod).

Named namespaces are not compared: plugins run under ``ip netns exec``, whose private
(slave) mount namespace keeps any netns a plugin bind-mounts from showing up outside, so
a difference there could only come from other processes on the machine. The world's own
namespaces are deleted with it, whatever they hold.

``settle`` is the verdict after a check: it waits only for what the kernel tears down
asynchronously (a deleted namespace goes in a workqueue, and with it the peers of its
veths, in the world's namespaces, and their addresses and routes) and stops as soon as
the state is clean, or leaked but stable with nothing left to tear down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable

from conformance import runs
from conformance.proc import sh

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conformance.world import World


def _ipj(ns: str | None, *argv: str) -> list:
    out = sh("ip", "-j", *argv, ns=ns, check=False)
    try:
        return json.loads(out) if out.strip() else []
    except ValueError:
        return []


def _links(ns: str | None) -> set[str]:
    return {l["ifname"] for l in _ipj(ns, "link", "show")}


def _machine_links(w: "World") -> set[str]:
    """The links in the machine's own namespace that are the world's: named with its tag,
    or with their peer (a veth's other end, a macvlan's parent) in one of its namespaces.
    Any other link appearing there meanwhile is another program's (tests running alongside
    create and delete links there all the time), not the plugin's."""
    ids = {e.get("nsid") for e in _ipj(None, "netns", "list-id") if e.get("name") in w.namespaces}
    return {l["ifname"] for l in _ipj(None, "link", "show")
            if w.tag in l["ifname"] or ("link_netnsid" in l and l["link_netnsid"] in ids)}


def _addrs(ns: str | None) -> set[str]:
    out = set()
    for l in _ipj(ns, "addr", "show"):
        if l["ifname"] == "lo":
            continue  # the kernel adds 127.0.0.1/8 the first time lo comes up
        for a in l.get("addr_info", []):
            if a.get("scope") == "link" and a.get("family") == "inet6":
                continue  # the kernel adds these to every link by itself
            out.add(f"{l['ifname']} {a['local']}/{a['prefixlen']}")
    return out


def _routes(ns: str | None) -> set[str]:
    out = set()
    for fam in ("-4", "-6"):
        for r in _ipj(ns, fam, "route", "show", "table", "all"):
            if r.get("type") in ("local", "broadcast", "multicast") or r.get("dst", "").startswith("fe80"):
                continue
            out.add(f"{r.get('dst')} dev={r.get('dev')} via={r.get('gateway')} table={r.get('table', 'main')}")
    return out


def _rules(ns: str) -> set[str]:
    """Policy routing rules other than the kernel's three per family (local, main, default)."""
    out = set()
    for fam in ("-4", "-6"):
        for r in _ipj(ns, fam, "rule", "show"):
            if r.get("priority") in (0, 32766, 32767) and r.get("src") == "all" and len(r) <= 3:
                continue
            out.add(" ".join(f"{k}={v}" for k, v in sorted(r.items())))
    return out


def _processes(namespaces: dict[str, str]) -> set[str]:
    """The processes running in the named namespaces (label -> netns name), counted by
    command name, as "LABEL: COMM #N": no PIDs, so a process the profile started again
    after renewing the namespaces is the same entry, and a second one is a new one."""
    counts: Counter[tuple[str, str]] = Counter()
    for label, name in namespaces.items():
        for pid, _ in runs.processes_in(os.path.join(runs.NETNS_DIR, name)):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    counts[(label, f.read().strip())] += 1
            except OSError:
                continue  # gone meanwhile
    return {f"{label}: {comm} #{i}" for (label, comm), n in counts.items() for i in range(1, n + 1)}


# Where plugins keep state outside the dirs a config names (dnsname: /run/containers/cni).
STATE_ROOTS = ("/run", "/var/lib/cni")


def _state_files(tag: str) -> set[str]:
    """Files (and sockets) under STATE_ROOTS whose path holds ``tag``: only this world's,
    never another run's or another program's."""
    out = set()
    for top in STATE_ROOTS:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "netns"]  # namespace mounts, not state
            for f in files:
                p = os.path.join(root, f)
                if tag in p:
                    out.add(p)
            out.update(os.path.join(root, d) + "/" for d in dirs if tag in d and tag not in root)
    return out


# The qdiscs the kernel attaches by itself to a new link: not made by a plugin.
_DEFAULT_QDISCS = frozenset({"noqueue", "pfifo_fast", "fq_codel", "mq", "pfifo", "noop"})


def _qdiscs(ns: str) -> set[str]:
    """Qdiscs a plugin may have added (bandwidth's TBF and ingress), as "IFNAME KIND HANDLE"."""
    out = sh("tc", "-j", "qdisc", "show", ns=ns, check=False)
    try:
        qdiscs = json.loads(out) if out.strip() else []
    except ValueError:
        return set()
    return {f"{q.get('dev')} {q.get('kind')} {q.get('handle')}" for q in qdiscs
            if q.get("kind") not in _DEFAULT_QDISCS}


def _link_settings(ns: str) -> set[str]:
    """What a plugin may change on a link it did not create (tuning): "IFNAME mtu=... ..."."""
    return {f"{l['ifname']} mtu={l.get('mtu')} mac={l.get('address')} promisc={l.get('promiscuity')} "
            f"allmulti={l.get('allmulti', 'ALLMULTI' in l.get('flags', []))} txqlen={l.get('txqlen')}"
            for l in _ipj(ns, "-d", "link", "show")}


def _firewall(ns: str) -> dict[str, str]:
    out = {}
    if shutil.which("nft"):
        out["nftables"] = sh("nft", "list", "ruleset", ns=ns, check=False)
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            text = sh(tool, ns=ns, check=False)
            # Drop comments (timestamps) and packet counters.
            lines = [l.split(" [")[0] if l.startswith(":") else l
                     for l in text.splitlines() if l and not l.startswith("#")]
            out[tool] = "\n".join(lines)
    return out


def _files(d: str, ignore=lambda name: False) -> set[str]:
    out = set()
    for root, _, files in os.walk(d):
        for f in files:
            if not ignore(f):
                out.add(os.path.relpath(os.path.join(root, f), d))
    return out


def _not_lease(name: str) -> bool:
    return name == "lock" or name.startswith("last_reserved_ip")


def snapshot(w: "World", keys: Iterable[str] | None = None) -> dict:
    """Everything the leak checker compares (only ``keys`` of it, if given)."""
    take: dict[str, Callable[[], object]] = {
        "host links": lambda: _links(w.host),
        "host addresses": lambda: _addrs(w.host),
        "host routes": lambda: _routes(w.host),
        "host rules": lambda: _rules(w.host),
        "host firewall": lambda: _firewall(w.host),
        "host qdiscs": lambda: _qdiscs(w.host),
        "container links": lambda: _links(w.ctr),
        "container link settings": lambda: _link_settings(w.ctr),
        "container addresses": lambda: _addrs(w.ctr),
        "container routes": lambda: _routes(w.ctr),
        "container rules": lambda: _rules(w.ctr),
        "processes": lambda: _processes({"host": w.host, "container": w.ctr}),
        "machine links": lambda: _machine_links(w),
        "IPAM leases": lambda: _files(w.sandbox.data_dir, _not_lease),
        "libcni cache": lambda: _files(w.cache_dir),
        "state files": lambda: _state_files(w.tag),
    }
    return {k: f() for k, f in take.items() if keys is None or k in keys}


def markers(w: "World") -> list[str]:
    """Text that appears in a firewall rule only if it is about one of the world's
    attachments: its subnets (container addresses), the host ports checks map, and the
    host end of a chained world's pod (its prevResult's first interface: a rule naming it
    is about that pod, although the link outlives the pod's DEL in the world)."""
    a4 = w.sandbox.subnet4.rsplit(".", 1)[0] + "."
    a6 = w.sandbox.subnet6.split("::")[0] + ":"
    return [a4, a6, "dport 18080", "dport 18053"] + ([w.sandbox.pod_veth] if w.sandbox.pod_veth else [])


def diff(before: dict, after: dict, allowed_links: set[str] = frozenset(),
         firewall_markers: list[str] | None = None) -> list[str]:
    """Human-readable leaks: what is in ``after`` and not in ``before`` (over the keys
    ``after`` has: it may be a partial snapshot).

    Firewall: with ``firewall_markers``, only new rules mentioning one of them, or naming a
    link the host namespace did not have before (nor an allowed one), count (shared
    scaffolding such as an empty CNI-HOSTPORT-DNAT chain that every attachment uses may
    stay, as a bridge may); without, any change counts."""
    leaks = []
    for k, a in after.items():
        b = before[k]
        if isinstance(a, set):
            new = a - b
            if k == "host links":
                new -= allowed_links
            if k == "host addresses":  # "IFNAME ADDR/PLEN"
                new = {x for x in new if x.split()[0] not in allowed_links}
            if k == "host routes":  # "DST dev=IFNAME via=... table=..."
                new = {x for x in new if x.split()[1].removeprefix("dev=") not in allowed_links}
            if k == "host qdiscs":  # "IFNAME KIND HANDLE": those of a leaked link are reported with it
                new = {x for x in new if x.split()[0] in {y.split()[0] for y in b} | before.get("host links", set())}
            if k == "container link settings":  # "IFNAME mtu=...": only links that were there before
                new = {x for x in new if x.split()[0] in before.get("container links", set())}
            if new:
                leaks.append(f"{k}: {', '.join(sorted(new))}")
        elif isinstance(a, dict):
            for sub, text in a.items():
                if text != b.get(sub, ""):
                    extra = set(text.splitlines()) - set(b.get(sub, "").splitlines())
                    if firewall_markers is not None:
                        known = before.get("host links", set()) | allowed_links
                        extra = {line for line in extra if any(m in line for m in firewall_markers)
                                 or _names_link_not_in(line, known)}
                        if not extra:
                            continue
                    leaks.append(f"{k} ({sub}) changed: {'; '.join(sorted(extra))[:1500] or 'rules removed'}")
    return leaks


# A rule's interface: iptables-save's "-i NAME"/"-o NAME"; nft's 'iifname "NAME"' (nft
# always quotes a literal name; sets, maps and concatenations, '@set', 'iifname . oifname',
# are not names).
_RULE_LINK = re.compile(r'(?:^|\s)-[io]\s+([^\s!]+)|\b[io]ifname\s+(?:(?:!=|==)\s+)?"([^"]+)"')


def _names_link_not_in(line: str, links: set[str]) -> bool:
    """Whether firewall rule ``line`` names a link (not a wildcard) outside ``links``."""
    names = [a or b for a, b in _RULE_LINK.findall(line)]
    return any(not name.endswith(("+", "*")) and name not in links for name in names)


def _dying_peers(ns: str) -> set[str]:
    """Links in ``ns`` whose peer (a veth's other end) is in a namespace that no longer
    has a name: one being deleted, which takes the link with it, asynchronously."""
    named = {e.get("nsid") for e in _ipj(ns, "netns", "list-id") if e.get("name")}
    # A peer in another namespace shows as link_index (+ link_netnsid, which the kernel
    # leaves out once that namespace is dying); a peer in the same one as "link".
    return {l["ifname"] for l in _ipj(ns, "link", "show") if "link_index" in l and l.get("link_netnsid") not in named}


def settle(w: "World", before: dict, allowed_links: set[str] = frozenset(), *, timeout: float = 5.0) -> list[str]:
    """The leaks of world ``w`` against ``before`` (see ``diff``), once the state settled.

    Clean: returns at the first snapshot. Leaked: looks again, shortly after, at what
    leaked; when it leaks the same and none of the leaked links is going away with a
    deleted namespace, that is the verdict, at once. Only while the kernel still tears
    something down does it keep looking, up to ``timeout`` seconds."""
    marks = markers(w)
    first = snapshot(w)
    leaks = diff(before, first, allowed_links, marks)
    # Only the parts that leaked are looked at again: the plugin has exited, so nothing
    # clean can become dirty; what leaked can only go away.
    watch = [k for k in first if diff(before, {k: first[k]}, allowed_links, marks)]
    deadline = time.monotonic() + timeout
    pause = 0.02
    while leaks and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.4)
        again = diff(before, snapshot(w, watch), allowed_links, marks)
        if not again:
            return []
        if again == leaks and not _pending(w, before, watch):
            return again
        leaks = again
    return leaks


def _pending(w: "World", before: dict, watch: list[str]) -> bool:
    """Whether a leaked link of the world's namespaces is still to be torn down by the
    kernel (its peer's namespace is being deleted)."""
    for key, ns in (("host links", w.host), ("container links", w.ctr)):
        if key in watch and _dying_peers(ns) - before[key]:
            return True
    return False
