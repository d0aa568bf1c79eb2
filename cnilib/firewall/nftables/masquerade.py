"""Masquerading with nftables: ``nft -j -f -`` with one JSON batch (one atomic transaction) per change.

Layout, all in our own table ``inet cnipy_nat`` (never the reference's
``cni_plugins_masquerade``)::

    map src4 { type ipv4_addr : verdict }        # container source -> jump to its subnet's chain
    map src6 { type ipv6_addr : verdict }        #   (element comment = owner tag)
    set owners { type ipv6_addr }                # H = 128-bit hash of the owner tag (comment = tag)
    set owned  { type ipv6_addr . ipv6_addr }    # H . F, F = 128-bit hash of the owner's sources
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        ip saddr vmap @src4
        ip6 saddr vmap @src6 }
    chain CNIPN-<22 hex of sha256("masq:" + SUBNET)> {    # one per container subnet, shared
        ip daddr != SUBNET ip daddr != 224.0.0.0/4 masquerade }

An attachment is *elements only*: its sources in the verdict maps, its marker in ``owners``
and its proof in ``owned``. Why no chain per owner: nft 1.0 loads every chain of the
namespace (all tables) into its cache before any element or rule change, so each per-owner
chain made every later ``nft`` run slower as pods accumulated; element changes
to a map cost the same with 10 or 10,000 elements, and a packet still does one hash lookup
and then its subnet chain's rule.

ADD is one exec: ``create`` of the three kinds of elements. It fails with ENOENT when the
subnet's chain is missing (the first attachment of a subnet): then the chain goes in with
the same elements; and when the table is missing too, the skeleton as well (``add`` is
idempotent; the chains are flushed and refilled, their rules are not). Only creating is
cheap: a transaction that deletes anything (a flush included) waits for an RCU grace
period, so the skeleton is rewritten only when it is missing.
It fails with EEXIST on a re-ADD (the marker exists) or when another owner holds one of
the sources (its DEL never came): only then is the table read and an exact replacement
sent, taking the source over and deleting the previous holder's ``owned`` proof.

DEL with the attachment's sources known (the bridge passes prevResult's addresses) is one
exec with no read: delete ``owned {H . F}``, ``owners {H}`` and the source elements. The
proof makes it exact: if the owner's state is not exactly what F says (a source was taken
over, the table edited, a different prevResult), the transaction fails with ENOENT before
anything changes, and DEL falls back to reading the table and deleting every element
commented with the owner's tag. The owner's subnet chains are deleted in the same
transaction, which the kernel refuses (EBUSY) while another owner's element jumps to them;
then the elements alone go, in a second exec: the last attachment of a subnet takes its
chain along, so nothing of ours but the skeleton outlives the last container. (That second
exec is the price: the kernel reports a chain in use only by failing the transaction, and
a deleting or failed transaction waits for an RCU grace period, about three times what
creating elements takes.) The reading DEL and GC also drop subnet chains no element jumps to.
"""

from __future__ import annotations

from cnilib.errors import NOT_FOUND, CNIError
from cnilib.firewall.base import Lock, Masquerade
from cnilib.firewall.nftables.elements import OWNED, OWNERS, hash128, run_delete
from cnilib.firewall.nftables.runner import EEXIST, ENOENT, Nft
from cnilib.firewall.rules import MULTICAST, MasqRule, normalize
from cnilib.ip import Net, parse_ip
from cnilib.owner import Owner, gc_doomed, is_owner_chain, kept_tags, network_part, sha256_hex

FAMILY = "inet"
TABLE = "cnipy_nat"
BASE_CHAIN = "postrouting"
MAPS = {4: "src4", 6: "src6"}
SUBNET_CHAIN_PREFIX = "CNIPN-"
_KEY_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_PROTO = {4: "ip", 6: "ip6"}
_VERSION_OF = {"ip": 4, "ip6": 6}
LOCK_NAME = "cnipy-nft.lock"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall.nftables.listing import Listing


# ---- names and keys ----

def owner_key(owner: Owner) -> str:
    """H: the owner's key in ``owners`` (and the first half of its ``owned`` key)."""
    return hash128("masq-owner:" + owner.tag)


def sources_key(rules: list[MasqRule]) -> str:
    """F: what the owner's source elements are, as the second half of its ``owned`` key."""
    return hash128("masq-sources:" + ",".join(f"{r.source}>{r.subnet}" for r in normalize(rules)))


def subnet_chain(r: MasqRule) -> str:
    """The shared chain masquerading sources of ``r.subnet`` (22 hex, as owner chains)."""
    return SUBNET_CHAIN_PREFIX + sha256_hex(f"masq:{r.subnet}")[:22]


def is_subnet_chain(name: str) -> bool:
    return is_owner_chain(name, SUBNET_CHAIN_PREFIX)


# ---- JSON requests (pure: the unit tests compare them verbatim) ----

def _obj(**kw: object) -> dict:
    return {"family": FAMILY, "table": TABLE, **kw}


def _payload(version: int, field: str) -> dict:
    return {"payload": {"protocol": _PROTO[version], "field": field}}


def _prefix(net: Net) -> dict:
    return {"prefix": {"addr": str(net.network), "len": net.prefixlen}}


def subnet_expr(r: MasqRule) -> list[dict]:
    """``ip daddr != SUBNET ip daddr != MULTICAST masquerade``, as nft lists it."""
    v = r.version
    return [
        {"match": {"op": "!=", "left": _payload(v, "daddr"), "right": _prefix(r.subnet)}},
        {"match": {"op": "!=", "left": _payload(v, "daddr"), "right": _prefix(r.multicast)}},
        {"masquerade": None},
    ]


def dispatch_expr(version: int) -> list[dict]:
    """The base chain's rule: look the source up in the family's verdict map."""
    return [{"vmap": {"key": _payload(version, "saddr"), "data": "@" + MAPS[version]}}]


def skeleton() -> list[dict]:
    """Table, maps, sets and base chain (idempotent ``add``), base chain refilled."""
    cmds: list[dict] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for v in (4, 6):
        cmds.append({"add": {"map": _obj(name=MAPS[v], type=_KEY_TYPE[v], map="verdict")}})
    cmds.append({"add": {"set": _obj(name=OWNERS, type="ipv6_addr")}})
    cmds.append({"add": {"set": _obj(name=OWNED, type=["ipv6_addr", "ipv6_addr"])}})
    cmds.append({"add": {"chain": _obj(name=BASE_CHAIN, type="nat", hook="postrouting", prio=100,
                                       policy="accept")}})
    cmds.append({"flush": {"chain": _obj(name=BASE_CHAIN)}})
    for v in (4, 6):
        cmds.append({"add": {"rule": _obj(chain=BASE_CHAIN, expr=dispatch_expr(v))}})
    return cmds


def subnet_chains(rules: list[MasqRule], fresh: bool = False) -> list[dict]:
    """The subnet chains ``rules`` jump to, (re)written: add, flush, the one rule; with
    ``fresh``, created (EEXIST if one exists) without the flush, which would cost the
    transaction an RCU grace period."""
    cmds: list[dict] = []
    done = set()
    for r in rules:
        c = subnet_chain(r)
        if c in done:
            continue
        done.add(c)
        if fresh:
            cmds.append({"create": {"chain": _obj(name=c)}})
        else:
            cmds += [{"add": {"chain": _obj(name=c)}}, {"flush": {"chain": _obj(name=c)}}]
        cmds.append({"add": {"rule": _obj(chain=c, expr=subnet_expr(r))}})
    return cmds


def owner_objects(owner: Owner, rules: list[MasqRule], verb: str = "create") -> list[dict]:
    """The owner's elements: marker, proof, one source element per rule. ``create`` makes
    the transaction fail (EEXIST) when one of them exists."""
    h, tag = owner_key(owner), owner.tag
    cmds: list[dict] = [
        {verb: {"element": _obj(name=OWNERS, elem=[{"elem": {"val": h, "comment": tag}}])}},
        {verb: {"element": _obj(name=OWNED, elem=[{"elem": {"val": {"concat": [h, sources_key(rules)]},
                                                            "comment": tag}}])}},
    ]
    for r in rules:
        elem = [{"elem": {"val": str(r.source), "comment": tag}}, {"jump": {"target": subnet_chain(r)}}]
        cmds.append({verb: {"element": _obj(name=MAPS[r.version], elem=[elem])}})
    return cmds


def plan_add(owner: Owner, rules: list[MasqRule], init: bool = False) -> list[dict]:
    """ADD's fast path: the owner's elements; with ``init`` the skeleton and the subnet
    chains in the same transaction."""
    return (skeleton() + subnet_chains(rules) if init else []) + owner_objects(owner, rules)


def plan_del_fast(owner: Owner, rules: list[MasqRule], drop_chains: bool = True) -> list[dict]:
    """DEL without a read: fails (ENOENT) unless the owner's state is exactly ``rules``.
    With ``drop_chains`` the owner's subnet chains go too, which fails (EBUSY) while
    another owner's element still jumps to one of them."""
    h = owner_key(owner)
    cmds: list[dict] = [{"delete": {"element": _obj(name=OWNED, elem=[{"concat": [h, sources_key(rules)]}])}},
                        {"delete": {"element": _obj(name=OWNERS, elem=[h])}}]
    for r in normalize(rules):
        cmds.append({"delete": {"element": _obj(name=MAPS[r.version], elem=[str(r.source)])}})
    if drop_chains:
        for c in sorted({subnet_chain(r) for r in rules}):
            cmds += [{"flush": {"chain": _obj(name=c)}}, {"delete": {"chain": _obj(name=c)}}]
    return cmds


def batch(cmds: list[dict]) -> bytes:
    """The stdin of ``nft -j -f -``."""
    from cnilib.jsonio import dumps

    return dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}] + cmds}, indent=False).encode()


# ---- reading what nft lists ----

def parse_listing(doc: object) -> "Listing":
    """Our table's Listing from nft's JSON listing (anything else is ignored)."""
    from cnilib.firewall.nftables.listing import Listing

    return Listing(FAMILY, TABLE).merge(doc)


def _read(nft: Nft) -> "Listing | None":
    """Our table as listed now; None when it does not exist."""
    from cnilib.firewall.nftables.listing import read_table

    return read_table(nft, FAMILY, TABLE)


def skeleton_ok(st: "Listing") -> bool:
    """Maps and sets exist and the base chain is ours, holding exactly the two dispatch rules."""
    base = st.chain_info.get(BASE_CHAIN)
    if not set(MAPS.values()) <= set(st.maps) or not {OWNERS, OWNED} <= set(st.sets) or base is None:
        return False
    if (base.get("type"), base.get("hook")) != ("nat", "postrouting"):
        return False
    return [r.get("expr") for r in st.chains.get(BASE_CHAIN, [])] == [dispatch_expr(4), dispatch_expr(6)]


def _sources(st: "Listing") -> dict[int, dict]:
    """version -> the source elements of that family's map: source -> (target, comment)."""
    return {v: st.maps[name] for v, name in MAPS.items() if name in st.maps}


def _net(right: object) -> Net:
    """A listed prefix; nft lists a full-length prefix as a plain address."""
    if isinstance(right, dict):
        return Net(parse_ip(right["prefix"]["addr"]), int(right["prefix"]["len"]))
    ip = parse_ip(right)  # type: ignore[arg-type]
    return Net(ip, ip.bits)


def subnet_rule_meaning(rule: dict) -> tuple[int, Net] | None:
    """(version, subnet) a listed subnet-chain rule implements, or None unless it is
    exactly our form."""
    expr = rule.get("expr")
    if not isinstance(expr, list) or len(expr) != 3 or expr[2] != {"masquerade": None}:
        return None
    try:
        m = [e["match"] for e in expr[:2]]
        version = _VERSION_OF[m[0]["left"]["payload"]["protocol"]]
        if [(x["op"], x["left"]) for x in m] != [("!=", _payload(version, "daddr"))] * 2:
            return None
        subnet, multicast = _net(m[0]["right"]), _net(m[1]["right"])
        if subnet.version != version or multicast != MULTICAST[version]:
            return None
        return version, subnet
    except (KeyError, TypeError, ValueError):
        return None


def _drop_elements(st: "Listing", doomed_tags: set[str],
                   extra_sources: set[tuple[int, str]] = frozenset()) -> list[dict]:
    """Delete every element commented with one of ``doomed_tags`` (and the source elements
    in ``extra_sources``, whoever holds them)."""
    cmds: list[dict] = []
    for v, elems in sorted(_sources(st).items()):
        for key, (_target, comment) in sorted(elems.items()):
            if comment in doomed_tags or (v, key) in extra_sources:
                cmds.append({"delete": {"element": _obj(name=MAPS[v], elem=[key])}})
    for h, comment in sorted(st.owners.items()):
        if comment in doomed_tags:
            cmds.append({"delete": {"element": _obj(name=OWNERS, elem=[h])}})
    for (h, f), comment in sorted(st.owned.items()):
        if comment in doomed_tags:
            cmds.append({"delete": {"element": _obj(name=OWNED, elem=[{"concat": [h, f]}])}})
    return cmds


def _unused_chains(st: "Listing", gone_tags: set[str]) -> list[dict]:
    """Delete subnet chains (and owner chains of the previous layout) that no element jumps
    to once the elements of ``gone_tags`` are gone."""
    used = {t for elems in _sources(st).values() for t, c in elems.values() if t and c not in gone_tags}
    cmds: list[dict] = []
    for name in sorted(st.chains):
        if (is_subnet_chain(name) or is_owner_chain(name)) and name not in used:
            cmds += [{"flush": {"chain": _obj(name=name)}}, {"delete": {"chain": _obj(name=name)}}]
    return cmds


def plan_replace(owner: Owner, rules: list[MasqRule], st: "Listing") -> list[dict]:
    """ADD's slow path: delete the owner's old elements and any source element another
    owner holds (with that owner's proof: its fast DEL must not delete what is now ours),
    rewrite the subnet chains, add the owner's elements."""
    cmds: list[dict] = [] if skeleton_ok(st) else skeleton()
    new = {(r.version, str(r.source)) for r in rules}
    losers = {c for v, elems in _sources(st).items() for k, (_t, c) in elems.items()
              if (v, k) in new and c != owner.tag}
    cmds += _drop_elements(st, {owner.tag}, new)
    for (h, f), comment in sorted(st.owned.items()):
        if comment in losers:
            cmds.append({"delete": {"element": _obj(name=OWNED, elem=[{"concat": [h, f]}])}})
    return cmds + subnet_chains(rules) + owner_objects(owner, rules, "add")


def plan_del_exact(owner: Owner, st: "Listing") -> list[dict]:
    """DEL from a listing: every element commented with the owner's tag, then the chains
    nothing jumps to any more."""
    return _drop_elements(st, {owner.tag}) + _unused_chains(st, {owner.tag})


def plan_gc(network: str, keep: set[tuple[str, str]], st: "Listing") -> list[dict]:
    """The elements of ``network``'s owners not in ``keep``, then unused chains."""
    net, kept = network_part(network), kept_tags(network, keep)
    comments = {c for elems in _sources(st).values() for _t, c in elems.values()}
    comments |= set(st.owners.values()) | set(st.owned.values())
    doomed = {c for c in comments if gc_doomed(c, net, kept)}
    return _drop_elements(st, doomed) + _unused_chains(st, doomed)


def check_problems(owner: Owner, rules: list[MasqRule], st: "Listing") -> list[str]:
    """What is missing for ``rules`` of ``owner`` in the listed table (empty: all there)."""
    if not skeleton_ok(st):
        return [f"table {FAMILY} {TABLE} lacks its maps, sets or base chain dispatch rules"]
    problems = []
    if st.owners.get(owner_key(owner)) != owner.tag:
        problems.append(f"{OWNERS} element of {owner.tag} is missing")
    for r in rules:
        target, comment = st.maps.get(MAPS[r.version], {}).get(str(r.source), (None, ""))
        c = subnet_chain(r)
        if target != c or comment != owner.tag:
            problems.append(f"{MAPS[r.version]} element {r.source} -> {c} is missing")
        elif (r.version, r.subnet) not in {subnet_rule_meaning(x) for x in st.chains.get(c, [])}:
            problems.append(f"masquerade rule for {r.subnet} (chain {c}, for {r.source}) is missing")
    return problems


# ---- the feature ----

class NftMasquerade(Masquerade):
    """Masquerading in table ``inet cnipy_nat``, run through the backend's ``nft``."""

    __slots__ = ("nft",)

    def __init__(self, nft: Nft) -> None:
        self.nft = nft

    def _apply(self, cmds: list[dict]) -> tuple[int, bytes, str]:
        return self.nft.run_batch(batch(cmds))

    def _fail(self, rc: int, err: bytes, request: str) -> CNIError:
        return self.nft.batch_error(rc, err, request)

    def _state(self) -> "Listing":
        """Our table as listed; empty when it does not exist."""
        return _read(self.nft) or parse_listing({})

    def add(self, owner: Owner, rules: list[MasqRule]) -> None:
        rules = normalize(rules)
        with Lock(LOCK_NAME):
            if not rules:
                self._delete(owner, None)
                return
            rc, err, req = self._apply(plan_add(owner, rules))
            if rc != 0 and ENOENT in err:  # first owner of this subnet: its chain goes in with the elements
                rc, err, req = self._apply(subnet_chains(rules, fresh=True) + owner_objects(owner, rules))
            if rc != 0 and ENOENT in err:  # no table yet (or the skeleton was damaged)
                rc, err, req = self._apply(plan_add(owner, rules, init=True))
            if rc != 0 and EEXIST in err:  # re-ADD, or an address held by another owner
                rc, err, req = self._apply(plan_replace(owner, rules, self._state()))
            if rc != 0:
                raise self._fail(rc, err, req)

    def delete(self, owner: Owner, rules: list[MasqRule] | None = None) -> None:
        known = None
        if rules:
            try:
                known = normalize(rules)
            except CNIError:  # rules no ADD of ours was given (one source, two subnets): read instead
                known = None
        with Lock(LOCK_NAME):
            self._delete(owner, known)

    def _delete(self, owner: Owner, rules: list[MasqRule] | None) -> None:
        fast = (lambda drop: plan_del_fast(owner, rules, drop)) if rules else None
        run_delete(self._apply, self._fail, fast, lambda: plan_del_exact(owner, self._state()))

    def check(self, owner: Owner, rules: list[MasqRule]) -> None:
        problems = check_problems(owner, normalize(rules), self._state())
        if problems:
            raise CNIError(NOT_FOUND, f"nftables masquerade for {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            st = _read(self.nft)
            if st is None:
                return  # no table: nothing we installed is there
            cmds = plan_gc(network, keep, st)
            if cmds:
                rc, err, req = self._apply(cmds)
                if rc != 0:
                    raise self._fail(rc, err, req)
