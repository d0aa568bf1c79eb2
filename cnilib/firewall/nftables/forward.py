"""Forwarding rules with nftables: the firewall plugin's semantics in a table of our own,
``nft -j -f`` with one JSON batch (one atomic transaction) per change.

Layout (table ``inet cnipy_firewall``)::

    set allow4 { type ipv4_addr }               # container addresses (comment = owner tag)
    set allow6 { type ipv6_addr }
    set owners { type ipv6_addr }               # H = 128-bit hash of the owner tag (comment = tag)
    set isolating { type ifname }               # bridges with ingressPolicy same-bridge or isolated
    set bridges   { type ifname . ifname }      # BR . BR of each isolating bridge
    set isolated  { type ifname . ifname }      # BR . BR of each isolated bridge
    set bridge_users { type ipv6_addr . ifname . ifname }   # H . BR . policy per attachment
                                                # with an ingress policy (comment = tag)
    chain forward { type filter hook forward priority filter; policy accept;
        jump isolation
        jump CNI-FORWARD }
    chain isolation {
        iifname . oifname @isolated drop                                   # isolated: not even within
        iifname @isolating oifname @isolating iifname . oifname != @bridges drop }   # between two
    chain CNI-FORWARD {
        jump CNI-ADMIN                                                      # the admin's rules first
        ip daddr @allow4 ct state established,related accept
        ip saddr @allow4 accept
        ip6 daddr @allow6 ct state established,related accept
        ip6 saddr @allow6 accept }
    chain CNI-ADMIN { }                                                     # the administrator's

The same semantics as the iptables layout within nftables, with one difference nftables
imposes: an ``accept`` ends the packet's walk through this table only, so a drop in
another table's forward chain (iptables-nft's ``FORWARD`` policy DROP included) still
drops. A host that wants forwarded traffic dropped unless a container's rules accept it
sets that policy on our base chain (``nft chain inet cnipy_firewall forward '{ policy drop; }'``),
which we keep: the chain is never re-created with a policy. Administrators' rules go in
the admin chain (``iptablesAdminChainName``, default ``CNI-ADMIN``), never written here.

An attachment is elements only: its addresses in ``allow4``/``allow6`` and its marker in
``owners``, each commented with its tag (an isolation-only spec, the firewalld backend's
ingress policy, has no address there: its marker and ``bridge_users`` element only).
ADD is one exec when the table exists (``create`` of the elements: a re-ADD fails on
the marker, an address another owner holds on its element; then the table is read and
the owner's state replaced exactly, the address passing to this owner). The bridge's
isolation elements are shared by its attachments; each attachment with an ingress policy
records its bridge and policy in ``bridge_users``.
DEL reads the table and deletes the elements commented with the owner's tag (prevResult
not needed) and, in the same transaction, the isolation elements of its bridge when no
other ``bridge_users`` element (any network) names it (``isolated`` when none asks for
``isolated``); GC likewise for the attachments it drops.
"""

from __future__ import annotations

from cnilib.errors import NOT_FOUND, CNIError
from cnilib.firewall.base import Forward, Lock
from cnilib.firewall.forward import DEFAULT_ADMIN_CHAIN, ForwardSpec
from cnilib.firewall.nftables.elements import OWNERS, hash128
from cnilib.firewall.nftables.listing import Listing, read_table
from cnilib.firewall.nftables.runner import EEXIST, ENOENT, Nft
from cnilib.owner import Owner, gc_doomed, kept_tags, network_part

FAMILY = "inet"
TABLE = "cnipy_firewall"
LOCK_NAME = "cnipy-nft-firewall.lock"
BASE = "forward"
ISOLATION = "isolation"
CNI_FORWARD = "CNI-FORWARD"
ALLOW = {4: "allow4", 6: "allow6"}
ISOLATING, BRIDGES, ISOLATED = "isolating", "bridges", "isolated"
USERS = "bridge_users"  # H . bridge . policy, comment = the owner's tag
_PROTO = {4: "ip", 6: "ip6"}
_KEY_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}


def _obj(**kw: object) -> dict:
    return {"family": FAMILY, "table": TABLE, **kw}


def owner_key(owner: Owner) -> str:
    return hash128("forward-owner:" + owner.tag)


# ---- rules, as nft lists them (the requests use the same form) ----

def _jump(target: str) -> list[dict]:
    return [{"jump": {"target": target}}]


_IIF, _OIF = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}


def base_rules() -> list[list[dict]]:
    return [_jump(ISOLATION), _jump(CNI_FORWARD)]


def isolation_rules() -> list[list[dict]]:
    pair = {"concat": [_IIF, _OIF]}
    return [
        [{"match": {"op": "==", "left": pair, "right": "@" + ISOLATED}}, {"drop": None}],
        [{"match": {"op": "==", "left": _IIF, "right": "@" + ISOLATING}},
         {"match": {"op": "==", "left": _OIF, "right": "@" + ISOLATING}},
         {"match": {"op": "!=", "left": pair, "right": "@" + BRIDGES}}, {"drop": None}],
    ]


def _in_allow(version: int, field: str) -> dict:
    """``ip[6] saddr|daddr @allow4|6``."""
    return {"match": {"op": "==", "left": {"payload": {"protocol": _PROTO[version], "field": field}},
                      "right": "@" + ALLOW[version]}}


def accept_rules() -> list[list[dict]]:
    """CNI-FORWARD's accept rules after the admin jumps, both families."""
    out = []
    for v in (4, 6):
        out.append([_in_allow(v, "daddr"), {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                                                      "right": ["established", "related"]}}, {"accept": None}])
        out.append([_in_allow(v, "saddr"), {"accept": None}])
    return out


def admin_chains(st: Listing | None) -> list[str]:
    """The admin chains CNI-FORWARD jumps to now, in order."""
    if st is None:
        return []
    return [r["expr"][0]["jump"]["target"] for r in st.chains.get(CNI_FORWARD, [])
            if isinstance(r.get("expr"), list) and len(r["expr"]) == 1 and isinstance(r["expr"][0], dict)
            and "jump" in r["expr"][0]]


def forward_rules(admins: list[str]) -> list[list[dict]]:
    return [_jump(a) for a in admins] + accept_rules()


def _exprs(st: Listing, chain: str) -> list:
    return [r.get("expr") for r in st.chains.get(chain, [])]


# ---- requests ----

def skeleton(st: Listing | None, admin: str) -> list[dict]:
    """Table, sets and chains (idempotent ``add``; the base chain without a policy, so an
    administrator's stays), and each of our chains refilled unless it holds exactly its
    rules. The admin chain is created if missing and jumped to first, never written."""
    cmds: list[dict] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for v in (4, 6):
        cmds.append({"add": {"set": _obj(name=ALLOW[v], type=_KEY_TYPE[v])}})
    cmds.append({"add": {"set": _obj(name=OWNERS, type="ipv6_addr")}})
    cmds.append({"add": {"set": _obj(name=ISOLATING, type="ifname")}})
    for name in (BRIDGES, ISOLATED):
        cmds.append({"add": {"set": _obj(name=name, type=["ifname", "ifname"])}})
    cmds.append({"add": {"set": _obj(name=USERS, type=["ipv6_addr", "ifname", "ifname"])}})
    cmds.append({"add": {"chain": _obj(name=BASE, type="filter", hook="forward", prio=0)}})
    for name in (ISOLATION, CNI_FORWARD, admin):
        cmds.append({"add": {"chain": _obj(name=name)}})
    present = admin_chains(st)
    admins = present if admin in present else [admin] + present
    for chain, rules in ((BASE, base_rules()), (ISOLATION, isolation_rules()), (CNI_FORWARD, forward_rules(admins))):
        if st is not None and _exprs(st, chain) == rules:
            continue
        cmds.append({"flush": {"chain": _obj(name=chain)}})
        cmds += [{"add": {"rule": _obj(chain=chain, expr=r)}} for r in rules]
    return cmds


def owner_elements(owner: Owner, spec: ForwardSpec, verb: str = "create") -> list[dict]:
    """The owner's marker and addresses (``create``: EEXIST when one exists), and the
    bridge's isolation elements (always ``add``: shared by the bridge's attachments)."""
    tag = owner.tag
    cmds: list[dict] = [{verb: {"element": _obj(name=OWNERS, elem=[{"elem": {"val": owner_key(owner),
                                                                            "comment": tag}}])}}]
    for ip in spec.addresses if spec.accept else ():  # isolation alone: no address accepted
        cmds.append({verb: {"element": _obj(name=ALLOW[ip.version], elem=[{"elem": {"val": str(ip),
                                                                                    "comment": tag}}])}})
    if spec.bridge:
        br = spec.bridge
        cmds.append({verb: {"element": _obj(name=USERS, elem=[{"elem": {
            "val": {"concat": [owner_key(owner), br, spec.policy]}, "comment": tag}}])}})
        cmds.append({"add": {"element": _obj(name=ISOLATING, elem=[br])}})
        cmds.append({"add": {"element": _obj(name=BRIDGES, elem=[{"concat": [br, br]}])}})
        if spec.policy == "isolated":
            cmds.append({"add": {"element": _obj(name=ISOLATED, elem=[{"concat": [br, br]}])}})
    return cmds


def drop_elements(st: Listing, doomed: set[str], extra: set[tuple[int, str]] = frozenset()) -> list[dict]:
    """Delete the elements commented with one of ``doomed`` (and the addresses in ``extra``,
    whoever holds them)."""
    cmds: list[dict] = []
    for v, name in ALLOW.items():
        for key, comment in sorted(st.sets.get(name, {}).items()):
            if comment in doomed or (v, key) in extra:
                cmds.append({"delete": {"element": _obj(name=name, elem=[key])}})
    for key, comment in sorted(st.owners.items()):
        if comment in doomed:
            cmds.append({"delete": {"element": _obj(name=OWNERS, elem=[key])}})
    for key, comment in sorted(_users(st).items()):
        if comment in doomed:
            cmds.append({"delete": {"element": _obj(name=USERS, elem=[{"concat": list(key)}])}})
    return cmds


def _users(st: Listing) -> dict[tuple[str, str, str], str]:
    """``bridge_users``: (H, bridge, policy) -> the owner's tag."""
    return {k: c for k, c in st.sets.get(USERS, {}).items() if isinstance(k, tuple) and len(k) == 3}


def release_isolation(st: Listing, doomed: set[str], staying: tuple[str, str] | None = None) -> list[dict]:
    """Delete the isolation elements of the bridges the ``doomed`` owners used that no
    other ``bridge_users`` element (any network) nor ``staying`` (bridge, policy: what is
    being added) still uses; a still-used bridge's ``isolated`` pair goes when none of its
    users asks for ``isolated``."""
    released: set[str] = set()
    users: dict[str, set[str]] = {}
    for (_, br, policy), comment in _users(st).items():
        if comment in doomed:
            released.add(br)
        else:
            users.setdefault(br, set()).add(policy)
    if staying is not None:
        users.setdefault(staying[0], set()).add(staying[1])
    cmds: list[dict] = []
    for br in sorted(released):
        policies = users.get(br, set())
        pair = (br, br)
        if not policies:
            if br in st.sets.get(ISOLATING, {}):
                cmds.append({"delete": {"element": _obj(name=ISOLATING, elem=[br])}})
            if pair in st.sets.get(BRIDGES, {}):
                cmds.append({"delete": {"element": _obj(name=BRIDGES, elem=[{"concat": [br, br]}])}})
        if "isolated" not in policies and pair in st.sets.get(ISOLATED, {}):
            cmds.append({"delete": {"element": _obj(name=ISOLATED, elem=[{"concat": [br, br]}])}})
    return cmds


def plan_replace(owner: Owner, spec: ForwardSpec, st: Listing | None) -> list[dict]:
    """ADD's slow path: the skeleton where it is missing or damaged, the owner's old
    elements and its addresses' elements held by others deleted, its elements added."""
    cmds = skeleton(st, spec.admin_chain)
    if st is not None:
        taken = {(ip.version, str(ip)) for ip in spec.addresses} if spec.accept else set()
        cmds += drop_elements(st, {owner.tag}, taken)
        cmds += release_isolation(st, {owner.tag}, (spec.bridge, spec.policy) if spec.bridge else None)
    return cmds + owner_elements(owner, spec, "add")


def plan_gc(network: str, keep: set[tuple[str, str]], st: Listing) -> list[dict]:
    net, kept = network_part(network), kept_tags(network, keep)
    comments = ({c for name in ALLOW.values() for c in st.sets.get(name, {}).values()} | set(st.owners.values())
                | set(_users(st).values()))
    doomed = {c for c in comments if gc_doomed(c, net, kept)}
    return drop_elements(st, doomed) + release_isolation(st, doomed)


def check_problems(owner: Owner, spec: ForwardSpec, st: Listing | None) -> list[str]:
    if st is None:
        return [f"table {FAMILY} {TABLE} is missing"]
    problems = []
    info = st.chain_info.get(BASE, {})
    if (info.get("type"), info.get("hook")) != ("filter", "forward") or _exprs(st, BASE) != base_rules():
        problems.append(f"base chain {BASE} or its jumps are missing")
    if _exprs(st, ISOLATION) != isolation_rules():
        problems.append(f"chain {ISOLATION} lacks its rules")
    fwd = _exprs(st, CNI_FORWARD)
    if spec.admin_chain not in st.chains or _jump(spec.admin_chain) not in fwd:
        problems.append(f"admin chain {spec.admin_chain} or the jump to it is missing")
    if not all(r in fwd for r in accept_rules()):
        problems.append(f"chain {CNI_FORWARD} lacks its accept rules")
    if st.owners.get(owner_key(owner)) != owner.tag:
        problems.append(f"{OWNERS} element of {owner.tag} is missing")
    for ip in spec.addresses if spec.accept else ():
        if st.sets.get(ALLOW[ip.version], {}).get(str(ip), None) != owner.tag:
            problems.append(f"{ALLOW[ip.version]} element {ip} is missing")
    if spec.bridge:
        br = spec.bridge
        if br not in st.sets.get(ISOLATING, {}) or (br, br) not in st.sets.get(BRIDGES, {}):
            problems.append(f"isolation of bridge {br} is missing")
        if (br, spec.policy) not in {(k[1], k[2]) for k, c in _users(st).items() if c == owner.tag}:
            problems.append(f"{USERS} element of {owner.tag} for bridge {br} is missing")
        if spec.policy == "isolated" and (br, br) not in st.sets.get(ISOLATED, {}):
            problems.append(f"isolated policy of bridge {br} is missing")
    return problems


def batch(cmds: list[dict]) -> bytes:
    """The stdin of ``nft -j -f``."""
    from cnilib.jsonio import dumps

    return dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}] + cmds}, indent=False).encode()


# ---- the feature ----

class NftForward(Forward):
    """Forwarding rules in table ``inet cnipy_firewall``, run through the backend's ``nft``."""

    __slots__ = ("nft",)

    def __init__(self, nft: Nft) -> None:
        self.nft = nft

    def _read(self) -> Listing | None:
        return read_table(self.nft, FAMILY, TABLE)

    def _apply(self, cmds: list[dict]) -> None:
        if not cmds:
            return
        rc, err, req = self.nft.run_batch(batch(cmds))
        if rc != 0:
            raise self.nft.batch_error(rc, err, req)

    def add(self, owner: Owner, spec: ForwardSpec) -> None:
        with Lock(LOCK_NAME):
            if spec.admin_chain == DEFAULT_ADMIN_CHAIN:  # the skeleton jumps to it: elements only
                rc, err, _ = self.nft.run_batch(batch(owner_elements(owner, spec)))
                if rc == 0:
                    return
                if ENOENT not in err and EEXIST not in err:
                    raise self.nft.batch_error(rc, err, batch(owner_elements(owner, spec)).decode())
            self._apply(plan_replace(owner, spec, self._read()))

    def delete(self, owner: Owner, spec: ForwardSpec | None = None) -> None:
        with Lock(LOCK_NAME):
            st = self._read()
            if st is not None:
                self._apply(drop_elements(st, {owner.tag}) + release_isolation(st, {owner.tag}))

    def check(self, owner: Owner, spec: ForwardSpec) -> None:
        problems = check_problems(owner, spec, self._read())
        if problems:
            raise CNIError(NOT_FOUND, f"nftables forwarding rules of {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            st = self._read()
            if st is not None:
                self._apply(plan_gc(network, keep, st))
