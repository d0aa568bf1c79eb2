"""Host ports with nftables: a constant number of map lookups per packet and a constant
number of elements per change, whatever the number of containers.

Layout, all in our own table ``inet cnipy_hostport`` (never the reference's
``ip/ip6 cni_hostport``)::

    map at4  { type ipv4_addr . inet_proto . inet_service : verdict }      # hostIP given
    map at6  { type ipv6_addr . inet_proto . inet_service : verdict }
    map any4 { type inet_proto . inet_service : verdict }                  # any local address
    map any6 { type inet_proto . inet_service : verdict }
    map dnat-at4  { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
    map dnat-at6  { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service }
    map dnat-any4 { type inet_proto . inet_service : ipv4_addr . inet_service }
    map dnat-any6 { type inet_proto . inet_service : ipv6_addr . inet_service }
    set owners { type ipv6_addr }               # H = 128-bit hash of the owner tag
    set owned  { type ipv6_addr . ipv6_addr }   # H . F, F = 128-bit hash of the owner's keys
    chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
    chain output      { type nat hook output priority -100;       fib daddr type local jump hostports }
    chain hostports   { ip daddr . meta l4proto . th dport vmap @at4      # specific address first
                        ip6 daddr . meta l4proto . th dport vmap @at6
                        meta nfproto ipv4 meta l4proto . th dport vmap @any4
                        meta nfproto ipv6 meta l4proto . th dport vmap @any6 }
    chain postrouting { type nat hook postrouting priority srcnat;
                        meta mark & 0x2000 == 0x2000 masquerade }          # one rule per mark bit in use
    chain setmark-13  { meta mark set meta mark | 0x2000 }
    chain CNIPP-<22 hex of sha256(what the chain does)> {   # shared by owners with the same needs
        <conditionsV4> ip saddr 10.88.0.0/24 jump setmark-13              # snat: the container subnet
        <conditionsV4> ip saddr 127.0.0.1 jump setmark-13                 #   and localhost
        <conditionsV4> dnat ip to meta l4proto . th dport map @dnat-any4 }

A mapping is two elements with the same key: one in the verdict map, jumping to the
*profile chain* that does what its owner asked (masquerade sources, mark bit, conditions,
family, any or specific address), one in the dnat map holding the container's address
and port. Profile chains are few (one or two per network) and shared; there is no chain
per owner: nft 1.0 loads every chain of the namespace into its cache before any element
change, so per-owner chains made every ``nft`` run slower as pods accumulated. A profile chain's dnat rule looks up the same kind of map its jumping
element is in (any or at): a packet reaching it through one owner's element can only be
translated by that key's dnat element, never by another owner's.

Every element carries its owner's tag as comment. Only traffic to a local address is
translated (``fib daddr type local`` in both hooks; the reference's early nftables backend
also caught forwarded traffic, #1209). A key (family, protocol, address, port) is one
element, so a second owner asking for it fails with EEXIST: a conflict is an error naming
the holder (the element's comment), never a silent takeover. ``conditionsV4/V6`` live in
the owner's profile chain: they apply to owners asking for the same conditions only (in
the reference's nftables backend they sit in shared, flushed chains).

Requests are written in nft's text syntax (the conditions are nft text by definition) and
fed to ``nft -f``; reads use ``nft -j list table``. ADD is one exec (``create`` of the
owner's elements, marker and proof) when nothing of it exists; ENOENT means a profile
chain is missing (the first owner of a profile): it goes in with the elements, a second
exec; ENOENT again means the table or a mark chain is missing, and EEXIST a re-ADD or a
conflict: then the table is read, a conflict reported, or the skeleton and the owner's
state written exactly. DEL knowing the mappings (runtimeConfig and prevResult,
which runtimes pass on DEL) is one exec with no read: the proof ``owned {H . F}`` goes in
the same transaction, so unless the owner's keys are exactly those, nothing changes and
DEL reads the table and deletes every element commented with the owner's tag. The
owner's profile chains are deleted in the same transaction, which the kernel refuses
(EBUSY) while another owner's element jumps to them; then the elements alone go, in a
second exec: the last user of a profile takes its chain along, so after the last
container's DEL only the skeleton is left. (The kernel reports a chain in use only by
failing the transaction, and a deleting or failed transaction waits for an RCU grace
period, about three times what an ADD's element creation takes.) GC and the reading DEL
also drop profile chains no element jumps to.
"""

from __future__ import annotations

from cnilib.errors import INVALID_CONFIG, NOT_FOUND, CNIError
from cnilib.firewall.base import HostPorts, Lock
from cnilib.firewall.hostport import DEFAULT_MARK_BIT, HostPortSpec, PortMapping, conflict_error
from cnilib.firewall.nftables.elements import OWNED, OWNERS, hash128, run_delete
from cnilib.firewall.nftables.runner import EEXIST, ENOENT, Nft
from cnilib.owner import (HOSTPORT_CHAIN_PREFIX, Owner, gc_doomed, is_owner_chain, kept_tags, network_part,
                          sha256_hex)

FAMILY = "inet"
TABLE = "cnipy_hostport"
T = f"{FAMILY} {TABLE}"
LOCK_NAME = "cnipy-nft-hostport.lock"
MAP_TYPES = {"at4": "ipv4_addr . inet_proto . inet_service", "at6": "ipv6_addr . inet_proto . inet_service",
             "any4": "inet_proto . inet_service", "any6": "inet_proto . inet_service"}
DNAT_DATA = {4: "ipv4_addr . inet_service", 6: "ipv6_addr . inet_service"}
PROFILE_PREFIX = "CNIPP-"
_IPX = {4: "ip", 6: "ip6"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
SETMARK_PREFIX = "setmark-"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall.nftables.listing import Listing
# Characters that would end or comment out the rule a condition is spliced into.
_CONDITION_FORBIDDEN = (";", "#", "\n", "\r")


def map_name(m: PortMapping) -> str:
    return ("at" if m.host_ip else "any") + str(m.version)


def dnat_map(name: str) -> str:
    return "dnat-" + name


def element_key(m: PortMapping) -> str:
    """The map key in nft syntax: ``192.0.2.1 . tcp . 8080`` or ``tcp . 8080``."""
    k = f"{m.proto} . {m.host_port}"
    return f"{m.host_ip} . {k}" if m.host_ip else k


def _target(m: PortMapping) -> str:
    ip = str(m.container_ip)
    return f"{ip} . {m.container_port}" if m.version == 4 else f"[{ip}] . {m.container_port}"


def check_conditions(spec: HostPortSpec) -> None:
    """Code 7 for a condition that could break out of the rule it is spliced into."""
    for v, conds in spec.conditions.items():
        for c in conds:
            if any(ch in c for ch in _CONDITION_FORBIDDEN):
                raise CNIError(INVALID_CONFIG, f"invalid conditionsV{v} entry {c!r}: ';', '#' and line breaks "
                                               "are not allowed in an nftables match")


# ---- profile chains ----

def profile_rules(spec: HostPortSpec, name: str) -> list[str]:
    """The rules of the profile chain serving ``spec``'s mappings of map ``name``."""
    v = int(name[-1])
    conds = " ".join(spec.conditions.get(v, []))
    head = f"{conds} " if conds else ""
    out = [f"{head}{_IPX[v]} saddr {src} jump {SETMARK_PREFIX}{spec.mark_bit}" for src in spec.masq_sources(v)]
    key = f"{_IPX[v]} daddr . meta l4proto . th dport" if name.startswith("at") else "meta l4proto . th dport"
    out.append(f"{head}dnat {_IPX[v]} to {key} map @{dnat_map(name)}")
    return out


def profile_chain(spec: HostPortSpec, name: str) -> str:
    """The profile chain's name: a hash of its rules (equal needs, one chain)."""
    return PROFILE_PREFIX + sha256_hex(name + "\n" + "\n".join(profile_rules(spec, name)))[:22]


def is_profile_chain(name: str) -> bool:
    return is_owner_chain(name, PROFILE_PREFIX)


def profile_lines(spec: HostPortSpec, fresh: bool = False) -> list[str]:
    """Every profile chain ``spec`` uses, (re)written: add, flush, its rules; with
    ``fresh``, created (EEXIST if one exists) without the flush, which would cost the
    transaction an RCU grace period."""
    out: list[str] = []
    for name in sorted({map_name(m) for m in spec.mappings}):
        c = profile_chain(spec, name)
        out += [f"create chain {T} {c}"] if fresh else [f"add chain {T} {c}", f"flush chain {T} {c}"]
        out += [f"add rule {T} {c} {r}" for r in profile_rules(spec, name)]
    return out


# ---- owner keys ----

def owner_key(owner: Owner) -> str:
    return hash128("hostport-owner:" + owner.tag)


def keys_key(spec: HostPortSpec) -> str:
    """F: the owner's element keys, as the second half of its ``owned`` key."""
    return hash128("hostport-keys:" + ",".join(sorted(f"{map_name(m)}:{element_key(m)}" for m in spec.mappings)))


def skeleton(mark_bits: set[int]) -> list[str]:
    """Table, maps, sets, base chains and one mark chain + masquerade rule per bit (``add``
    is idempotent; the base chains are flushed and refilled since rules are not)."""
    out = [f"add table {T}"]
    for name, typ in MAP_TYPES.items():
        out.append(f"add map {T} {name} {{ type {typ} : verdict; }}")
        out.append(f"add map {T} {dnat_map(name)} {{ type {typ} : {DNAT_DATA[int(name[-1])]}; }}")
    out.append(f"add set {T} {OWNERS} {{ type ipv6_addr; }}")
    out.append(f"add set {T} {OWNED} {{ type ipv6_addr . ipv6_addr; }}")
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


def owner_lines(owner: Owner, spec: HostPortSpec, verb: str = "create") -> list[str]:
    """The owner's elements: marker, proof, and per mapping its verdict and dnat elements.
    ``create`` fails the transaction with EEXIST when one of them exists."""
    h, tag = owner_key(owner), owner.tag
    out = [f'{verb} element {T} {OWNERS} {{ {h} comment "{tag}" }}',
           f'{verb} element {T} {OWNED} {{ {h} . {keys_key(spec)} comment "{tag}" }}']
    for m in spec.mappings:
        name, key = map_name(m), element_key(m)
        out.append(f'{verb} element {T} {name} {{ {key} comment "{tag}" : jump {profile_chain(spec, name)} }}')
        out.append(f'{verb} element {T} {dnat_map(name)} {{ {key} comment "{tag}" : {_target(m)} }}')
    return out


def del_fast_lines(owner: Owner, spec: HostPortSpec, drop_chains: bool = True) -> list[str]:
    """DEL without a read: fails (ENOENT) unless the owner's keys are exactly ``spec``'s.
    With ``drop_chains`` the owner's profile chains go too, which fails (EBUSY) while
    another owner's element still jumps to one of them."""
    h = owner_key(owner)
    out = [f"delete element {T} {OWNED} {{ {h} . {keys_key(spec)} }}", f"delete element {T} {OWNERS} {{ {h} }}"]
    for m in spec.mappings:
        name, key = map_name(m), element_key(m)
        out += [f"delete element {T} {name} {{ {key} }}", f"delete element {T} {dnat_map(name)} {{ {key} }}"]
    if drop_chains:
        for c in sorted({profile_chain(spec, map_name(m)) for m in spec.mappings}):
            out += [f"flush chain {T} {c}", f"delete chain {T} {c}"]
    return out


def script(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# ---- reading ----

def _our_maps(st: "Listing") -> dict[str, dict[tuple, tuple[str | None, str]]]:
    """Our maps (verdict and dnat) as listed, with their mapping elements (keyed by a
    concatenation: every key of ours is one)."""
    return {name: {k: v for k, v in elems.items() if isinstance(k, tuple)} for name, elems in st.maps.items()
            if name in MAP_TYPES or (name.startswith("dnat-") and name[5:] in MAP_TYPES)}


def mapping_key_parts(m: PortMapping) -> tuple:
    """``element_key`` as a Listing reads it."""
    return ((str(m.host_ip),) if m.host_ip else ()) + (m.proto, str(m.host_port))


# ---- plans from listings ----

def _drop_elements(st: "Listing", doomed: set[str]) -> list[str]:
    """Delete every element commented with one of the ``doomed`` tags."""
    lines = []
    for name, elems in sorted(_our_maps(st).items()):
        for key, (_t, comment) in sorted(elems.items()):
            if comment in doomed:
                lines.append(f"delete element {T} {name} {{ {' . '.join(key)} }}")
    for h, comment in sorted(st.owners.items()):
        if comment in doomed:
            lines.append(f"delete element {T} {OWNERS} {{ {h} }}")
    for (h, f), comment in sorted(st.owned.items()):
        if comment in doomed:
            lines.append(f"delete element {T} {OWNED} {{ {h} . {f} }}")
    return lines


def _unused_chains(st: "Listing", gone: set[str]) -> list[str]:
    """Delete profile chains (and owner chains of the previous layout) that no element
    jumps to once the elements of the ``gone`` tags are deleted."""
    used = {t for name, elems in st.maps.items() if name in MAP_TYPES
            for t, c in elems.values() if t and c not in gone}
    lines = []
    for c in sorted(st.chains):
        if (is_profile_chain(c) or is_owner_chain(c, HOSTPORT_CHAIN_PREFIX)) and c not in used:
            lines += [f"flush chain {T} {c}", f"delete chain {T} {c}"]
    return lines


def plan_replace(owner: Owner, spec: HostPortSpec, st: "Listing", mark_bits: set[int]) -> list[str]:
    """ADD's slow path once no conflict: drop the owner's old elements, (re)write the
    skeleton and the profile chains, add the owner's elements."""
    return (_drop_elements(st, {owner.tag}) + skeleton(mark_bits) + profile_lines(spec)
            + owner_lines(owner, spec, "add"))


def conflicts(owner: Owner, spec: HostPortSpec, st: "Listing") -> list[CNIError]:
    """One error per requested key held by another owner."""
    out = []
    for m in spec.mappings:
        held = st.maps.get(map_name(m), {}).get(mapping_key_parts(m))
        if held is not None and held[1] != owner.tag:
            out.append(conflict_error(m, held[1]))
    return out


def plan_del_exact(owner: Owner, st: "Listing") -> list[str]:
    return _drop_elements(st, {owner.tag}) + _unused_chains(st, {owner.tag})


def plan_gc(network: str, keep: set[tuple[str, str]], st: "Listing") -> list[str]:
    net, kept = network_part(network), kept_tags(network, keep)
    comments = {c for elems in _our_maps(st).values() for _t, c in elems.values()}
    comments |= set(st.owners.values()) | set(st.owned.values())
    doomed = {c for c in comments if gc_doomed(c, net, kept)}
    return _drop_elements(st, doomed) + _unused_chains(st, doomed)


def check_problems(owner: Owner, spec: HostPortSpec, st: "Listing") -> list[str]:
    if set(MAP_TYPES) - set(st.maps) or "hostports" not in st.chains or not {OWNERS, OWNED} <= set(st.sets):
        return [f"table {T} lacks its maps, sets or its hostports chain"]
    problems = []
    if st.owners.get(owner_key(owner)) != owner.tag:
        problems.append(f"{OWNERS} element of {owner.tag} is missing")
    for m in spec.mappings:
        name, key = map_name(m), mapping_key_parts(m)
        c = profile_chain(spec, name)
        target, comment = st.maps.get(name, {}).get(key, (None, ""))
        if target != c or comment != owner.tag:
            problems.append(f"{name} element {' . '.join(key)} -> {c} is missing")
        elif len(st.chains.get(c, [])) != len(profile_rules(spec, name)):
            problems.append(f"chain {c} ({len(profile_rules(spec, name))} rules for {m.describe()}) is missing "
                            "or was changed")
        dnat, comment = st.maps.get(dnat_map(name), {}).get(key, (None, ""))
        if dnat != f"{m.container_ip} {m.container_port}" or comment != owner.tag:
            problems.append(f"dnat for {m.describe()} -> {_target(m).replace(' . ', ':')} is missing")
    return problems


# ---- running ----

class NftHostPorts(HostPorts):
    """Host ports in table ``inet cnipy_hostport``, run through the backend's ``nft``."""

    __slots__ = ("nft",)

    def __init__(self, nft: Nft) -> None:
        self.nft = nft

    def _apply(self, lines: list[str]) -> tuple[int, bytes, str]:
        return self.nft.run_batch(script(lines), json=False)

    def _fail(self, rc: int, err: bytes, req: str) -> CNIError:
        return self.nft.batch_error(rc, err, req, json=False)

    def _state(self) -> "Listing | None":
        """Our table as listed now; None when it does not exist."""
        from cnilib.firewall.nftables.listing import read_table

        return read_table(self.nft, FAMILY, TABLE)

    def _state_or_empty(self) -> "Listing":
        from cnilib.firewall.nftables.listing import Listing

        return self._state() or Listing(FAMILY, TABLE)

    @staticmethod
    def _mark_bits(spec: HostPortSpec, st: "Listing | None") -> set[int]:
        """Bits whose mark chain exists plus ours (the skeleton rewrites postrouting)."""
        bits = {spec.mark_bit, DEFAULT_MARK_BIT}
        for name in (st.chains if st is not None else ()):
            if name.startswith(SETMARK_PREFIX) and name[len(SETMARK_PREFIX):].isdigit():
                bits.add(int(name[len(SETMARK_PREFIX):]))
        return bits

    def add(self, owner: Owner, spec: HostPortSpec) -> None:
        check_conditions(spec)
        with Lock(LOCK_NAME):
            if not spec.mappings:
                self._delete(owner, None)
                return
            rc, err, req = self._apply(owner_lines(owner, spec))
            if rc != 0 and ENOENT in err:  # the first owner of a profile: its chain goes in with the elements
                rc, err, req = self._apply(profile_lines(spec, fresh=True) + owner_lines(owner, spec))
            if rc != 0 and (ENOENT in err or EEXIST in err):
                # ENOENT: no table yet, a new mark bit, or a damaged table; EEXIST: a
                # re-ADD, or a key another owner holds. Read, then one exact batch.
                st = self._state_or_empty()
                errors = conflicts(owner, spec, st)
                if errors:
                    raise errors[0]
                rc, err, req = self._apply(plan_replace(owner, spec, st, self._mark_bits(spec, st)))
            if rc != 0:
                raise self._fail(rc, err, req)

    def delete(self, owner: Owner, spec: HostPortSpec | None = None) -> None:
        with Lock(LOCK_NAME):
            self._delete(owner, spec if spec is not None and spec.mappings else None)

    def _delete(self, owner: Owner, spec: HostPortSpec | None) -> None:
        fast = (lambda drop: del_fast_lines(owner, spec, drop)) if spec is not None else None
        run_delete(self._apply, self._fail, fast, lambda: plan_del_exact(owner, self._state_or_empty()))

    def check(self, owner: Owner, spec: HostPortSpec) -> None:
        problems = check_problems(owner, spec, self._state_or_empty())
        if problems:
            raise CNIError(NOT_FOUND, f"nftables host ports of {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            st = self._state()
            if st is None or "hostports" not in st.chains:
                return  # no table of ours here
            lines = plan_gc(network, keep, st)
            if lines:
                rc, err, req = self._apply(lines)
                if rc != 0:
                    raise self._fail(rc, err, req)
