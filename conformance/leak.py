"""The leak checker: what a plugin may not leave behind once its attachments are deleted.

A snapshot covers the world's host namespace (links, addresses, routes, the nftables
ruleset, iptables and ip6tables rules), its container namespace (links, addresses), the
machine's own links, the IPAM data dir (lease files; ``lock`` and ``last_reserved_ip.*``
are bookkeeping, not leases) and libcni's cache dir. ``diff`` reports what appeared; the
bridge a bridge plugin keeps by design (as the reference does) and its addresses and
connected routes are allowed.

Named namespaces are not compared: plugins run under ``ip netns exec``, whose private
(slave) mount namespace keeps any netns a plugin bind-mounts from showing up outside, so
a difference there could only come from other processes on the machine. The world's own
namespaces are deleted with it, whatever they hold.
"""

from __future__ import annotations

import json
import os
import shutil

if False:  # type checking only
    from conformance.world import World


def _ipj(ns: str | None, *argv: str) -> list:
    from conformance.world import sh

    out = sh("ip", "-j", *argv, ns=ns, check=False)
    try:
        return json.loads(out) if out.strip() else []
    except ValueError:
        return []


def _links(ns: str | None) -> set[str]:
    return {l["ifname"] for l in _ipj(ns, "link", "show")}


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


def _firewall(ns: str) -> dict[str, str]:
    from conformance.world import sh

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


def snapshot(w: "World") -> dict:
    """Everything the leak checker compares."""
    return {
        "host links": _links(w.host),
        "host addresses": _addrs(w.host),
        "host routes": _routes(w.host),
        "host firewall": _firewall(w.host),
        "container links": _links(w.ctr),
        "container addresses": _addrs(w.ctr),
        "machine links": _links(None),
        "IPAM leases": _files(w.sandbox.data_dir, _not_lease),
        "libcni cache": _files(w.cache_dir),
    }


def markers(w: "World") -> list[str]:
    """Text that appears in a firewall rule only if it is about one of the world's
    attachments: its subnets (container addresses) and the host ports checks map."""
    a4 = w.sandbox.subnet4.rsplit(".", 1)[0] + "."
    a6 = w.sandbox.subnet6.split("::")[0] + ":"
    return [a4, a6, "dport 18080", "dport 18053"]


def diff(before: dict, after: dict, allowed_links: set[str] = frozenset(),
         firewall_markers: list[str] | None = None) -> list[str]:
    """Human-readable leaks: what is in ``after`` and not in ``before``.

    Firewall: with ``firewall_markers``, only new rules mentioning one of them count
    (shared scaffolding such as an empty CNI-HOSTPORT-DNAT chain that every attachment
    uses may stay, as a bridge may); without, any change counts."""
    leaks = []
    for k, b in before.items():
        a = after[k]
        if isinstance(a, set):
            new = a - b
            if k == "host links":
                new -= allowed_links
            if k == "host addresses":  # "IFNAME ADDR/PLEN"
                new = {x for x in new if x.split()[0] not in allowed_links}
            if k == "host routes":  # "DST dev=IFNAME via=... table=..."
                new = {x for x in new if x.split()[1].removeprefix("dev=") not in allowed_links}
            if new:
                leaks.append(f"{k}: {', '.join(sorted(new))}")
        elif isinstance(a, dict):
            for sub, text in a.items():
                if text != b.get(sub, ""):
                    extra = set(text.splitlines()) - set(b.get(sub, "").splitlines())
                    if firewall_markers is not None:
                        extra = {line for line in extra if any(m in line for m in firewall_markers)}
                        if not extra:
                            continue
                    leaks.append(f"{k} ({sub}) changed: {'; '.join(sorted(extra))[:1500] or 'rules removed'}")
    return leaks
