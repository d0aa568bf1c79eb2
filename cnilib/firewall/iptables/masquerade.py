"""Masquerading with iptables: ``iptables-restore --noflush`` (``ip6tables-restore`` for
IPv6), one exec per family per change, reading with ``iptables -t nat -S POSTROUTING``
(and ``iptables-save -t nat`` for GC).

Layout in the ``nat`` table, per owner and family::

    :CNIPY-<22 hex of sha256(tag)> - [0:0]
    -A POSTROUTING -s S/32 -m comment --comment "<tag>" -j CNIPY-...
    -A CNIPY-... -s S/32 -d SUBNET -m comment --comment "<tag>" -j RETURN
    -A CNIPY-... -s S/32 ! -d 224.0.0.0/4 -m comment --comment "<tag>" -j MASQUERADE

The reference uses ``-j ACCEPT`` for the own-subnet rule, which also skips every later
POSTROUTING nat rule of other software; RETURN only leaves our chain, as the nftables
backend, whose rule simply does not match, leaves later rules alone. ``-s`` inside the chain keeps an owner with two addresses of a
family exact (each address is excluded from masquerading only towards its own subnet).

A restore batch is one atomic commit (iptables-nft: one nftables transaction; legacy: one
table replace). ``--noflush`` keeps everyone else's rules; declaring ``:CHAIN`` flushes (or
creates) just our chain, and POSTROUTING entries are deleted by their exact text as
``iptables -S POSTROUTING`` prints them, so a change reads POSTROUTING first (read and
restore run under our lock). Reading one chain instead of iptables-save matters at scale
(a quarter of the time at 500 owners). DEL never
needs the owner's chain listed: its batch declares the chain (create or flush) and
deletes it. ``-w`` waits for the xtables lock that legacy iptables takes.
"""

from __future__ import annotations

from cnilib.errors import NOT_FOUND, CNIError
from cnilib.firewall.base import Lock, Masquerade
from cnilib.firewall.iptables.listing import Rule, Table, canonical, split
from cnilib.firewall.iptables.runner import LOCK_NAME, Iptables, nat_batch
from cnilib.firewall.rules import MasqRule, normalize
from cnilib.owner import Owner, gc_doomed, is_owner_chain, kept_tags, network_part

HOOK_CHAIN = "POSTROUTING"


def _host(r: MasqRule) -> str:
    return f"{r.source}/{r.source.bits}"


def owner_lines(owner: Owner, rules: list[MasqRule]) -> list[str]:
    """The owner's rules of one family, exactly as iptables-save prints them."""
    c, tag = owner.chain, owner.tag
    lines = []
    for r in rules:
        lines.append(f'-A {c} -s {_host(r)} -d {r.subnet} -m comment --comment "{tag}" -j RETURN')
        lines.append(f'-A {c} -s {_host(r)} ! -d {r.multicast} -m comment --comment "{tag}" -j MASQUERADE')
    for r in rules:
        lines.append(f'-A {HOOK_CHAIN} -s {_host(r)} -m comment --comment "{tag}" -j {c}')
    return lines


def _owned(table: Table, chain: str) -> list[Rule]:
    """Rules of ``chain`` plus the POSTROUTING rules jumping into it."""
    return [r for r in table.rules if r.chain == chain or (r.chain == HOOK_CHAIN and r.target == chain)]


def _drop(chain: str, postrouting: Table) -> list[str]:
    """Lines deleting ``chain`` knowing only POSTROUTING: the jumps into it by their exact
    text; the chain is declared first (which creates or flushes it), so ``-X`` cannot fail
    whether it existed or not."""
    jumps = ["-D" + r.line[2:] for r in postrouting.rules if r.chain == HOOK_CHAIN and r.target == chain]
    return [f":{chain} - [0:0]"] + jumps + [f"-X {chain}"]


def plan_add(owner: Owner, rules: list[MasqRule], postrouting: Table) -> str | None:
    """The restore batch replacing ``owner``'s state in one family by ``rules`` (of that
    family), given that family's POSTROUTING rules; None when there is nothing to do (no
    rules, no jump into the owner's chain)."""
    old_jumps = ["-D" + r.line[2:] for r in postrouting.rules if r.chain == HOOK_CHAIN and r.target == owner.chain]
    if not rules:
        return nat_batch(_drop(owner.chain, postrouting)) if old_jumps else None
    # ":CHAIN" creates the chain or, with --noflush, flushes it; declarations come first.
    return nat_batch([f":{owner.chain} - [0:0]"] + old_jumps + owner_lines(owner, rules))


def plan_del(owner: Owner, postrouting: Table) -> str | None:
    """DEL from the family's POSTROUTING rules alone (the owner's chain is declared, which
    creates or flushes it, then deleted); None when no jump leads to the owner's chain."""
    return plan_add(owner, [], postrouting)


def plan_gc(network: str, keep: set[tuple[str, str]], table: Table) -> str | None:
    """Drop chains whose rules carry a tag of ``network`` not kept, and our chains that are
    empty and not jumped to (nothing can attribute them)."""
    net, kept = network_part(network), kept_tags(network, keep)
    by_chain: dict[str, list[Rule]] = {}
    jumps: dict[str, list[Rule]] = {}
    for r in table.rules:  # index once: GC sees every owner's rules
        by_chain.setdefault(r.chain, []).append(r)
        if r.chain == HOOK_CHAIN:
            jumps.setdefault(r.target, []).append(r)
    lines: list[str] = []
    for chain in sorted(c for c in table.chains if is_owner_chain(c)):
        own = by_chain.get(chain, [])
        if any(gc_doomed(r.comment, net, kept) for r in own) or (not own and chain not in jumps):
            lines += ["-D" + r.line[2:] for r in jumps.get(chain, [])] + [f"-F {chain}", f"-X {chain}"]
    return nat_batch(lines) if lines else None


def check_problems(owner: Owner, rules: list[MasqRule], table: Table) -> list[str]:
    """What is missing for ``rules`` (one family) of ``owner``; empty when all is there."""
    have = {canonical(r.tokens) for r in _owned(table, owner.chain)}
    return [f"missing: {line}" for line in owner_lines(owner, rules) if canonical(split(line)) not in have]


class IptablesMasquerade(Masquerade):
    """Masquerading in the nat tables, run through the backend's iptables tools."""

    __slots__ = ("ipt",)

    def __init__(self, ipt: Iptables) -> None:
        self.ipt = ipt

    def add(self, owner: Owner, rules: list[MasqRule]) -> None:
        rules = normalize(rules)
        with Lock(LOCK_NAME):
            for v in self.ipt.versions({r.version for r in rules}):
                text = plan_add(owner, [r for r in rules if r.version == v],
                                self.ipt.list_chain(v, HOOK_CHAIN, owner.chain))
                if text:
                    self.ipt.restore(v, text)

    def delete(self, owner: Owner, rules: list[MasqRule] | None = None) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                text = plan_del(owner, self.ipt.list_chain(v, HOOK_CHAIN, owner.chain))
                if text:
                    self.ipt.restore(v, text)

    def check(self, owner: Owner, rules: list[MasqRule]) -> None:
        rules = normalize(rules)
        problems: list[str] = []
        for v in sorted({r.version for r in rules}):
            table = self.ipt.list_chain(v, HOOK_CHAIN, owner.chain)
            mine = self.ipt.list_chain(v, owner.chain)
            if mine is None:
                problems.append(f"chain {owner.chain} is missing")
            else:
                table.rules += mine.rules
            problems += check_problems(owner, [r for r in rules if r.version == v], table)
        if problems:
            raise CNIError(NOT_FOUND, f"iptables masquerade for {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                text = plan_gc(network, keep, self.ipt.save(v))
                if text:
                    self.ipt.restore(v, text)
