"""Host ports with nftables: a constant number of map lookups per packet and a constant
number of objects per change, whatever the number of containers.

Layout, all in our own table ``inet cnipy_hostport`` (never the reference's
``ip/ip6 cni_hostport``)::

    map at4  { type ipv4_addr . inet_proto . inet_service : verdict }  # hostIP given
    map at6  { type ipv6_addr . inet_proto . inet_service : verdict }
    map any4 { type inet_proto . inet_service : verdict }              # any local address
    map any6 { type inet_proto . inet_service : verdict }
    chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
    chain output      { type nat hook output priority -100;       fib daddr type local jump hostports }
    chain hostports   { ip daddr . meta l4proto . th dport vmap @at4      # specific address first
                        ip6 daddr . meta l4proto . th dport vmap @at6
                        meta nfproto ipv4 meta l4proto . th dport vmap @any4
                        meta nfproto ipv6 meta l4proto . th dport vmap @any6 }
    chain postrouting { type nat hook postrouting priority srcnat;
                        meta mark & 0x2000 == 0x2000 masquerade }          # one rule per mark bit in use
    chain setmark-13  { meta mark set meta mark | 0x2000 }
    chain CNIPH-<22 hex of sha256("hostport:" + owner tag)> {            # one per owner
        [ip daddr H] meta l4proto tcp th dport 8080 <conditionsV4> ip saddr SUBNET jump setmark-13
        [ip daddr H] meta l4proto tcp th dport 8080 <conditionsV4> ip saddr 127.0.0.1 jump setmark-13
        [ip daddr H] meta l4proto tcp th dport 8080 <conditionsV4> dnat ip to C:80 }

Every map element and rule of an owner carries the owner's tag as its comment. Only
traffic to a local address is translated (``fib daddr type local`` in both hooks; the
reference's early nftables backend also caught forwarded traffic, #1209). A key
(family, protocol, address, port) is one map element, so a second owner asking for it
fails with EEXIST: a conflict is an error naming the holder (the element's comment), never
a silent takeover. ``conditionsV4/V6`` live in the owner's own rules: they apply to that
owner only (in the reference's nftables backend they sit in shared, flushed chains).

Requests are written in nft's text syntax (the conditions are nft text by definition) and
fed to ``nft -f``; reads use ``nft -j list``. Paths, as in the masquerade backend: ADD is
one exec (``create`` chain, rules, ``create`` elements) when the owner is new; ENOENT means
the table (or the owner's mark chain) is missing: the skeleton is written in the same
transaction; EEXIST means a re-ADD or a conflict: the owner's chain and the maps are read,
a conflict reported, or the owner's state replaced exactly. DEL reads only the owner's
chain (its dnat rules give the element keys) and deletes those elements and the chain.
Invariant under the lock: an element points at chain C iff C has the dnat rule for its key.
"""

from __future__ import annotations

from cnilib.errors import INVALID_CONFIG, CNIError
from cnilib.firewall.base import (HOSTPORT_CHAIN_PREFIX, MISSING, HostPorts, Lock, Owner, gc_doomed, is_owner_chain,
                                  kept_tags, network_part)
from cnilib.firewall.hostport import PROTOCOLS, HostPortSpec, PortMapping, conflict_error

FAMILY = "inet"
TABLE = "cnipy_hostport"
T = f"{FAMILY} {TABLE}"
LOCK_NAME = "cnipy-nft-hostport.lock"
MAP_TYPES = {"at4": "ipv4_addr . inet_proto . inet_service", "at6": "ipv6_addr . inet_proto . inet_service",
             "any4": "inet_proto . inet_service", "any6": "inet_proto . inet_service"}
_IPX = {4: "ip", 6: "ip6"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
SETMARK_PREFIX = "setmark-"
ENOENT = b"No such file or directory"
EEXIST = b"File exists"
EBUSY = b"Device or resource busy"
# Characters that would end or comment out the rule a condition is spliced into.
_CONDITION_FORBIDDEN = (";", "#", "\n", "\r")


def map_name(m: PortMapping) -> str:
    return ("at" if m.host_ip else "any") + str(m.version)


def element_key(m: PortMapping) -> str:
    """The map key in nft syntax: ``192.0.2.1 . tcp . 8080`` or ``tcp . 8080``."""
    k = f"{m.proto} . {m.host_port}"
    return f"{m.host_ip} . {k}" if m.host_ip else k


def _match(m: PortMapping, spec: HostPortSpec) -> str:
    v = m.version
    head = f"{_IPX[v]} daddr {m.host_ip}" if m.host_ip else f"meta nfproto {_NFPROTO[v]}"
    conds = " ".join(spec.conditions.get(v, []))
    return f"{head} meta l4proto {m.proto} th dport {m.host_port}" + (f" {conds}" if conds else "")


def _target(m: PortMapping) -> str:
    ip = str(m.container_ip)
    return f"{ip}:{m.container_port}" if m.version == 4 else f"[{ip}]:{m.container_port}"


def check_conditions(spec: HostPortSpec) -> None:
    """Code 7 for a condition that could break out of the rule it is spliced into."""
    for v, conds in spec.conditions.items():
        for c in conds:
            if any(ch in c for ch in _CONDITION_FORBIDDEN):
                raise CNIError(INVALID_CONFIG, f"invalid conditionsV{v} entry {c!r}: ';', '#' and line breaks "
                                               "are not allowed in an nftables match")


def skeleton(mark_bits: set[int]) -> list[str]:
    """Table, maps, base chains and one mark chain + masquerade rule per bit (``add`` is
    idempotent; the base chains are flushed and refilled since rules are not)."""
    out = [f"add table {T}"]
    for name, typ in MAP_TYPES.items():
        out.append(f"add map {T} {name} {{ type {typ} : verdict; }}")
    out.append(f"add chain {T} hostports")
    out.append(f"flush chain {T} hostports")
    for v in (4, 6):
        out.append(f"add rule {T} hostports {_IPX[v]} daddr . meta l4proto . th dport vmap @at{v}")
    for v in (4, 6):
        out.append(f"add rule {T} hostports meta nfproto {_NFPROTO[v]} meta l4proto . th dport vmap @any{v}")
    for hook in ("prerouting", "output"):
        # -100 is "dstnat", a name nft 1.0 accepts only for prerouting.
        out.append(f"add chain {T} {hook} {{ type nat hook {hook} priority -100; policy accept; }}")
        out.append(f"flush chain {T} {hook}")
        out.append(f"add rule {T} {hook} fib daddr type local jump hostports")
    out.append(f"add chain {T} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}")
    out.append(f"flush chain {T} postrouting")
    for bit in sorted(mark_bits):
        mark = f"{1 << bit:#x}"
        out.append(f"add rule {T} postrouting meta mark & {mark} == {mark} masquerade")
        out.append(f"add chain {T} {SETMARK_PREFIX}{bit}")
        out.append(f"flush chain {T} {SETMARK_PREFIX}{bit}")
        out.append(f"add rule {T} {SETMARK_PREFIX}{bit} meta mark set meta mark or {mark}")
    return out


def owner_lines(owner: Owner, spec: HostPortSpec, create: bool) -> list[str]:
    """The owner's chain, rules and map elements. ``create`` fails the transaction with
    EEXIST when the chain or an element exists; otherwise the chain is flushed and
    refilled (the caller deletes the owner's old elements first)."""
    verb = "create" if create else "add"
    c, tag = owner.hostport_chain, owner.tag
    out = [f"{verb} chain {T} {c}"]
    if not create:
        out.append(f"flush chain {T} {c}")
    for m in spec.mappings:
        match = _match(m, spec)
        # One rule per source, not one rule with an anonymous set: nft 1.0 fetches the
        # elements of every set in the table (anonymous ones included) before adding an
        # element, so a set per owner made each ADD cost O(owners) (~80 ms at 1,000).
        for src in spec.masq_sources(m.version):
            out.append(f'add rule {T} {c} {match} {_IPX[m.version]} saddr {src} '
                       f'jump {SETMARK_PREFIX}{spec.mark_bit} comment "{tag}"')
        out.append(f'add rule {T} {c} {match} dnat {_IPX[m.version]} to {_target(m)} comment "{tag}"')
    for m in spec.mappings:
        out.append(f'{verb} element {T} {map_name(m)} {{ {element_key(m)} comment "{tag}" : jump {c} }}')
    return out


def script(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# ---- reading ----

class Listing:
    """What ``nft -j list`` showed of our table: chains -> rules, maps -> key -> (target, comment)."""

    __slots__ = ("chains", "maps")

    def __init__(self) -> None:
        self.chains: dict[str, list[dict]] = {}
        self.maps: dict[str, dict[tuple, tuple[str | None, str]]] = {}

    def merge(self, doc: object) -> None:
        items = doc.get("nftables", []) if isinstance(doc, dict) else []
        for item in items:
            if not isinstance(item, dict):
                continue
            for kind in ("chain", "rule", "map"):
                obj = item.get(kind)
                if isinstance(obj, dict) and obj.get("family") == FAMILY and obj.get("table") == TABLE:
                    getattr(self, "_" + kind)(obj)

    def _chain(self, obj: dict) -> None:
        self.chains[obj.get("name", "")] = []

    def _rule(self, obj: dict) -> None:
        self.chains.setdefault(obj.get("chain", ""), []).append(obj)

    def _map(self, obj: dict) -> None:
        name = obj.get("name", "")
        if name not in MAP_TYPES:
            return
        from cnilib.firewall.nft import verdict_map_elements

        verdict_map_elements(obj, _listed_key, self.maps.setdefault(name, {}))


def _listed_key(k: object) -> tuple | None:
    """A listed element key as a tuple of texts: ("192.0.2.1", "tcp", "8080")."""
    if isinstance(k, dict) and isinstance(k.get("concat"), list):
        return tuple(_norm_part(p) for p in k["concat"])
    return None


def _norm_part(p: object) -> str:
    from cnilib.ip import parse_ip

    s = str(p)
    try:
        return str(parse_ip(s))
    except ValueError:
        return s


def mapping_key_parts(m: PortMapping) -> tuple:
    """``element_key`` as ``_listed_key`` returns it."""
    return ((str(m.host_ip),) if m.host_ip else ()) + (m.proto, str(m.host_port))


def rule_element(rule: dict) -> tuple[str, tuple] | None:
    """(map name, key parts) of the element a dnat rule serves, from its first address and
    port matches (conditions come after them), or None for any other rule."""
    expr = rule.get("expr")
    if not isinstance(expr, list):
        return None
    dnat = next((e["dnat"] for e in expr if isinstance(e, dict) and isinstance(e.get("dnat"), dict)), None)
    if dnat is None:
        return None
    version = {"ip": 4, "ip6": 6}.get(dnat.get("family"))
    host = port = proto = None
    for e in expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or m.get("op") != "==" or not isinstance(m.get("left"), dict):
            continue
        p = m["left"].get("payload")
        if not isinstance(p, dict):
            continue
        if p.get("field") == "daddr" and p.get("protocol") in ("ip", "ip6") and host is None and port is None:
            host = _norm_part(m.get("right"))
        elif p.get("field") == "dport" and p.get("protocol") in PROTOCOLS and port is None:
            proto, port = p["protocol"], str(m.get("right"))
    if version is None or port is None:
        return None
    if host is not None:
        return f"at{version}", (host, proto, port)
    return f"any{version}", (proto, port)


def dnat_targets(rules: list[dict]) -> set[tuple[str, tuple, str, int]]:
    """(map, key, container address, container port) of every dnat rule listed."""
    out = set()
    for r in rules:
        el = rule_element(r)
        if el is None:
            continue
        d = next(e["dnat"] for e in r["expr"] if isinstance(e, dict) and isinstance(e.get("dnat"), dict))
        out.add((el[0], el[1], _norm_part(d.get("addr")), int(d.get("port", 0))))
    return out


# ---- plans from listings ----

def plan_replace(owner: Owner, spec: HostPortSpec, st: Listing) -> list[str]:
    """ADD's slow path once no conflict: drop the owner's old elements, refill its chain."""
    lines = []
    for name, elems in sorted(st.maps.items()):
        for key, (target, _c) in sorted(elems.items()):
            if target == owner.hostport_chain:
                lines.append(f"delete element {T} {name} {{ {' . '.join(key)} }}")
    return lines + owner_lines(owner, spec, create=False)


def conflicts(owner: Owner, spec: HostPortSpec, st: Listing) -> list[CNIError]:
    """One error per requested key held by another owner."""
    out = []
    for m in spec.mappings:
        held = st.maps.get(map_name(m), {}).get(mapping_key_parts(m))
        if held is not None and held[0] != owner.hostport_chain:
            out.append(conflict_error(m, held[1]))
    return out


def plan_del(owner: Owner, chain_rules: list[dict]) -> list[str]:
    lines = []
    for name, key in sorted({el for el in map(rule_element, chain_rules) if el is not None}):
        lines.append(f"delete element {T} {name} {{ {' . '.join(key)} }}")
    return lines + [f"flush chain {T} {owner.hostport_chain}", f"delete chain {T} {owner.hostport_chain}"]


def drop_chains(names: set[str], st: Listing) -> list[str]:
    lines = []
    for name, elems in sorted(st.maps.items()):
        for key, (target, _c) in sorted(elems.items()):
            if target in names:
                lines.append(f"delete element {T} {name} {{ {' . '.join(key)} }}")
    for c in sorted(names):
        lines += [f"flush chain {T} {c}", f"delete chain {T} {c}"]
    return lines


def plan_gc(network: str, keep: set[tuple[str, str]], st: Listing) -> list[str]:
    net, kept = network_part(network), kept_tags(network, keep)
    referenced, doomed = set(), set()
    for elems in st.maps.values():
        for target, comment in elems.values():
            referenced.add(target)
            if target and gc_doomed(comment, net, kept):
                doomed.add(target)
    doomed |= {c for c in st.chains if is_owner_chain(c, HOSTPORT_CHAIN_PREFIX) and c not in referenced}
    return drop_chains(doomed, st)


def check_problems(owner: Owner, spec: HostPortSpec, st: Listing) -> list[str]:
    if set(st.maps) != set(MAP_TYPES) or "hostports" not in st.chains:
        return [f"table {T} lacks its maps or its hostports chain"]
    rules = st.chains.get(owner.hostport_chain)
    if rules is None:
        return [f"chain {owner.hostport_chain} of {owner.tag} is missing"]
    have = dnat_targets(rules)
    marks = sum(1 for r in rules if any(isinstance(e, dict) and isinstance(e.get("jump"), dict) and
                                        e["jump"].get("target") == f"{SETMARK_PREFIX}{spec.mark_bit}"
                                        for e in r.get("expr", [])))
    problems = []
    for m in spec.mappings:
        name, key = map_name(m), mapping_key_parts(m)
        if (name, key, str(m.container_ip), m.container_port) not in have:
            problems.append(f"dnat rule for {m.describe()} -> {_target(m)} is missing")
        if st.maps.get(name, {}).get(key, (None, ""))[0] != owner.hostport_chain:
            problems.append(f"{name} element {' . '.join(key)} -> {owner.hostport_chain} is missing")
    want_marks = sum(len(spec.masq_sources(m.version)) for m in spec.mappings)
    if marks < want_marks:
        problems.append(f"{want_marks - marks} masquerade mark rule(s) are missing")
    return problems


# ---- running ----

class NftHostPorts(HostPorts):
    """The nftables host-port operations, run through ``backend``'s nft."""

    def __init__(self, backend) -> None:
        self.b = backend

    def _apply(self, lines: list[str]) -> tuple[int, bytes, str]:
        return self.b.run_batch(script(lines), json=False)

    def _fail(self, rc: int, err: bytes, req: str) -> CNIError:
        return self.b.batch_error(rc, err, req, json=False)

    def _read(self, st: Listing, *what: str) -> bool:
        doc = self.b.list_json(*what)
        if doc is None:
            return False
        st.merge(doc)
        return True

    def _read_maps(self, st: Listing) -> None:
        for name in MAP_TYPES:
            self._read(st, "map", FAMILY, TABLE, name)

    def _mark_bits(self, spec: HostPortSpec) -> set[int]:
        """Bits whose mark chain exists (read only when the skeleton is (re)written) plus ours."""
        st = Listing()
        self._read(st, "chains", FAMILY)
        bits = {spec.mark_bit, 13}
        for name in st.chains:
            if name.startswith(SETMARK_PREFIX) and name[len(SETMARK_PREFIX):].isdigit():
                bits.add(int(name[len(SETMARK_PREFIX):]))
        return bits

    def add(self, owner: Owner, spec: HostPortSpec) -> None:
        check_conditions(spec)
        with Lock(LOCK_NAME):
            if not spec.mappings:
                self._delete(owner)
                return
            rc, err, req = self._apply(owner_lines(owner, spec, create=True))
            if rc != 0 and ENOENT in err:  # first owner, a new mark bit, or a damaged table
                rc, err, req = self._apply(skeleton(self._mark_bits(spec)) + owner_lines(owner, spec, create=True))
            if rc != 0 and EEXIST in err:  # re-ADD, or a key another owner holds
                st = Listing()
                self._read(st, "chain", FAMILY, TABLE, owner.hostport_chain)
                self._read_maps(st)
                errors = conflicts(owner, spec, st)
                if errors:
                    raise errors[0]
                rc, err, req = self._apply(plan_replace(owner, spec, st))
            if rc != 0:
                raise self._fail(rc, err, req)

    def delete(self, owner: Owner) -> None:
        with Lock(LOCK_NAME):
            self._delete(owner)

    def _delete(self, owner: Owner) -> None:
        st = Listing()
        if not self._read(st, "chain", FAMILY, TABLE, owner.hostport_chain):
            return
        rc, err, req = self._apply(plan_del(owner, st.chains.get(owner.hostport_chain, [])))
        if rc != 0 and (ENOENT in err or EBUSY in err):  # the table was edited behind our back
            st = Listing()
            if not self._read(st, "chain", FAMILY, TABLE, owner.hostport_chain):
                return
            self._read_maps(st)
            rc, err, req = self._apply(drop_chains({owner.hostport_chain}, st))
        if rc != 0:
            raise self._fail(rc, err, req)

    def check(self, owner: Owner, spec: HostPortSpec) -> None:
        st = Listing()
        if self._read(st, "chain", FAMILY, TABLE, "hostports"):
            self._read(st, "chain", FAMILY, TABLE, owner.hostport_chain)
            self._read_maps(st)
        problems = check_problems(owner, spec, st)
        if problems:
            raise CNIError(MISSING, f"nftables host ports of {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            st = Listing()
            if not self._read(st, "chains", FAMILY):
                return
            if "hostports" not in st.chains:
                return  # no table of ours here
            self._read_maps(st)
            lines = plan_gc(network, keep, st)
            if lines:
                rc, err, req = self._apply(lines)
                if rc != 0:
                    raise self._fail(rc, err, req)
