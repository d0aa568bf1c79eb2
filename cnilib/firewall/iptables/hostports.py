"""Host ports with iptables: one ``iptables-restore --noflush`` per family per change.

Layout in the ``nat`` table of each family::

    -A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "cnipy host ports" -j CNIPY-HOSTPORTS
    -A OUTPUT     -m addrtype --dst-type LOCAL -m comment --comment "cnipy host ports" -j CNIPY-HOSTPORTS
    -I POSTROUTING 1 -m comment --comment "cnipy host ports" -j CNIPY-HP-MASQ
    -A CNIPY-HP-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE          # one per mark bit in use
    -A CNIPY-HP-SETMARK-13 -j MARK --set-xmark 0x2000/0x2000
    # one entry per mapping, specific addresses first; the key a conflict is judged by;
    # conditionsV4/V6 here (as in the reference's entry rules), so they apply to this
    # owner only and may use -s without clashing with the masquerade rules' own -s
    -A CNIPY-HOSTPORTS [-d H/32] -p tcp -m tcp --dport 8080 <conditions> -m comment --comment "<tag>" -j CNIPH-<owner hash>
    # the owner's chain: mark for masquerading, then DNAT
    -A CNIPH-<owner> -s SUBNET [-d H/32] -p tcp -m tcp --dport 8080 -m comment --comment "<tag>" -j CNIPY-HP-SETMARK-13
    -A CNIPH-<owner> [-d H/32] -p tcp -m tcp --dport 8080 -m comment --comment "<tag>" -j DNAT --to-destination C:80

With ``externalSetMarkChain`` the mark rules jump there and no SETMARK/MASQ chains are
made. A packet still walks one entry per mapping (iptables has no maps); what stays
constant is the number of tool runs per change: ``iptables -S`` of the shared chains and
one restore per family (the reference runs iptables once per rule, each run reloading the
whole table).
"""

from __future__ import annotations

from cnilib.errors import INVALID_CONFIG, NOT_FOUND, CNIError
from cnilib.firewall.base import HostPorts, Lock
from cnilib.firewall.hostport import HostPortSpec, PortMapping, conflict_error
from cnilib.firewall.iptables.listing import Rule, Table
from cnilib.firewall.iptables.runner import LOCK_NAME, Iptables, nat_batch
from cnilib.ip import parse_cidr
from cnilib.owner import Owner, gc_doomed, kept_tags, network_part

ENTRY = "CNIPY-HOSTPORTS"
MASQ = "CNIPY-HP-MASQ"
SETMARK_PREFIX = "CNIPY-HP-SETMARK-"
SKELETON_COMMENT = "cnipy host ports"


def _host(ip: object, version: int) -> str:
    return f"{ip}/{32 if version == 4 else 128}"


def _match(m: PortMapping) -> list[str]:
    out = ["-d", _host(m.host_ip, m.version)] if m.host_ip else []
    return out + ["-p", m.proto, "-m", m.proto, "--dport", str(m.host_port)]


def _quote(token: str) -> str:
    return f'"{token}"' if (" " in token or "\t" in token or not token) else token


# Matches the entry rule makes itself (a second one is an iptables error, or would make
# the entry's key unreadable).
_OWN_FLAGS = ("-d", "--destination", "--dst", "-p", "--protocol", "--dport", "--destination-port")


def check_conditions(spec: HostPortSpec) -> None:
    """Code 7 for a condition that could break the restore line or clash with the entry's
    own address, protocol and port matches."""
    for v, conds in spec.conditions.items():
        for c in conds:
            if any(ch in c for ch in ('"', "\n", "\r", "\\")):
                raise CNIError(INVALID_CONFIG, f"invalid conditionsV{v} entry {c!r}: quotes, backslashes and "
                                               "line breaks are not allowed in an iptables match")
            if any(tok in _OWN_FLAGS for tok in c.split()):
                raise CNIError(INVALID_CONFIG, f"invalid conditionsV{v} entry {c!r}: the mapping itself matches "
                                               "the destination address, protocol and port (use hostIP)")


def _src(source: str, version: int) -> list[str]:
    net = parse_cidr(source if "/" in source else _host(source, version))
    return [] if net.prefixlen == 0 else ["-s", str(net.masked())]


def mark_target(spec: HostPortSpec) -> str:
    return spec.set_mark_chain or f"{SETMARK_PREFIX}{spec.mark_bit}"


def owner_lines(owner: Owner, spec: HostPortSpec, version: int) -> list[str]:
    """The owner's chain rules and its entries in CNIPY-HOSTPORTS (specific addresses
    inserted at the top, any-address entries appended)."""
    c, tag = owner.hostport_chain, owner.tag
    conds = [_quote(t) for t in spec.conditions.get(version, [])]
    comment = ["-m", "comment", "--comment", f'"{tag}"']
    rules, entries = [], []
    for m in spec.family(version):
        match = _match(m)
        for s in spec.masq_sources(version):
            rules.append(" ".join(["-A", c] + _src(s, version) + match + comment + ["-j", mark_target(spec)]))
        ip = str(m.container_ip)
        to = f"{ip}:{m.container_port}" if version == 4 else f"[{ip}]:{m.container_port}"
        rules.append(" ".join(["-A", c] + match + comment + ["-j", "DNAT", "--to-destination", to]))
        head = ["-I", ENTRY, "1"] if m.host_ip else ["-A", ENTRY]
        entries.append(" ".join(head + match + conds + comment + ["-j", c]))
    return rules + entries


def skeleton_lines() -> list[str]:
    return [f":{ENTRY} - [0:0]"] + [
        f'-A {hook} -m addrtype --dst-type LOCAL -m comment --comment "{SKELETON_COMMENT}" -j {ENTRY}'
        for hook in ("PREROUTING", "OUTPUT")]


def masq_lines(spec: HostPortSpec, masq: Table | None) -> list[str]:
    """The MASQ chain (when missing) and this spec's bit (when missing)."""
    if not spec.snat or spec.set_mark_chain:
        return []
    out = []
    if masq is None:
        out += [f":{MASQ} - [0:0]", f'-I POSTROUTING 1 -m comment --comment "{SKELETON_COMMENT}" -j {MASQ}']
    mark = f"{spec.mark:#x}/{spec.mark:#x}"
    if masq is None or not any(f"--mark {mark}" in r.line for r in masq.rules):
        chain = f"{SETMARK_PREFIX}{spec.mark_bit}"
        out += [f":{chain} - [0:0]", f"-A {chain} -j MARK --set-xmark {mark}",
                f"-A {MASQ} -m mark --mark {mark} -j MASQUERADE"]
    return out


def entry_key(r: Rule, version: int) -> tuple | None:
    """(version, proto, host address or "", port) of a CNIPY-HOSTPORTS entry."""
    t = r.tokens
    try:
        proto = t[t.index("-p") + 1]
        port = int(t[t.index("--dport") + 1])
    except (ValueError, IndexError):
        return None
    host = ""
    if "-d" in t:
        host = str(parse_cidr(t[t.index("-d") + 1]).ip)
    return (version, proto, host, port)


def plan_add(owner: Owner, spec: HostPortSpec, version: int, entries: Table | None,
             masq: Table | None) -> list[str]:
    """Lines replacing the owner's state in one family (conflicts checked by the caller)."""
    lines = [] if entries is not None else skeleton_lines()
    lines += masq_lines(spec, masq)
    lines.append(f":{owner.hostport_chain} - [0:0]")  # creates, or (with --noflush) flushes, our chain
    if entries is not None:
        lines += ["-D" + r.line[2:] for r in entries.rules if r.chain == ENTRY and r.target == owner.hostport_chain]
    return lines + owner_lines(owner, spec, version)


def plan_del(owner: Owner, entries: Table | None) -> list[str]:
    """Delete the owner's entries (by their exact text) and its chain; [] if it has none."""
    jumps = [] if entries is None else [
        "-D" + r.line[2:] for r in entries.rules if r.chain == ENTRY and r.target == owner.hostport_chain]
    if not jumps:
        return []
    return [f":{owner.hostport_chain} - [0:0]"] + jumps + [f"-X {owner.hostport_chain}"]


def conflicts(owner: Owner, spec: HostPortSpec, version: int, entries: Table | None) -> list[CNIError]:
    if entries is None:
        return []
    held = {}
    for r in entries.rules:
        if r.chain == ENTRY and r.target != owner.hostport_chain:
            k = entry_key(r, version)
            if k is not None:
                held[k] = r.comment
    return [conflict_error(m, held[m.key]) for m in spec.family(version) if m.key in held]


def plan_gc(network: str, keep: set[tuple[str, str]], table: Table) -> list[str]:
    net, kept = network_part(network), kept_tags(network, keep)
    jumps: dict[str, list[Rule]] = {}
    for r in table.rules:
        if r.chain == ENTRY:
            jumps.setdefault(r.target, []).append(r)
    doomed = {t for t, rs in jumps.items() if any(gc_doomed(r.comment, net, kept) for r in rs)}
    lines = []
    for chain in sorted(doomed):
        lines += [f":{chain} - [0:0]"] + ["-D" + r.line[2:] for r in jumps[chain]] + [f"-X {chain}"]
    return lines


def check_problems(owner: Owner, spec: HostPortSpec, version: int, entries: Table | None,
                   mine: Table | None) -> list[str]:
    if entries is None:
        return [f"chain {ENTRY} (IPv{version}) is missing"]
    if mine is None:
        return [f"chain {owner.hostport_chain} (IPv{version}) is missing"]
    have_entries = {entry_key(r, version) for r in entries.rules if r.chain == ENTRY and r.target == owner.hostport_chain}
    dnat = set()
    marks = 0
    for r in mine.rules:
        k = entry_key(r, version)
        if r.target == "DNAT" and k is not None:
            dnat.add((k, r.after("--to-destination")))
        elif r.target == mark_target(spec):
            marks += 1
    problems = []
    for m in spec.family(version):
        ip = str(m.container_ip)
        to = f"{ip}:{m.container_port}" if version == 4 else f"[{ip}]:{m.container_port}"
        if m.key not in have_entries:
            problems.append(f"{ENTRY} entry for {m.describe()} is missing")
        if (m.key, to) not in dnat:
            problems.append(f"DNAT {m.describe()} -> {to} is missing")
    want = len(spec.family(version)) * len(spec.masq_sources(version))
    if marks < want:
        problems.append(f"{want - marks} masquerade mark rule(s) (IPv{version}) are missing")
    return problems


class IptablesHostPorts(HostPorts):
    """Host ports in the nat tables, run through the backend's iptables tools."""

    __slots__ = ("ipt",)

    def __init__(self, ipt: Iptables) -> None:
        self.ipt = ipt

    def _batch(self, version: int, lines: list[str]) -> None:
        if lines:
            self.ipt.restore(version, nat_batch(lines))

    def add(self, owner: Owner, spec: HostPortSpec) -> None:
        check_conditions(spec)
        with Lock(LOCK_NAME):
            plans = []
            for v in self.ipt.versions(set(spec.versions())):
                entries = self.ipt.list_chain(v, ENTRY)
                if not spec.family(v):
                    plans.append((v, plan_del(owner, entries)))
                    continue
                errors = conflicts(owner, spec, v, entries)
                if errors:
                    raise errors[0]
                masq = self.ipt.list_chain(v, MASQ) if spec.snat and not spec.set_mark_chain else None
                plans.append((v, plan_add(owner, spec, v, entries, masq)))
            for v, lines in plans:  # every family checked for conflicts before any change
                self._batch(v, lines)

    def delete(self, owner: Owner, spec: HostPortSpec | None = None) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                self._batch(v, plan_del(owner, self.ipt.list_chain(v, ENTRY)))

    def check(self, owner: Owner, spec: HostPortSpec) -> None:
        problems = []
        for v in spec.versions():
            problems += check_problems(owner, spec, v, self.ipt.list_chain(v, ENTRY),
                                       self.ipt.list_chain(v, owner.hostport_chain))
        if problems:
            raise CNIError(NOT_FOUND, f"iptables host ports of {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                entries = self.ipt.list_chain(v, ENTRY)
                if entries is not None:
                    self._batch(v, plan_gc(network, keep, entries))

