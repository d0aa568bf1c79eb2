"""cnilib.firewall: both backends against the real kernel inside throwaway namespaces, plus
unit tests of the exact requests each backend sends (no kernel needed).

Kernel tests run every operation through tests/fw_driver.py under ``ip netns exec``, so the
machine's own ruleset is never touched, and read back what ``nft``/``iptables-save`` hold.
The traffic tests build container -- host (router) -- outside namespaces and look at the
source address a TCP server in "outside" sees.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from cnilib.errors import CNIError
from cnilib.firewall import MasqRule, Owner, select
from cnilib.firewall.iptables import masquerade as iptables
from cnilib.firewall.iptables.listing import parse_save, split
from cnilib.firewall.nftables import masquerade as nft
from cnilib.owner import parse_tag
from cnilib.ip import parse_cidr
from tests.helpers import ROOT, Netns, sh

PY = os.path.join(ROOT, ".venv", "bin", "python3")
DRIVER = os.path.join(ROOT, "tests", "fw_driver.py")
BACKENDS = ["nftables", "iptables"]
A = Owner("net1", "c1", "eth0")
B = Owner("net1", "c2", "eth0")


def R(addr: str) -> MasqRule:
    return MasqRule.for_address(parse_cidr(addr))


# =============================== unit tests (no kernel) ===============================

def test_tag_is_readable_and_decodable():
    assert A.tag == "cnipy:net1:c1:eth0"
    assert parse_tag(A.tag) == ("net1", "c1", "eth0")
    assert A.chain == "CNIPY-52958d74ed6aaa2e850bda" and len(A.chain) == 28
    assert parse_tag("cni-bridge:x") is None


def test_tag_hashes_long_or_unsafe_parts_and_stays_under_128_bytes():
    cid = "f" * 64
    o = Owner("n" * 41, cid, 'e"th 0')
    net_part, cid_part, if_part = parse_tag(o.tag)
    assert net_part.startswith("=") and len(net_part) == 17
    assert cid_part == cid  # 64 chars (k8s/docker IDs) stay literal
    assert if_part.startswith("=")
    assert Owner("n" * 41, cid, 'e"th 0').tag == o.tag  # stable
    longest = Owner("n" * 40, cid, "i" * 15)
    assert parse_tag(longest.tag) == ("n" * 40, cid, "i" * 15) and len(longest.tag) == 127
    assert len(Owner("x" * 300, "y" * 300, "z" * 300).tag) <= 128


def test_masq_rule_masks_subnet_and_rejects_conflicts():
    from cnilib.firewall.rules import normalize

    r = R("10.1.2.5/24")
    assert str(r.subnet) == "10.1.2.0/24" and str(r.multicast) == "224.0.0.0/4"
    assert str(R("fd00::5/64").multicast) == "ff00::/8"
    assert normalize([R("fd00::5/64"), r, r]) == [r, R("fd00::5/64")]
    with pytest.raises(CNIError):
        normalize([r, R("10.1.2.5/16")])
    with pytest.raises(ValueError):
        MasqRule(parse_cidr("10.1.2.5/24").ip, parse_cidr("fd00::/64"))


T = {"family": "inet", "table": "cnipy_nat"}


def _elem(name: str, val, comment: str, target: str | None = None, verb: str = "create") -> dict:
    e = {"elem": {"val": val, "comment": comment}}
    return {verb: {"element": dict(T, name=name, elem=[[e, {"jump": {"target": target}}] if target else e])}}


def test_nft_hash_keys_are_stable_ipv6_texts():
    h = nft.owner_key(A)
    assert h == nft.owner_key(Owner("net1", "c1", "eth0")) != nft.owner_key(B)
    assert ":" in h and str(parse_cidr(h + "/128").ip) == h
    assert nft.sources_key([R("10.1.2.5/24"), R("fd00:1::5/64")]) == nft.sources_key([R("fd00:1::5/64"),
                                                                                      R("10.1.2.5/24")])
    assert nft.sources_key([R("10.1.2.5/24")]) != nft.sources_key([R("10.1.2.5/16")])
    assert nft.subnet_chain(R("10.1.2.5/24")) == nft.subnet_chain(R("10.1.2.9/24")) != nft.subnet_chain(
        R("10.1.3.5/24"))
    assert nft.is_subnet_chain(nft.subnet_chain(R("10.1.2.5/24"))) and not nft.is_subnet_chain(A.chain)


def test_nft_add_request_is_elements_only():
    t, h = A.tag, nft.owner_key(A)
    rules = [R("10.1.2.5/24"), R("fd00:1::5/64")]
    sent = json.loads(nft.batch(nft.plan_add(A, rules)))
    assert sent == {"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        _elem("owners", h, t),
        _elem("owned", {"concat": [h, nft.sources_key(rules)]}, t),
        _elem("src4", "10.1.2.5", t, nft.subnet_chain(rules[0])),
        _elem("src6", "fd00:1::5", t, nft.subnet_chain(rules[1])),
    ]}


def test_nft_first_add_creates_skeleton_and_subnet_chain_in_the_same_batch():
    r = R("10.1.2.5/24")
    c = nft.subnet_chain(r)
    cmds = nft.plan_add(A, [r], init=True)
    assert cmds[:9] == [
        {"add": {"table": {"family": "inet", "name": "cnipy_nat"}}},
        {"add": {"map": dict(T, name="src4", type="ipv4_addr", map="verdict")}},
        {"add": {"map": dict(T, name="src6", type="ipv6_addr", map="verdict")}},
        {"add": {"set": dict(T, name="owners", type="ipv6_addr")}},
        {"add": {"set": dict(T, name="owned", type=["ipv6_addr", "ipv6_addr"])}},
        {"add": {"chain": dict(T, name="postrouting", type="nat", hook="postrouting", prio=100, policy="accept")}},
        {"flush": {"chain": dict(T, name="postrouting")}},
        {"add": {"rule": dict(T, chain="postrouting", expr=[
            {"vmap": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "data": "@src4"}}])}},
        {"add": {"rule": dict(T, chain="postrouting", expr=[
            {"vmap": {"key": {"payload": {"protocol": "ip6", "field": "saddr"}}, "data": "@src6"}}])}},
    ]
    assert cmds[9:12] == [
        {"add": {"chain": dict(T, name=c)}}, {"flush": {"chain": dict(T, name=c)}},
        {"add": {"rule": dict(T, chain=c, expr=[
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": {"prefix": {"addr": "10.1.2.0", "len": 24}}}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}},
            {"masquerade": None}])}}]
    assert cmds[12:] == nft.plan_add(A, [r])


def _listing(*owners_rules) -> dict:
    """What ``nft -j list table inet cnipy_nat`` prints for these owners (handles made up)."""
    items = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
             {"table": {"family": "inet", "name": "cnipy_nat", "handle": 1}}]
    elems = {4: [], 6: []}
    owners, owned, subnets = [], [], {}
    for owner, rules in owners_rules:
        h = nft.owner_key(owner)
        owners.append({"elem": {"val": h, "comment": owner.tag}})
        owned.append({"elem": {"val": {"concat": [h, nft.sources_key(rules)]}, "comment": owner.tag}})
        for r in rules:
            elems[r.version].append([{"elem": {"val": str(r.source), "comment": owner.tag}},
                                     {"jump": {"target": nft.subnet_chain(r)}}])
            subnets[nft.subnet_chain(r)] = r
    for v, name in ((4, "src4"), (6, "src6")):
        m = dict(T, name=name, type=nft._KEY_TYPE[v], handle=v, map="verdict")
        if elems[v]:
            m["elem"] = elems[v]
        items.append({"map": m})
    items.append({"set": dict(T, name="owners", type="ipv6_addr", handle=5, **({"elem": owners} if owners else {}))})
    items.append({"set": dict(T, name="owned", type=["ipv6_addr", "ipv6_addr"], handle=6,
                              **({"elem": owned} if owned else {}))})
    items.append({"chain": dict(T, name="postrouting", handle=7, type="nat", hook="postrouting", prio=100,
                                policy="accept")})
    h = 10
    for c in subnets:
        items.append({"chain": dict(T, name=c, handle=h)})
        h += 1
    for v in (4, 6):
        items.append({"rule": dict(T, chain="postrouting", handle=h, expr=nft.dispatch_expr(v))})
        h += 1
    for c, r in subnets.items():
        items.append({"rule": dict(T, chain=c, handle=h, expr=nft.subnet_expr(r))})
        h += 1
    return {"nftables": items}


def test_nft_reads_back_what_it_wrote():
    rules = [R("10.1.2.5/24"), R("fd00:1::5/64")]
    st = nft.parse_listing(_listing((A, rules)))
    assert nft.skeleton_ok(st)
    c4, c6 = nft.subnet_chain(rules[0]), nft.subnet_chain(rules[1])
    assert st.maps == {"src4": {"10.1.2.5": (c4, A.tag)}, "src6": {"fd00:1::5": (c6, A.tag)}}
    assert st.owners == {nft.owner_key(A): A.tag}
    assert st.owned == {(nft.owner_key(A), nft.sources_key(rules)): A.tag}
    assert [nft.subnet_rule_meaning(r) for r in st.chains[c4]] == [(4, rules[0].subnet)]
    assert nft.check_problems(A, rules, st) == []
    assert nft.check_problems(A, [R("10.1.2.6/24")], st) == [f"src4 element 10.1.2.6 -> {c4} is missing"]
    assert nft.check_problems(B, [R("10.1.2.5/24")], st) == [f"owners element of {B.tag} is missing",
                                                              f"src4 element 10.1.2.5 -> {c4} is missing"]


def test_nft_del_requests():
    rules = [R("10.1.2.5/24"), R("fd00:1::5/64")]
    h = nft.owner_key(A)
    # Without a read: the proof (owned H . F) goes first, so a wrong F changes nothing; the
    # subnet chains go along unless another owner still uses them (EBUSY: then without).
    assert nft.plan_del_fast(A, rules, drop_chains=False) == [
        {"delete": {"element": dict(T, name="owned", elem=[{"concat": [h, nft.sources_key(rules)]}])}},
        {"delete": {"element": dict(T, name="owners", elem=[h])}},
        {"delete": {"element": dict(T, name="src4", elem=["10.1.2.5"])}},
        {"delete": {"element": dict(T, name="src6", elem=["fd00:1::5"])}},
    ]
    first, second = sorted([nft.subnet_chain(rules[0]), nft.subnet_chain(rules[1])])
    assert nft.plan_del_fast(A, rules) == nft.plan_del_fast(A, rules, drop_chains=False) + [
        {"flush": {"chain": dict(T, name=first)}}, {"delete": {"chain": dict(T, name=first)}},
        {"flush": {"chain": dict(T, name=second)}}, {"delete": {"chain": dict(T, name=second)}}]
    # From a listing: every element of A; A's subnet chains go when nobody else uses them.
    st = nft.parse_listing(_listing((A, rules), (B, [R("10.1.2.6/24")])))
    c6 = nft.subnet_chain(rules[1])
    assert nft.plan_del_exact(A, st) == [
        {"delete": {"element": dict(T, name="src4", elem=["10.1.2.5"])}},
        {"delete": {"element": dict(T, name="src6", elem=["fd00:1::5"])}},
        {"delete": {"element": dict(T, name="owners", elem=[h])}},
        {"delete": {"element": dict(T, name="owned", elem=[{"concat": [h, nft.sources_key(rules)]}])}},
        {"flush": {"chain": dict(T, name=c6)}}, {"delete": {"chain": dict(T, name=c6)}},
    ]


def test_nft_readd_replaces_and_takes_over_addresses():
    # A had 10.1.2.5; B holds 10.1.2.7 (B's DEL never came); A is added again with 10.1.2.7.
    st = nft.parse_listing(_listing((A, [R("10.1.2.5/24")]), (B, [R("10.1.2.7/24")])))
    cmds = nft.plan_replace(A, [R("10.1.2.7/24")], st)
    ha, hb = nft.owner_key(A), nft.owner_key(B)
    assert cmds[:5] == [
        {"delete": {"element": dict(T, name="src4", elem=["10.1.2.5"])}},
        {"delete": {"element": dict(T, name="src4", elem=["10.1.2.7"])}},
        {"delete": {"element": dict(T, name="owners", elem=[ha])}},
        {"delete": {"element": dict(T, name="owned", elem=[{"concat": [ha, nft.sources_key([R("10.1.2.5/24")])]}])}},
        # B's proof goes: its DEL then reads, and deletes only what B still has.
        {"delete": {"element": dict(T, name="owned", elem=[{"concat": [hb, nft.sources_key([R("10.1.2.7/24")])]}])}},
    ]
    assert cmds[5:] == nft.subnet_chains([R("10.1.2.7/24")]) + nft.owner_objects(A, [R("10.1.2.7/24")], "add")


def test_nft_gc_request_drops_unlisted_owners_of_that_network_only():
    c3, other = Owner("net1", "c3", "eth0"), Owner("net2", "c1", "eth0")
    st = nft.parse_listing(_listing((A, [R("10.1.2.5/24")]), (B, [R("10.1.2.6/24")]),
                                    (c3, [R("fd00:1::7/64")]), (other, [R("10.2.0.5/24")])))
    cmds = nft.plan_gc("net1", {("c2", "eth0")}, st)
    deleted = [(c["delete"]["element"]["name"], c["delete"]["element"]["elem"][0]) for c in cmds if "element" in
               c.get("delete", {})]
    assert ("src4", "10.1.2.5") in deleted and ("src6", "fd00:1::7") in deleted
    assert ("owners", nft.owner_key(A)) in deleted and ("owners", nft.owner_key(c3)) in deleted
    assert not any(nft.owner_key(B) in json.dumps(d) or nft.owner_key(other) in json.dumps(d) for d in deleted)
    assert len(deleted) == 6
    # fd00:1::/64's chain lost its only user; 10.1.2.0/24's still serves B.
    c6 = nft.subnet_chain(R("fd00:1::7/64"))
    assert cmds[6:] == [{"flush": {"chain": dict(T, name=c6)}}, {"delete": {"chain": dict(T, name=c6)}}]
    assert nft.plan_gc("net1", {("c1", "eth0"), ("c2", "eth0"), ("c3", "eth0")}, st) == []


SAVE = """# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 11:19:30 2026
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:{a} - [0:0]
:{b} - [0:0]
-A POSTROUTING -s 10.1.2.5/32 -m comment --comment "{ta}" -j {a}
-A POSTROUTING -s 10.1.2.6/32 -m comment --comment "{tb}" -j {b}
-A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE
-A {a} -s 10.1.2.5/32 -d 10.1.2.0/24 -m comment --comment "{ta}" -j RETURN
-A {a} -s 10.1.2.5/32 ! -d 224.0.0.0/4 -m comment --comment "{ta}" -j MASQUERADE
-A {b} -s 10.1.2.6/32 -d 10.1.2.0/24 -m comment --comment "{tb}" -j RETURN
-A {b} -s 10.1.2.6/32 ! -d 224.0.0.0/4 -m comment --comment "{tb}" -j MASQUERADE
COMMIT
""".format(a=A.chain, b=B.chain, ta=A.tag, tb=B.tag)


def test_iptables_add_request_is_one_restore_batch():
    assert iptables.plan_add(A, [R("10.1.2.5/24")], parse_save("")) == f"""*nat
:{A.chain} - [0:0]
-A {A.chain} -s 10.1.2.5/32 -d 10.1.2.0/24 -m comment --comment "{A.tag}" -j RETURN
-A {A.chain} -s 10.1.2.5/32 ! -d 224.0.0.0/4 -m comment --comment "{A.tag}" -j MASQUERADE
-A POSTROUTING -s 10.1.2.5/32 -m comment --comment "{A.tag}" -j {A.chain}
COMMIT
"""
    v6 = iptables.plan_add(A, [R("fd00:1::5/64")], parse_save(""))
    assert f"-A {A.chain} -s fd00:1::5/128 ! -d ff00::/8 -m comment" in v6


def test_iptables_readd_deletes_old_entries_by_their_text():
    assert iptables.plan_add(A, [R("10.1.2.7/24")], parse_save(SAVE)) == f"""*nat
:{A.chain} - [0:0]
-D POSTROUTING -s 10.1.2.5/32 -m comment --comment "{A.tag}" -j {A.chain}
-A {A.chain} -s 10.1.2.7/32 -d 10.1.2.0/24 -m comment --comment "{A.tag}" -j RETURN
-A {A.chain} -s 10.1.2.7/32 ! -d 224.0.0.0/4 -m comment --comment "{A.tag}" -j MASQUERADE
-A POSTROUTING -s 10.1.2.7/32 -m comment --comment "{A.tag}" -j {A.chain}
COMMIT
"""


def test_iptables_del_and_gc_requests():
    t = parse_save(SAVE)
    # DEL reads POSTROUTING only (iptables -S POSTROUTING); declaring the chain makes -X safe.
    post = parse_save("\n".join(["-P POSTROUTING ACCEPT"] + [r.line for r in t.rules if r.chain == "POSTROUTING"]))
    assert iptables.plan_del(A, post) == f"""*nat
:{A.chain} - [0:0]
-D POSTROUTING -s 10.1.2.5/32 -m comment --comment "{A.tag}" -j {A.chain}
-X {A.chain}
COMMIT
"""
    assert iptables.plan_del(Owner("net1", "c9", "eth0"), post) is None
    # GC reads the whole table (iptables-save) and knows which chains exist.
    assert iptables.plan_gc("net1", {("c1", "eth0")}, t) == f"""*nat
-D POSTROUTING -s 10.1.2.6/32 -m comment --comment "{B.tag}" -j {B.chain}
-F {B.chain}
-X {B.chain}
COMMIT
"""
    assert iptables.plan_gc("net2", set(), t) is None
    assert iptables.check_problems(A, [R("10.1.2.5/24")], t) == []
    assert iptables.check_problems(B, [R("10.1.2.5/24")], t) == [
        f'missing: -A {B.chain} -s 10.1.2.5/32 -d 10.1.2.0/24 -m comment --comment "{B.tag}" -j RETURN',
        f'missing: -A {B.chain} -s 10.1.2.5/32 ! -d 224.0.0.0/4 -m comment --comment "{B.tag}" -j MASQUERADE',
        f'missing: -A POSTROUTING -s 10.1.2.5/32 -m comment --comment "{B.tag}" -j {B.chain}']


def test_iptables_save_tokenizer():
    assert split('-A X -m comment --comment "a \\"b\\" c" -j Y') == [
        "-A", "X", "-m", "comment", "--comment", 'a "b" c', "-j", "Y"]
    assert split('--comment ""') == ["--comment", ""]


def test_select_rejects_unknown_names_with_code_7():
    with pytest.raises(CNIError) as e:
        select("ipchains")
    assert e.value.code == 7 and "ipMasqBackend" in e.value.msg and "ipchains" in e.value.msg
    with pytest.raises(CNIError) as e:
        select("NFTABLES", key="backend")
    assert e.value.code == 7 and "backend" in e.value.msg


def test_each_backend_class_declares_the_name_configs_use():
    from cnilib.firewall import NAMES, backend_classes, make

    assert tuple(cls.name for cls in backend_classes()) == NAMES == ("nftables", "iptables")
    assert [make(n).name for n in NAMES] == list(NAMES)
    assert all(cls.tools and cls.state_tool in cls.tools for cls in backend_classes())
    with pytest.raises(CNIError) as e:  # the spoof check is the reference's nftables table
        make("iptables").spoofcheck()
    assert e.value.code == 50 and "nftables" in e.value.msg


@pytest.mark.skipif(not all(shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") for t in ("nft", "iptables-save")),
                    reason="needs both backends' tools")
def test_teardown_on_every_backend_tries_all_and_reports_the_configured_error(capsys):
    from cnilib.errors import INTERNAL
    from cnilib.firewall import on_every_backend

    def failing(*names):
        calls = []

        def fn(b):
            calls.append(b.name)
            if b.name in names:
                raise CNIError(INTERNAL, f"{b.name} broke")
        return fn, calls

    fn, calls = failing("iptables")  # another backend's failure is a warning
    on_every_backend("nftables", fn, "who")
    assert calls == ["nftables", "iptables"] and "who: iptables: iptables broke" in capsys.readouterr().err
    fn, calls = failing("iptables")  # the configured backend's is the caller's error, the other still tried
    with pytest.raises(CNIError) as e:
        on_every_backend("iptables", fn, "who")
    assert calls == ["iptables", "nftables"] and e.value.msg == "iptables broke"
    fn, calls = failing("nftables", "iptables")  # nothing configured, nothing worked: the first error
    with pytest.raises(CNIError) as e:
        on_every_backend(None, fn, "who")
    assert calls == ["nftables", "iptables"] and e.value.msg == "nftables broke"


def test_import_cost_stays_small():
    """The bridge imports this on its ADD path: none of the costly stdlib modules."""
    code = ("import sys; sys.path.insert(0, %r); import cnilib.firewall.nftables.masquerade, "
            "cnilib.firewall.iptables.masquerade;"
            "print(' '.join(sorted(sys.modules)))" % ROOT)
    mods = set(subprocess.run([PY, "-IS", "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not mods & {"json", "re", "subprocess", "ipaddress", "typing", "dataclasses", "enum", "os",
                       "hashlib", "logging", "socket", "pathlib", "select", "cnilib.jsonio"}


# =============================== kernel tests ===============================

def drive(ns: Netns, *ops: dict, env_prefix: list[str] | None = None) -> list[dict]:
    """Run ``ops`` with tests/fw_driver.py inside ``ns``; one result per op."""
    argv = (env_prefix or []) + ["ip", "netns", "exec", ns.name, PY, "-IS", DRIVER]
    p = subprocess.run(argv, input=json.dumps(list(ops)).encode(), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def ok(ns: Netns, *ops: dict) -> list[dict]:
    out = drive(ns, *ops)
    bad = [(o, r) for o, r in zip(ops, out) if not r["ok"]]
    assert not bad, bad
    return out


def add(backend: str, owner: Owner, *addrs: str) -> dict:
    return {"op": "add", "backend": backend, "owner": [owner.network, owner.container_id, owner.ifname],
            "rules": [[a.split("/")[0], a] for a in addrs]}


def delete(backend: str, owner: Owner) -> dict:
    return {"op": "del", "backend": backend, "owner": [owner.network, owner.container_id, owner.ifname]}


def check(backend: str, owner: Owner, *addrs: str) -> dict:
    return dict(add(backend, owner, *addrs), op="check")


def gc(backend: str, network: str, keep: list) -> dict:
    return {"op": "gc", "backend": backend, "network": network, "keep": keep}


def objects(ns: Netns) -> set[str]:
    """Every firewall object in ``ns`` as one line each: nft rules/elements/chains of every
    table, iptables-save lines of both families (no counters, no timestamps)."""
    out: set[str] = set()
    doc = json.loads(sh("nft", "-j", "list", "ruleset", ns=ns.name))
    for item in doc["nftables"]:
        for kind, o in item.items():
            if kind in ("metainfo",):
                continue
            if kind in ("set", "map"):
                for e in o.pop("elem", []):
                    out.add(f"element {o['family']} {o['table']} {o['name']} {json.dumps(e, sort_keys=True)}")
            o.pop("handle", None)
            if kind == "table":
                o.pop("flags", None)
            out.add(f"{kind} {json.dumps(o, sort_keys=True)}")
    for tool in ("iptables-save", "ip6tables-save"):
        for line in sh(tool, "-t", "nat", ns=ns.name).splitlines():
            if line and not line.startswith("#"):
                out.add(f"{tool} {line.split(' [')[0]}")
    return out


def of(owner: Owner, objs: set[str]) -> set[str]:
    return {o for o in objs if owner.tag in o or owner.chain in o}


def nft_text(ns: Netns) -> str:
    return sh("nft", "list", "ruleset", ns=ns.name)


def ipt_text(ns: Netns) -> str:
    return sh("iptables-save", "-t", "nat", ns=ns.name) + sh("ip6tables-save", "-t", "nat", ns=ns.name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_installs_tagged_rules_both_families(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), check(backend, A, "10.1.2.5/24", "fd00:1::5/64"))
    if backend == "nftables":
        text = nft_text(netns)
        c4, c6 = nft.subnet_chain(R("10.1.2.5/24")), nft.subnet_chain(R("fd00:1::5/64"))
        assert f'chain {c4} {{\n\t\tip daddr != 10.1.2.0/24 ip daddr != 224.0.0.0/4 masquerade\n' in text
        assert f'chain {c6} {{\n\t\tip6 daddr != fd00:1::/64 ip6 daddr != ff00::/8 masquerade\n' in text
        assert f'10.1.2.5 comment "{A.tag}" : jump {c4}' in text
        assert f'fd00:1::5 comment "{A.tag}" : jump {c6}' in text
        assert f'{nft.owner_key(A)} comment "{A.tag}"' in text
        assert "ip saddr vmap @src4" in text and "ip6 saddr vmap @src6" in text
        assert A.chain not in text  # no chain per owner
        assert "cni_plugins_masquerade" not in text
    else:
        text = ipt_text(netns)
        for line in (f'-A POSTROUTING -s 10.1.2.5/32 -m comment --comment "{A.tag}" -j {A.chain}',
                     f'-A {A.chain} -s 10.1.2.5/32 -d 10.1.2.0/24 -m comment --comment "{A.tag}" -j RETURN',
                     f'-A {A.chain} -s 10.1.2.5/32 ! -d 224.0.0.0/4 -m comment --comment "{A.tag}" -j MASQUERADE',
                     f'-A POSTROUTING -s fd00:1::5/128 -m comment --comment "{A.tag}" -j {A.chain}',
                     f'-A {A.chain} -s fd00:1::5/128 -d fd00:1::/64 -m comment --comment "{A.tag}" -j RETURN',
                     f'-A {A.chain} -s fd00:1::5/128 ! -d ff00::/8 -m comment --comment "{A.tag}" -j MASQUERADE'):
            assert line in text, text
        assert "table inet cnipy_nat" not in nft_text(netns)


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_twice_gives_the_same_state(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), add(backend, B, "10.1.2.6/24"))
    first = objects(netns)
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"))
    assert objects(netns) == first


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_removes_the_owner_only(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), add(backend, B, "10.1.2.6/24", "fd00:1::6/64"))
    before = objects(netns)
    assert of(A, before) and of(B, before)
    ok(netns, delete(backend, A))
    after = objects(netns)
    assert of(A, after) == set()
    assert not any("10.1.2.5" in o or "fd00:1::5" in o for o in after)
    assert of(B, after) == of(B, before)
    ok(netns, check(backend, B, "10.1.2.6/24", "fd00:1::6/64"), delete(backend, A))


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_with_nothing_there_is_fine_and_changes_nothing(backend, netns):
    before = objects(netns)
    ok(netns, delete(backend, A), gc(backend, "net1", []))
    assert objects(netns) == before
    ok(netns, add(backend, B, "10.1.2.6/24"))
    before = objects(netns)
    ok(netns, delete(backend, A))
    assert objects(netns) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_fails_once_something_is_removed_behind_its_back(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), check(backend, A, "10.1.2.5/24", "fd00:1::5/64"))
    if backend == "nftables":
        netns.run("nft", "delete", "element", "inet", "cnipy_nat", "src6", "{ fd00:1::5 }")
    else:
        netns.run("ip6tables", "-t", "nat", "-D", A.chain, "-s", "fd00:1::5/128", "!", "-d", "ff00::/8",
                  "-m", "comment", "--comment", A.tag, "-j", "MASQUERADE")
    out = drive(netns, check(backend, A, "10.1.2.5/24", "fd00:1::5/64"), check(backend, A, "10.1.2.5/24"))
    assert not out[0]["ok"] and out[0]["code"] == 102 and "fd00:1::5" in out[0]["msg"], out
    assert out[1]["ok"], out
    # DEL still removes everything (nft: the invariant DEL relies on is broken; it re-reads).
    ok(netns, delete(backend, A))
    assert of(A, objects(netns)) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_fails_for_another_owner_or_other_rules(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24"))
    out = drive(netns, check(backend, B, "10.1.2.5/24"), check(backend, A, "10.1.2.5/16"),
                check(backend, A, "10.1.2.5/24", "10.1.3.5/24"))
    assert [r["ok"] for r in out] == [False, False, False], out
    assert {r["code"] for r in out} == {102}


@pytest.mark.parametrize("backend", BACKENDS)
def test_readd_replaces_the_owner_rules(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), add(backend, A, "10.1.2.7/24"))
    objs = objects(netns)
    assert not any("10.1.2.5" in o or "fd00:1::5" in o for o in objs)
    ok(netns, check(backend, A, "10.1.2.7/24"))
    assert not drive(netns, check(backend, A, "10.1.2.5/24"))[0]["ok"]
    ok(netns, delete(backend, A))
    assert of(A, objects(netns)) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_address_passes_to_a_new_owner_and_the_stale_del_spares_it(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24"), add(backend, B, "10.1.2.5/24"),
       check(backend, B, "10.1.2.5/24"), delete(backend, A), check(backend, B, "10.1.2.5/24"))
    assert of(A, objects(netns)) == set()
    ok(netns, delete(backend, B))
    assert not any("10.1.2.5" in o for o in objects(netns))


def del_known(backend: str, owner: Owner, *addrs: str) -> dict:
    """DEL given the rules the caller believes the owner has (the bridge: prevResult)."""
    return dict(add(backend, owner, *addrs), op="del")


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_with_known_rules_removes_exactly_the_owner(backend, netns):
    ok(netns, add(backend, A, "10.1.2.5/24", "fd00:1::5/64"), add(backend, B, "10.1.2.6/24"))
    before = objects(netns)
    ok(netns, del_known(backend, A, "10.1.2.5/24", "fd00:1::5/64"))
    assert of(A, objects(netns)) == set() and of(B, objects(netns)) == of(B, before)
    # Wrong or stale knowledge never deletes someone else's state, and still removes the owner's.
    ok(netns, add(backend, A, "10.1.2.5/24"), del_known(backend, A, "10.1.2.6/24"))
    assert of(A, objects(netns)) == set()
    ok(netns, check(backend, B, "10.1.2.6/24"))
    # B's address was taken over by A (B's DEL never came): B's DEL with its old rules spares A.
    ok(netns, add(backend, A, "10.1.2.6/24"), del_known(backend, B, "10.1.2.6/24"), check(backend, A, "10.1.2.6/24"))
    assert of(B, objects(netns)) == set()
    ok(netns, del_known(backend, A, "10.1.2.6/24"))  # the subnet's last user takes its chain along
    assert _skeleton_only(backend, objects(netns)), sorted(objects(netns))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_keeps_listed_attachments_only(backend, netns):
    c3, c1_eth1, other = Owner("net1", "c3", "eth0"), Owner("net1", "c1", "eth1"), Owner("net2", "c1", "eth0")
    ok(netns, add(backend, A, "10.1.2.5/24"), add(backend, B, "10.1.2.6/24", "fd00:1::6/64"),
       add(backend, c3, "fd00:1::7/64"), add(backend, c1_eth1, "10.1.3.5/24"), add(backend, other, "10.2.0.5/24"))
    before = objects(netns)
    ok(netns, gc(backend, "net1", [["c2", "eth0"], ["c1", "eth1"]]))
    after = objects(netns)
    assert of(A, after) == set() and of(c3, after) == set()
    for kept in (B, c1_eth1, other):
        assert of(kept, after) == of(kept, before), kept
    ok(netns, gc(backend, "net1", [["c2", "eth0"], ["c1", "eth1"]]))
    assert objects(netns) == after


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_network_names_are_hashed_and_still_collected(backend, netns):
    long_net = "a-very-long-network-name-that-does-not-fit-into-a-comment-" + "x" * 30
    o1, o2 = Owner(long_net, "f" * 64, "eth0"), Owner(long_net, "e" * 64, "eth0")
    assert parse_tag(o1.tag)[0].startswith("=")
    ok(netns, add(backend, o1, "10.1.2.5/24"), add(backend, o2, "10.1.2.6/24"),
       gc(backend, long_net, [["e" * 64, "eth0"]]), check(backend, o2, "10.1.2.6/24"))
    objs = objects(netns)
    assert of(o1, objs) == set() and of(o2, objs)


def _skeleton_only(backend: str, objs: set[str]) -> bool:
    if backend == "iptables":
        return not any("CNIPY" in o or "cnipy" in o for o in objs)
    ours = {o for o in objs if "cnipy_nat" in o}
    # table, 2 maps, 2 sets, base chain, its 2 rules; no element, no owner or subnet chain
    return not any(o.startswith("element") or "CNIP" in o for o in ours) and len(ours) == 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_fifty_owners_added_then_deleted_in_random_order(backend, netns):
    rng = random.Random(7)
    owners = []
    for i in range(50):
        o = Owner(f"net{i % 3}", f"{i:064x}", "eth0" if i % 4 else "net1")
        addrs = [f"10.{i % 3}.{i // 250}.{i % 250 + 2}/16"] if i % 5 else []
        if i % 2 or not addrs:
            addrs.append(f"fd00:{i % 3}::{i + 2:x}/64")
        owners.append((o, addrs))
    ok(netns, *[add(backend, o, *a) for o, a in owners])
    ok(netns, *[check(backend, o, *a) for o, a in owners])
    rng.shuffle(owners)
    half = len(owners) // 2
    ok(netns, *[delete(backend, o) for o, _ in owners[:half]])
    ok(netns, *[check(backend, o, *a) for o, a in owners[half:]])
    ok(netns, *[delete(backend, o) for o, _ in owners[half:]])
    objs = objects(netns)
    assert _skeleton_only(backend, objs), sorted(objs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_adds_and_dels_from_many_processes(backend, netns):
    """Eight plugin-like processes at once, each adding then deleting its own owners: no
    lock errors, nothing lost, nothing left."""
    def owners(p):
        return [(Owner("pnet", f"p{p}c{i}", "eth0"), [f"10.9.{p}.{i + 2}/16", f"fd09::{p}:{i + 2}/64"])
                for i in range(4)]

    def spawn(ops):
        argv = ["ip", "netns", "exec", netns.name, PY, "-IS", DRIVER]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(json.dumps(ops).encode())
        p.stdin.close()
        return p

    def wait_all(procs):
        for p in procs:
            out, err = p.stdout.read(), p.stderr.read()
            p.wait(timeout=120)
            p.stdout.close()
            p.stderr.close()
            assert p.returncode == 0, err
            res = json.loads(out)
            assert all(r["ok"] for r in res), res

    wait_all([spawn([add(backend, o, *a) for o, a in owners(p)]) for p in range(8)])
    ok(netns, *[check(backend, o, *a) for p in range(8) for o, a in owners(p)])
    wait_all([spawn([delete(backend, o) for o, _ in owners(p)]) for p in range(8)])
    assert _skeleton_only(backend, objects(netns)), sorted(objects(netns))


def test_both_backends_side_by_side_do_not_mix(netns):
    ok(netns, add("nftables", A, "10.1.2.5/24"), add("iptables", A, "10.1.2.5/24"), delete("nftables", A),
       check("iptables", A, "10.1.2.5/24"))
    assert not of(A, {o for o in objects(netns) if "cnipy_nat" in o})
    ok(netns, delete("iptables", A))
    assert A.tag not in ipt_text(netns)


# ---- backend selection with tools present and hidden ----

def test_select_prefers_nftables_and_honours_explicit_names(netns):
    out = drive(netns, {"op": "select"}, {"op": "select", "name": "iptables"},
                {"op": "select", "name": "nftables"}, {"op": "select", "name": "pf"})
    assert [r.get("backend") for r in out[:3]] == ["nftables", "iptables", "nftables"]
    assert out[3]["code"] == 7 and "ipMasqBackend" in out[3]["msg"] and "'pf'" in out[3]["msg"]


def _hide(path: str) -> list[str]:
    """Run the driver in a private mount namespace where ``path`` is /dev/null (not executable)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind /dev/null {path} && exec "$@"', "sh"]


def test_select_without_nft_falls_back_or_fails_with_code_50(netns):
    nft_path = os.path.realpath("/usr/sbin/nft")
    out = drive(netns, {"op": "select"}, {"op": "select", "name": "nftables"},
                {"op": "available", "backend": "nftables"}, env_prefix=_hide(nft_path))
    assert out[0]["backend"] == "iptables", out
    assert out[1]["code"] == 50 and "nft not found" in out[1]["msg"] and "ipMasqBackend" in out[1]["msg"], out
    assert "nft not found" in out[2]["reason"]


def test_select_without_iptables_fails_with_code_50(netns):
    multi = os.path.realpath("/usr/sbin/iptables-restore")
    out = drive(netns, {"op": "select", "name": "iptables"}, {"op": "select"}, env_prefix=_hide(multi))
    assert out[0]["code"] == 50 and "iptables-restore" in out[0]["msg"], out
    assert out[1]["backend"] == "nftables"


# ---- real traffic: container -> host (router, masquerading) -> outside ----

class Topology:
    """container (10.77.N.2/24, fd77:N::2/64) -- host (10.77.N.1, 172.31.N.1 / fd31:N::1) --
    outside (172.31.N.2/24, fd31:N::2/64), each a namespace this test creates. outside routes
    the container subnets back via host, so without masquerading it sees the container's own
    address (the difference is observable both ways)."""

    def __init__(self) -> None:
        self.nss: list[Netns] = []
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        n = random.randint(1, 250)
        self.n = n
        self.ctr4, self.host_out4, self.out4 = f"10.77.{n}.2", f"172.31.{n}.1", f"172.31.{n}.2"
        self.ctr6, self.host_out6, self.out6 = f"fd77:{n}::2", f"fd31:{n}::1", f"fd31:{n}::2"
        self.ctr, self.host, self.out = (self._ns("fwc"), self._ns("fwh"), self._ns("fwo"))
        h, c, o = self.host.name, self.ctr.name, self.out.name
        sh("ip", "link", "add", "h-c", "type", "veth", "peer", "name", "eth0", "netns", c, ns=h)
        sh("ip", "link", "add", "h-o", "type", "veth", "peer", "name", "eth0", "netns", o, ns=h)
        for ns, dev, addrs in ((h, "h-c", [f"10.77.{n}.1/24", f"fd77:{n}::1/64"]),
                               (h, "h-o", [f"{self.host_out4}/24", f"{self.host_out6}/64"]),
                               (c, "eth0", [f"{self.ctr4}/24", f"{self.ctr6}/64"]),
                               (o, "eth0", [f"{self.out4}/24", f"{self.out6}/64"])):
            for a in addrs:
                sh("ip", "addr", "add", a, "dev", dev, "nodad", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "route", "add", "default", "via", f"10.77.{n}.1", ns=c)
        sh("ip", "-6", "route", "add", "default", "via", f"fd77:{n}::1", ns=c)
        sh("ip", "route", "add", f"10.77.{n}.0/24", "via", self.host_out4, ns=o)
        sh("ip", "-6", "route", "add", f"fd77:{n}::/64", "via", self.host_out6, ns=o)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=h)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=h)

    def _ns(self, prefix: str) -> Netns:
        ns = Netns(prefix)
        self.nss.append(ns)
        return ns

    def serve(self, addr: str, port: int) -> None:
        """A TCP server in outside that sends each client the address it came from (exits on
        its own after 60 s without a connection)."""
        code = ("import socket,sys\n"
                "a=sys.argv[1]; f=socket.AF_INET6 if ':' in a else socket.AF_INET\n"
                "s=socket.socket(f); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                "s.bind((a, int(sys.argv[2]))); s.listen(16); s.settimeout(60)\n"
                "print('ready', flush=True)\n"
                "while True:\n"
                "    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()\n")
        p = subprocess.Popen(["ip", "netns", "exec", self.out.name, "python3", "-c", code, addr, str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        assert p.stdout.readline().strip() == b"ready", p.stderr.read() if p.poll() is not None else "no ready"

    def source_seen(self, addr: str, port: int) -> str:
        """Connect from the container; what source address did the server see?"""
        code = ("import socket,sys\n"
                "a=sys.argv[1]; f=socket.AF_INET6 if ':' in a else socket.AF_INET\n"
                "s=socket.socket(f); s.settimeout(5); s.connect((a, int(sys.argv[2])))\n"
                "print(s.recv(100).decode())\n")
        return sh("python3", "-c", code, addr, str(port), ns=self.ctr.name).strip()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        for ns in self.nss:
            ns.delete()


@pytest.fixture
def topo():
    t = Topology()
    try:
        t.setup()
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", [4, 6])
def test_masquerade_real_traffic(backend, family, topo):
    ctr, out, host_out = ((topo.ctr4, topo.out4, topo.host_out4) if family == 4
                          else (topo.ctr6, topo.out6, topo.host_out6))
    subnet = f"{ctr}/24" if family == 4 else f"{ctr}/64"
    port = 18000 + family
    topo.serve(out, port)
    assert topo.source_seen(out, port) == ctr  # routed, not masqueraded
    owner = Owner("trafficnet", "ctr1", "eth0")
    ok(topo.host, add(backend, owner, subnet))
    assert topo.source_seen(out, port) == host_out
    ok(topo.host, delete(backend, owner))
    assert topo.source_seen(out, port) == ctr
    # A fresh ADD after DEL works again (new connections, new conntrack entries).
    ok(topo.host, add(backend, owner, subnet))
    assert topo.source_seen(out, port) == host_out
    ok(topo.host, delete(backend, owner))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", [4, 6])
def test_no_masquerade_towards_the_rule_subnet(backend, family, topo):
    """Traffic to the rule's subnet keeps its source: here the "subnet" of the rule is the
    outside network, so the routed packets cross POSTROUTING and must not be masqueraded."""
    ctr, out, subnet = ((topo.ctr4, topo.out4, f"172.31.{topo.n}.0/24") if family == 4
                        else (topo.ctr6, topo.out6, f"fd31:{topo.n}::/64"))
    port = 18010 + family
    topo.serve(out, port)
    owner = Owner("trafficnet", "ctr1", "eth0")
    ok(topo.host, dict(add(backend, owner), rules=[[ctr, subnet]]))
    assert topo.source_seen(out, port) == ctr
    ok(topo.host, delete(backend, owner))
