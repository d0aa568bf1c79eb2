"""Forwarding rules with iptables, in the reference firewall plugin's layout: one
``iptables -t filter -S`` and one ``iptables-restore --noflush`` per family per change.

Layout in the ``filter`` table of each family (chains and shared rules exactly as the
reference's; administrators keep their own rules in the admin chain, never written here)::

    -A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1
    -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
    -A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
    # per container address; the owner's tag as comment is ours (the reference's have none);
    # with an ingress policy the comment is "<tag>/<policy>/<bridge>": the isolation it uses
    -A CNI-FORWARD -d IP/32 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "<tag>" -j ACCEPT
    -A CNI-FORWARD -s IP/32 -m comment --comment "<tag>" -j ACCEPT
    # ingressPolicy same-bridge / isolated, per bridge, shared by its containers
    -A CNI-ISOLATION-STAGE-1 -i BR -o BR -m comment --comment "CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP
    -A CNI-ISOLATION-STAGE-1 -i BR ! -o BR -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2
    -A CNI-ISOLATION-STAGE-1 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j RETURN
    -A CNI-ISOLATION-STAGE-2 -o BR -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP
    -A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j RETURN

An isolation-only spec (the firewalld backend's ingress policy: firewalld's zone decides
what the addresses may do) makes no accept rule, no jump to CNI-FORWARD and no admin
chain: the bridge's isolation rules, and per address a marker with the owner's comment and
no target (``-A CNI-FORWARD -s IP/32 -m comment --comment "<tag>/<policy>/<bridge>"``)
that records the owner's use of the bridge, as the accept rules' comments do.

Shared chains are created (and the jumps into them inserted at the top) only when
missing: with ``--noflush`` a ``:CHAIN`` line would flush an existing chain, the admin's
included. The tag lets DEL and GC find an owner's rules without prevResult; given
prevResult's addresses, DEL also removes the reference's untagged rules for them (an
attachment the reference plugin made). A bridge's isolation rules are shared by its
attachments: DEL and GC remove them (in the same restore) once no tagged rule of any
network names the bridge in its comment any more; the ``isolated`` DROP goes once no
remaining attachment asks for ``isolated`` (the reference never removes them, so a
bridge name reused by a later network stays isolated).
"""

from __future__ import annotations

from cnilib.errors import NOT_FOUND, CNIError
from cnilib.firewall import tools
from cnilib.firewall.base import Forward, Lock
from cnilib.firewall.forward import ForwardSpec
from cnilib.firewall.iptables.listing import Table, canonical, split
from cnilib.firewall.iptables.runner import CMD, LOCK_NAME, TOOLS, WAIT_SECONDS, Iptables, filter_batch
from cnilib.ip import IP
from cnilib.owner import Owner, gc_doomed, kept_tags, network_part

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CNI_FORWARD = "CNI-FORWARD"
STAGE1 = "CNI-ISOLATION-STAGE-1"
STAGE2 = "CNI-ISOLATION-STAGE-2"
RULES_COMMENT = "CNI firewall plugin rules"
ADMIN_COMMENT = "CNI firewall plugin admin overrides"


def policy_comment(policy: str) -> str:
    return f"{RULES_COMMENT} (ingressPolicy: {policy})"


ISOLATION_COMMENT = policy_comment("same-bridge")


def _host(ip: IP) -> str:
    return f"{ip}/{ip.bits}"


def _c(text: str) -> str:
    return f'-m comment --comment "{text}"'


def forward_jump() -> str:
    return f"-A FORWARD {_c(RULES_COMMENT)} -j {CNI_FORWARD}"


def admin_jump(admin: str) -> str:
    return f"-A {CNI_FORWARD} {_c(ADMIN_COMMENT)} -j {admin}"


def owner_comment(owner: Owner, bridge: str | None = None, policy: str = "open") -> str:
    """The comment of the owner's rules: its tag, and for an ingress policy
    ``/<policy>/<bridge>`` (neither a tag nor a bridge name holds ``/``, nor a space)."""
    return owner.tag if not bridge else f"{owner.tag}/{policy}/{bridge}"


def parse_comment(comment: str) -> tuple[str, tuple[str, str] | None]:
    """(tag, (bridge, policy) or None) of an owner rule's comment."""
    parts = comment.split("/")
    if len(parts) == 3 and parts[1] and parts[2]:
        return parts[0], (parts[2], parts[1])
    return comment, None


def owner_lines(owner: Owner, addresses: list[IP], bridge: str | None = None, policy: str = "open",
                accept: bool = True) -> list[str]:
    """The owner's accept rules, as ``iptables -S`` prints them. Without ``accept`` (an
    ingress policy's isolation alone: the firewalld backend) one marker per address instead,
    a rule with no target: it decides nothing, it records the owner's use of the bridge."""
    out, c = [], _c(owner_comment(owner, bridge, policy))
    for ip in addresses:
        if not accept:
            out.append(f"-A {CNI_FORWARD} -s {_host(ip)} {c}")
            continue
        out.append(f"-A {CNI_FORWARD} -d {_host(ip)} -m conntrack --ctstate RELATED,ESTABLISHED {c} -j ACCEPT")
        out.append(f"-A {CNI_FORWARD} -s {_host(ip)} {c} -j ACCEPT")
    return out


def reference_lines(addresses: list[IP]) -> list[str]:
    """The reference plugin's (untagged) accept rules for ``addresses``."""
    out = []
    for ip in addresses:
        out.append(f"-A {CNI_FORWARD} -d {_host(ip)} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        out.append(f"-A {CNI_FORWARD} -s {_host(ip)} -j ACCEPT")
    return out


def isolation_lines(bridge: str, policy: str) -> dict[str, list[str]]:
    """The isolation rules a bridge needs, by chain (top first; RETURN last)."""
    stage1 = []
    if policy == "isolated":
        stage1.append(f"-A {STAGE1} -i {bridge} -o {bridge} {_c(policy_comment('isolated'))} -j DROP")
    stage1.append(f"-A {STAGE1} -i {bridge} ! -o {bridge} {_c(ISOLATION_COMMENT)} -j {STAGE2}")
    return {"FORWARD": [f"-A FORWARD {_c(ISOLATION_COMMENT)} -j {STAGE1}"],
            STAGE1: stage1, STAGE2: [f"-A {STAGE2} -o {bridge} {_c(ISOLATION_COMMENT)} -j DROP"]}


def returns() -> dict[str, str]:
    return {c: f"-A {c} {_c(ISOLATION_COMMENT)} -j RETURN" for c in (STAGE1, STAGE2)}


def _have(table: Table) -> set[tuple[str, ...]]:
    return {canonical(r.tokens) for r in table.rules}


def _present(line: str, have: set[tuple[str, ...]]) -> bool:
    return canonical(split(line)) in have


def _insert(line: str) -> str:
    """``-A CHAIN ...`` as ``-I CHAIN 1 ...``."""
    _, chain, rest = line.split(" ", 2)
    return f"-I {chain} 1 {rest}"


def _owned(owner: Owner, table: Table) -> list[str]:
    """Delete lines for the owner's rules, by their exact text."""
    return _doomed_lines(table, lambda tag: tag == owner.tag)


def _doomed_lines(table: Table, doomed: Callable[[str], bool]) -> list[str]:
    """Delete lines for the tagged rules whose tag ``doomed(tag)`` is true."""
    return ["-D" + r.line[2:] for r in table.rules
            if r.chain == CNI_FORWARD and r.comment and doomed(parse_comment(r.comment)[0])]


def release_isolation(table: Table, doomed: Callable[[str], bool],
                      staying: tuple[str, str] | None = None) -> list[str]:
    """Delete lines for the isolation rules of the bridges the doomed owners' rules name
    (``doomed(tag)`` true) that no other tagged rule (any network) nor ``staying`` (bridge,
    policy: what is being added) still uses; the ``isolated`` DROP of a bridge still used
    goes when none of its users asks for ``isolated``."""
    released: set[str] = set()
    users: dict[str, set[str]] = {}
    for r in table.rules:
        if r.chain != CNI_FORWARD or not r.comment:
            continue
        tag, iso = parse_comment(r.comment)
        if iso is None:
            continue
        if doomed(tag):
            released.add(iso[0])
        else:
            users.setdefault(iso[0], set()).add(iso[1])
    if staying is not None:
        users.setdefault(staying[0], set()).add(staying[1])
    gone: set[tuple[str, ...]] = set()
    for bridge in released:
        policies = users.get(bridge)
        if not policies:
            gone |= {canonical(split(x)) for chain, xs in isolation_lines(bridge, "isolated").items()
                     if chain != "FORWARD" for x in xs}
        elif "isolated" not in policies:
            gone.add(canonical(split(isolation_lines(bridge, "isolated")[STAGE1][0])))
    return ["-D" + r.line[2:] for r in table.rules if r.chain in (STAGE1, STAGE2) and canonical(r.tokens) in gone]


def plan_add(owner: Owner, spec: ForwardSpec, version: int, table: Table) -> list[str]:
    """Lines making ``spec``'s rules of one family for ``owner`` (whose old rules go),
    with the shared chains and jumps that are missing."""
    addresses = spec.family(version)
    if not addresses:
        return _owned(owner, table) + release_isolation(table, lambda tag: tag == owner.tag)
    have = _have(table)
    # Isolation alone (firewalld backend): CNI-FORWARD only holds the owner's markers; the
    # traffic never goes there and no admin chain is made (as the reference's firewalld mode).
    shared = (CNI_FORWARD, spec.admin_chain) if spec.accept else (CNI_FORWARD,)
    lines = [f":{c} - [0:0]" for c in shared if c not in table.chains]
    inserts = []
    if spec.accept and not _present(forward_jump(), have):
        inserts.append(_insert(forward_jump()))
    if spec.accept and not _present(admin_jump(spec.admin_chain), have):
        inserts.append(_insert(admin_jump(spec.admin_chain)))
    appends: list[str] = []
    old = release_isolation(table, lambda tag: tag == owner.tag,
                            (spec.bridge, spec.policy) if spec.bridge else None)
    if spec.bridge:
        lines += [f":{c} - [0:0]" for c in (STAGE1, STAGE2) if c not in table.chains]
        # Inserted after the CNI-FORWARD jump, so that STAGE-1 comes first in FORWARD.
        for chain_lines in isolation_lines(spec.bridge, spec.policy).values():
            inserts += [_insert(x) for x in reversed(chain_lines) if not _present(x, have)]
        appends += [x for x in returns().values() if not _present(x, have)]
    return (lines + inserts + appends + _owned(owner, table) + old
            + owner_lines(owner, addresses, spec.bridge, spec.policy, spec.accept))


def plan_del(owner: Owner, spec: ForwardSpec | None, version: int, table: Table) -> list[str]:
    """Delete lines for the owner's rules, and (``spec`` known) the reference's untagged
    rules for its addresses; then the isolation of its bridge when no one else uses it."""
    lines = _owned(owner, table) + release_isolation(table, lambda tag: tag == owner.tag)
    if spec is not None:
        wanted = {canonical(split(x)) for x in reference_lines(spec.family(version))}
        lines += ["-D" + r.line[2:] for r in table.rules
                  if r.chain == CNI_FORWARD and not r.comment and canonical(r.tokens) in wanted]
    return lines


def plan_gc(network: str, keep: set[tuple[str, str]], table: Table) -> list[str]:
    net, kept = network_part(network), kept_tags(network, keep)

    def doomed(tag: str) -> bool:
        return gc_doomed(tag, net, kept)

    return _doomed_lines(table, doomed) + release_isolation(table, doomed)


def check_problems(owner: Owner, spec: ForwardSpec, version: int, table: Table) -> list[str]:
    """What is missing of ``spec``'s rules of one family (empty: all there)."""
    have = _have(table)
    shared = (CNI_FORWARD, spec.admin_chain) if spec.accept else (CNI_FORWARD,)
    problems = [f"chain {c} (IPv{version}) is missing" for c in shared if c not in table.chains]
    want = [forward_jump(), admin_jump(spec.admin_chain)] if spec.accept else []
    want += owner_lines(owner, spec.family(version), spec.bridge, spec.policy, spec.accept)
    if spec.bridge:
        want += [x for xs in isolation_lines(spec.bridge, spec.policy).values() for x in xs]
    problems += [f"missing (IPv{version}): {x}" for x in want if not _present(x, have)]
    return problems


class IptablesForward(Forward):
    """Forwarding rules in the filter tables, run through the backend's iptables tools."""

    __slots__ = ("ipt",)

    def __init__(self, ipt: Iptables) -> None:
        self.ipt = ipt

    def _apply(self, version: int, lines: list[str]) -> None:
        if lines:
            self.ipt.restore(version, filter_batch(lines))

    def add(self, owner: Owner, spec: ForwardSpec) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set(spec.versions())):
                self._apply(v, plan_add(owner, spec, v, self.ipt.list_table(v, "filter")))

    def delete(self, owner: Owner, spec: ForwardSpec | None = None) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                self._apply(v, plan_del(owner, spec, v, self.ipt.list_table(v, "filter")))

    def check(self, owner: Owner, spec: ForwardSpec) -> None:
        problems = []
        for v in spec.versions():
            problems += check_problems(owner, spec, v, self.ipt.list_table(v, "filter"))
        if problems:
            raise CNIError(NOT_FOUND, f"iptables forwarding rules of {owner.tag}: {'; '.join(problems)}")

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        with Lock(LOCK_NAME):
            for v in self.ipt.versions(set()):
                self._apply(v, plan_gc(network, keep, self.ipt.list_table(v, "filter")))


def forward_needs_iptables() -> str | None:
    """Why forwarding rules on this host must be iptables rules, or None.

    An nftables accept cannot override a DROP verdict of another base chain on the same
    hook: when iptables' FORWARD policy is DROP (Docker sets it) only rules inside that
    chain let a container's traffic through, and when FORWARD already jumps to CNI-FORWARD
    (the reference plugin ran here) administrators and podman expect the rules there. One
    ``iptables -S FORWARD`` exec; None when iptables is not installed or cannot be read."""
    if tools.find_tool(TOOLS[4][CMD]) is None:
        return None
    rc, out, _ = tools.run([Iptables.tool(4, CMD), "-w", WAIT_SECONDS, "-t", "filter", "-S", "FORWARD"])
    if rc != 0:
        return None
    for line in out.decode(errors="replace").splitlines():
        words = line.split()
        if words[:3] == ["-P", "FORWARD", "DROP"]:
            return "iptables' FORWARD policy is DROP"
        if words[:2] == ["-A", "FORWARD"] and words[-2:] == ["-j", CNI_FORWARD]:
            return f"iptables' FORWARD already jumps to {CNI_FORWARD}"
    return None
