"""nftables backend: ``nft -j -f -`` with one JSON batch (one atomic transaction) per change.

Layout, all in our own table ``inet cnipy_nat`` (never the reference's
``cni_plugins_masquerade``)::

    map src4 { type ipv4_addr : verdict }        # container source -> jump to its owner chain
    map src6 { type ipv6_addr : verdict }        #   (element comment = owner tag)
    chain postrouting { type nat hook postrouting priority srcnat; policy accept;
        ip saddr vmap @src4
        ip6 saddr vmap @src6 }
    chain CNIPY-<22 hex of sha256(tag)> {        # one per owner
        ip saddr S ip daddr != SUBNET ip daddr != 224.0.0.0/4 masquerade comment "<tag>" }

Why a verdict map plus a chain per owner rather than one set of sources and one set of
``saddr . daddr`` intervals: a packet still does one hash lookup and then the owner's one or
two rules, an ADD still touches a constant number of objects, and in addition DEL reads only
the owner's chain (``nft list chain``, found by name from the tag), never a listing of every
container's rules. A set of intervals would also make ``nft`` fetch all its elements on every
ADD (userspace overlap checks), and DEL would have to list it. (nft 1.0.6 still fetches the
maps' elements into its cache for ``list chain``, so a DEL read grows from ~5 ms with one
owner to ~12 ms with 500; listing the whole table would take ~150 ms there.)

ADD is one exec when the owner is new: ``create chain`` + rules + ``create element``, which
fail with EEXIST if the owner (or another owner holding the same address) already has
state. Only then does ADD read the owner's chain and the maps and send an exact
replacement (the slow path: re-ADD, or an address taken over from an owner whose DEL never
came; the previous holder's rule for that address goes in the same transaction). The
table, maps and base chain are created with ``add`` in the same transaction as the first
owner (when the fast path meets ENOENT); the base chain's two rules are not idempotent, so
that transaction flushes and refills the base chain, and ordinary ADDs leave it alone (a
transaction that deletes anything costs an RCU grace period, ~10-15 ms on this VM).

Invariant kept under the backend lock: a map element S points at chain C iff C has the rule
for S. DEL relies on it to delete elements by key without listing the maps; if the kernel
says otherwise (ENOENT/EBUSY: someone edited our table), DEL re-reads and deletes exactly.
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError
from cnilib.firewall import _exec
from cnilib.firewall.base import (MISSING, Backend, Lock, Owner, gc_doomed, is_owner_chain, kept_tags,
                                  network_part)
from cnilib.firewall.rules import MULTICAST, MasqRule, normalize
from cnilib.ip import Net, parse_ip

FAMILY = "inet"
TABLE = "cnipy_nat"
BASE_CHAIN = "postrouting"
MAPS = {4: "src4", 6: "src6"}
_KEY_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_PROTO = {4: "ip", 6: "ip6"}
_VERSION_OF = {"ip": 4, "ip6": 6}
LOCK_NAME = "cnipy-nft.lock"
ENOENT = b"No such file or directory"
EEXIST = b"File exists"
EBUSY = b"Device or resource busy"


# ---- JSON requests (pure: the unit tests compare them verbatim) ----

def _obj(**kw: object) -> dict:
    return {"family": FAMILY, "table": TABLE, **kw}


def _payload(version: int, field: str) -> dict:
    return {"payload": {"protocol": _PROTO[version], "field": field}}


def _prefix(net: Net) -> dict:
    return {"prefix": {"addr": str(net.network), "len": net.prefixlen}}


def rule_expr(r: MasqRule) -> list[dict]:
    """``ip saddr S ip daddr != SUBNET ip daddr != MULTICAST masquerade``, as nft lists it."""
    v = r.version
    return [
        {"match": {"op": "==", "left": _payload(v, "saddr"), "right": str(r.source)}},
        {"match": {"op": "!=", "left": _payload(v, "daddr"), "right": _prefix(r.subnet)}},
        {"match": {"op": "!=", "left": _payload(v, "daddr"), "right": _prefix(r.multicast)}},
        {"masquerade": None},
    ]


def dispatch_expr(version: int) -> list[dict]:
    """The base chain's rule: look the source up in the family's verdict map."""
    return [{"vmap": {"key": _payload(version, "saddr"), "data": "@" + MAPS[version]}}]


def skeleton() -> list[dict]:
    """Table, maps and base chain (idempotent ``add``), base chain refilled (flush + 2 rules)."""
    cmds: list[dict] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for v in (4, 6):
        cmds.append({"add": {"map": _obj(name=MAPS[v], type=_KEY_TYPE[v], map="verdict")}})
    cmds.append({"add": {"chain": _obj(name=BASE_CHAIN, type="nat", hook="postrouting", prio=100,
                                       policy="accept")}})
    cmds.append({"flush": {"chain": _obj(name=BASE_CHAIN)}})
    for v in (4, 6):
        cmds.append({"add": {"rule": _obj(chain=BASE_CHAIN, expr=dispatch_expr(v))}})
    return cmds


def owner_objects(owner: Owner, rules: list[MasqRule], create: bool) -> list[dict]:
    """The owner's chain, its rules and its map elements. ``create`` makes the transaction
    fail (EEXIST) when the chain or an element already exists; otherwise the chain is
    flushed and refilled (the caller deletes conflicting elements first)."""
    verb = "create" if create else "add"
    chain = owner.chain
    cmds: list[dict] = [{verb: {"chain": _obj(name=chain)}}]
    if not create:
        cmds.append({"flush": {"chain": _obj(name=chain)}})
    for r in rules:
        cmds.append({"add": {"rule": _obj(chain=chain, comment=owner.tag, expr=rule_expr(r))}})
    for r in rules:
        elem = [{"elem": {"val": str(r.source), "comment": owner.tag}}, {"jump": {"target": chain}}]
        cmds.append({verb: {"element": _obj(name=MAPS[r.version], elem=[elem])}})
    return cmds


def plan_add(owner: Owner, rules: list[MasqRule], init: bool = False) -> list[dict]:
    """ADD's fast path: the owner's objects with ``create``; with ``init`` the skeleton too."""
    return (skeleton() if init else []) + owner_objects(owner, rules, create=True)


def batch(cmds: list[dict]) -> bytes:
    """The stdin of ``nft -j -f -``."""
    from cnilib.jsonio import dumps

    return dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}] + cmds}, indent=False).encode()


# ---- reading what nft lists ----

class State:
    """The parts of ``nft -j list table|chain`` output we act on.

    ``chains``: name -> its rule objects (as listed, with ``handle``); ``maps``: version ->
    element key (our text form of the address) -> (jump target or None, comment);
    ``base``: the base chain object or None."""

    __slots__ = ("chains", "maps", "base")

    def __init__(self) -> None:
        self.chains: dict[str, list[dict]] = {}
        self.maps: dict[int, dict[str, tuple[str | None, str]]] = {}
        self.base: dict | None = None

    def skeleton_ok(self) -> bool:
        """Maps exist and the base chain is ours, holding exactly the two dispatch rules."""
        if set(self.maps) != {4, 6} or self.base is None:
            return False
        if (self.base.get("type"), self.base.get("hook")) != ("nat", "postrouting"):
            return False
        return [r.get("expr") for r in self.chains.get(BASE_CHAIN, [])] == [dispatch_expr(4), dispatch_expr(6)]


def _key(text: object) -> str | None:
    try:
        return str(parse_ip(text))  # type: ignore[arg-type]
    except ValueError:
        return None


def parse_listing(doc: object, st: State | None = None) -> State:
    """A State from nft's JSON listing (anything not in our table is ignored); with ``st``,
    the listing is merged into it (several small listings instead of the whole table)."""
    st = State() if st is None else st
    items = doc.get("nftables", []) if isinstance(doc, dict) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        chain, rule, m = item.get("chain"), item.get("rule"), item.get("map")
        if isinstance(chain, dict) and chain.get("table") == TABLE and chain.get("family") == FAMILY:
            st.chains[chain.get("name", "")] = []  # a chain object precedes its rules: re-read = reset
            if chain.get("name") == BASE_CHAIN:
                st.base = chain
        elif isinstance(rule, dict) and rule.get("table") == TABLE and rule.get("family") == FAMILY:
            st.chains.setdefault(rule.get("chain", ""), []).append(rule)
        elif isinstance(m, dict) and m.get("table") == TABLE and m.get("family") == FAMILY:
            version = {"src4": 4, "src6": 6}.get(m.get("name", ""))
            if version is None:
                continue
            verdict_map_elements(m, _key, st.maps.setdefault(version, {}))
    return st


def verdict_map_elements(m: dict, key_of, into: dict) -> dict:
    """The elements of a listed verdict map as ``key_of(listed key) -> (jump target or None,
    comment)``, added to ``into``; keys ``key_of`` maps to None are skipped."""
    for pair in m.get("elem", []) or []:
        if not (isinstance(pair, list) and len(pair) == 2):
            continue
        k, data = pair
        comment = ""
        if isinstance(k, dict) and isinstance(k.get("elem"), dict):
            comment = k["elem"].get("comment", "")
            k = k["elem"].get("val")
        key = key_of(k)
        target = data.get("jump", {}).get("target") if isinstance(data, dict) else None
        if key is not None:
            into[key] = (target, comment)
    return into


def rule_source(rule: dict) -> tuple[int, str] | None:
    """(version, address) of a rule's ``saddr ==`` match, or None."""
    for e in rule.get("expr", []):
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or m.get("op") != "==":
            continue
        p = m.get("left", {}).get("payload", {}) if isinstance(m.get("left"), dict) else {}
        if p.get("field") == "saddr" and p.get("protocol") in _VERSION_OF:
            key = _key(m.get("right"))
            if key is not None:
                return _VERSION_OF[p["protocol"]], key
    return None


def _net(right: object) -> Net:
    """A listed prefix; nft lists a full-length prefix as a plain address."""
    if isinstance(right, dict):
        return Net(parse_ip(right["prefix"]["addr"]), int(right["prefix"]["len"]))
    ip = parse_ip(right)  # type: ignore[arg-type]
    return Net(ip, ip.bits)


def rule_meaning(rule: dict) -> MasqRule | None:
    """The MasqRule a listed rule implements, or None unless it is exactly our form."""
    expr = rule.get("expr")
    if not isinstance(expr, list) or len(expr) != 4 or expr[3] != {"masquerade": None}:
        return None
    try:
        m = [e["match"] for e in expr[:3]]
        version = _VERSION_OF[m[0]["left"]["payload"]["protocol"]]
        fields = [(x["op"], x["left"]) for x in m]
        if fields != [("==", _payload(version, "saddr")), ("!=", _payload(version, "daddr")),
                      ("!=", _payload(version, "daddr"))]:
            return None
        source, subnet, multicast = parse_ip(m[0]["right"]), _net(m[1]["right"]), _net(m[2]["right"])
        if source.version != version or multicast != MULTICAST[version]:
            return None
        return MasqRule(source, subnet)
    except (KeyError, TypeError, ValueError):
        return None


def plan_replace(owner: Owner, rules: list[MasqRule], st: State) -> list[dict]:
    """ADD's slow path: delete the owner's old elements and any element (and its rule in
    another owner's chain) holding one of the new sources, then refill the owner's chain."""
    cmds: list[dict] = [] if st.skeleton_ok() else skeleton()
    new = {(r.version, str(r.source)) for r in rules}
    for v, elems in sorted(st.maps.items()):
        for key, (target, _comment) in elems.items():
            if target == owner.chain or (v, key) in new:
                cmds.append({"delete": {"element": _obj(name=MAPS[v], elem=[key])}})
    for name, rlist in st.chains.items():
        if name in (owner.chain, BASE_CHAIN):
            continue
        for rule in rlist:
            if rule_source(rule) in new and "handle" in rule:
                cmds.append({"delete": {"rule": _obj(chain=name, handle=rule["handle"])}})
    return cmds + owner_objects(owner, rules, create=False)


def plan_del(owner: Owner, chain_rules: list[dict]) -> list[dict]:
    """DEL from the owner's chain alone: its sources' elements (by the invariant they point
    at this chain), then the chain."""
    cmds: list[dict] = []
    for src in sorted({s for s in map(rule_source, chain_rules) if s is not None}):
        cmds.append({"delete": {"element": _obj(name=MAPS[src[0]], elem=[src[1]])}})
    return cmds + [{"flush": {"chain": _obj(name=owner.chain)}}, {"delete": {"chain": _obj(name=owner.chain)}}]


def _drop_chains(names: set[str], st: State) -> list[dict]:
    """Delete ``names`` and every map element jumping to them."""
    cmds: list[dict] = []
    for v, elems in sorted(st.maps.items()):
        for key, (target, _comment) in elems.items():
            if target in names:
                cmds.append({"delete": {"element": _obj(name=MAPS[v], elem=[key])}})
    for name in sorted(names):
        cmds += [{"flush": {"chain": _obj(name=name)}}, {"delete": {"chain": _obj(name=name)}}]
    return cmds


def plan_del_exact(owner: Owner, st: State) -> list[dict]:
    """DEL from a full listing (when the fast DEL met state that breaks the invariant)."""
    return _drop_chains({owner.chain}, st) if owner.chain in st.chains else []


def plan_gc(network: str, keep: set[tuple[str, str]], st: State) -> list[dict]:
    """From the maps and the chain list: the chains that elements tagged for ``network``
    but not kept jump to, and owner chains no element jumps to (dead: never reached, e.g.
    every address of the owner passed to other owners)."""
    net, kept = network_part(network), kept_tags(network, keep)
    referenced, doomed = set(), set()
    for elems in st.maps.values():
        for target, comment in elems.values():
            referenced.add(target)
            if target and gc_doomed(comment, net, kept):
                doomed.add(target)
    doomed |= {c for c in st.chains if is_owner_chain(c) and c not in referenced}
    return _drop_chains(doomed, st)


def check_problems(owner: Owner, rules: list[MasqRule], st: State) -> list[str]:
    """What is missing for ``rules`` of ``owner`` in the listed table (empty: all there)."""
    if not st.skeleton_ok():
        return [f"table {FAMILY} {TABLE} lacks its maps or base chain dispatch rules"]
    have = st.chains.get(owner.chain)
    if have is None:
        return [f"chain {owner.chain} of {owner.tag} is missing"]
    problems = []
    present = {rule_meaning(r) for r in have if r.get("comment") == owner.tag}
    for r in rules:
        if r not in present:
            problems.append(f"masquerade rule for {r.source} (not to {r.subnet}) is missing")
        target = st.maps.get(r.version, {}).get(str(r.source), (None, ""))[0]
        if target != owner.chain:
            problems.append(f"{MAPS[r.version]} element {r.source} -> {owner.chain} is missing")
    return problems


# ---- the backend ----

class NftBackend(Backend):
    """nftables through the ``nft`` command and its JSON interface."""

    name = "nftables"

    def __init__(self) -> None:
        self._reason: str | None = ""  # "" = not probed yet

    def _nft(self) -> str:
        path = _exec.find_tool("nft")
        if path is None:
            raise CNIError(NOT_AVAILABLE, "nftables backend: nft not found in PATH or /usr/sbin, /sbin")
        return path

    def available(self) -> str | None:
        if self._reason == "":
            path = _exec.find_tool("nft")
            if path is None:
                self._reason = "nft not found in PATH or /usr/sbin, /sbin"
            else:
                # Any cheap request that reaches the kernel: a table name nobody uses (listing
                # ours would cost O(rules)). ENOENT means nft and nf_tables work.
                rc, _, err = _exec.run([path, "list", "table", FAMILY, "cnipy_probe"])
                ok = rc == 0 or ENOENT in err
                self._reason = None if ok else f"nft does not work here: {err.decode(errors='replace').strip()}"
        return self._reason

    def _batch_argv(self, json: bool) -> list[str]:
        # "-f /proc/self/fd/0" rather than "-f -": nft opens /dev/stdin for "-", a symlink
        # that minimal systems (a bare devtmpfs, some initramfs and VM setups) lack.
        return [self._nft()] + (["-j"] if json else []) + ["-f", "/proc/self/fd/0"]

    def run_batch(self, data: bytes, json: bool = True) -> tuple[int, bytes, str]:
        """Feed one batch (JSON, or nft's text syntax) to ``nft -f``: (status, stderr, the
        request as text for error details). One batch is one atomic transaction."""
        rc, _, err = _exec.run(self._batch_argv(json), data)
        return rc, err, data.decode()

    def batch_error(self, rc: int, err: bytes, request: str, json: bool = True) -> CNIError:
        """The CNIError for a failed ``run_batch``."""
        return _exec.tool_error(self._batch_argv(json), rc, err, request)

    def list_json(self, *what: str) -> object | None:
        """``nft -j list <what>`` parsed; None when it does not exist (ENOENT).

        Reads are kept small on purpose: at 500 owners listing the whole table costs ~150 ms
        (nft prints every rule), one chain or one map ~10 ms."""
        from cnilib.jsonio import JSONError, loads

        argv = [self._nft(), "-j", "list", *what]
        rc, out, err = _exec.run(argv)
        if rc != 0:
            if ENOENT in err:
                return None
            raise _exec.tool_error(argv, rc, err)
        try:
            return loads(out)
        except JSONError as e:
            raise CNIError(_exec.TOOL_FAILED, f"nft -j list {' '.join(what)}: unreadable output: {e}") from None

    def _apply(self, cmds: list[dict]) -> tuple[int, bytes, str]:
        return self.run_batch(batch(cmds))

    def _fail(self, rc: int, err: bytes, request: str) -> CNIError:
        return self.batch_error(rc, err, request)

    def _read(self, st: State, *what: str) -> bool:
        """Merge ``nft -j list <what>`` into ``st``; False when it does not exist."""
        doc = self.list_json(*what)
        if doc is None:
            return False
        parse_listing(doc, st)
        return True

    def _read_owner(self, owner: Owner, st: State | None = None) -> State:
        """The owner's chain and both maps (what an exact replace or delete needs)."""
        st = State() if st is None else st
        self._read(st, "chain", FAMILY, TABLE, owner.chain)
        for v in (4, 6):
            self._read(st, "map", FAMILY, TABLE, MAPS[v])
        return st

    def hostports(self):
        from cnilib.firewall.nft_hostport import NftHostPorts

        return NftHostPorts(self)

    def add_masquerade(self, owner: Owner, rules: list[MasqRule]) -> None:
        rules = normalize(rules)
        with Lock(LOCK_NAME):
            if not rules:
                self._delete(owner)
                return
            rc, err, req = self._apply(plan_add(owner, rules))
            if rc != 0 and ENOENT in err:  # first owner here (or the skeleton was damaged)
                rc, err, req = self._apply(plan_add(owner, rules, init=True))
            if rc != 0 and EEXIST in err:  # re-ADD, or an address held by another owner
                rc, err, req = self._apply(plan_replace(owner, rules, self._replace_state(owner, rules)))
            if rc != 0:
                raise self._fail(rc, err, req)

    def _replace_state(self, owner: Owner, rules: list[MasqRule]) -> State:
        """The owner's chain, the maps, and the chains of owners holding one of ``rules``'
        sources (their rule for it goes). The base chain is not read: plan_replace then
        refills it, which costs nothing extra in a transaction that deletes anyway."""
        st = self._read_owner(owner)
        new = {(r.version, str(r.source)) for r in rules}
        holders = {t for v, elems in st.maps.items() for k, (t, _) in elems.items()
                   if (v, k) in new and t and t != owner.chain}
        for chain in sorted(holders):
            self._read(st, "chain", FAMILY, TABLE, chain)
        return st

    def del_masquerade(self, owner: Owner) -> None:
        with Lock(LOCK_NAME):
            self._delete(owner)

    def _delete(self, owner: Owner) -> None:
        st = State()
        if not self._read(st, "chain", FAMILY, TABLE, owner.chain):
            return
        rc, err, req = self._apply(plan_del(owner, st.chains.get(owner.chain, [])))
        if rc != 0 and (ENOENT in err or EBUSY in err):  # state changed behind our back
            cmds = plan_del_exact(owner, self._read_owner(owner))
            if not cmds:
                return
            rc, err, req = self._apply(cmds)
        if rc != 0:
            raise self._fail(rc, err, req)

    def check_masquerade(self, owner: Owner, rules: list[MasqRule]) -> None:
        st = State()
        if self._read(st, "chain", FAMILY, TABLE, BASE_CHAIN):
            self._read_owner(owner, st)
        problems = check_problems(owner, normalize(rules), st)
        if problems:
            raise CNIError(MISSING, f"nftables masquerade for {owner.tag}: {'; '.join(problems)}")

    def gc_masquerade(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            st = State()
            if not any([self._read(st, "map", FAMILY, TABLE, MAPS[v]) for v in (4, 6)]):
                return  # no table: nothing we installed is there
            self._read(st, "chains", FAMILY)
            cmds = plan_gc(network, keep, st)
            if cmds:
                rc, err, req = self._apply(cmds)
                if rc != 0:
                    raise self._fail(rc, err, req)
