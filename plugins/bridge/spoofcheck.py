"""macspoofchk: drop frames entering the bridge from the host veth with another source MAC.

The reference's nftables layout (pkg/link/spoofcheck.go), so either plugin can tear down
what the other set up: table ``bridge nat``; base chain ``PREROUTING`` (filter, hook
prerouting, priority -300, policy accept) with ``iifname <host veth> jump
cni-br-iface-<id>``; chain ``cni-br-iface-<id>`` jumping to ``cni-br-iface-<id>-mac``, which
returns for ``ether saddr <container MAC>`` and drops everything else. Every rule is
commented ``macspoofchk-<id>``. The reference's ``<id>`` is ``<container id>-<ifname>``,
which is ambiguous: (``a-b``, ``c``) and (``a``, ``b-c``) share one chain, so one
attachment's ADD replaces the other's allowlist and either DEL removes both. Ours is the
same where that cannot happen (a container ID without ``-``, as containerd's, CRI-O's and
podman's are), else ``h`` + 32 hex digits of a hash of both (no ``-``, so never equal to
a plain one); the reference's DEL cannot find those, nor ours the reference's for such IDs.

Unlike the reference (two ``nft`` runs to set up), setup is one atomic transaction, and
the input is nft's JSON so no name needs quoting.
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError

FAMILY = "bridge"
TABLE = "nat"
BASE_CHAIN = "PREROUTING"
COMMENT_PREFIX = "macspoofchk-"


# Longest container ID kept in a name: nft chain names stop at 255 bytes (NFT_NAME_MAXLEN).
_MAX_PLAIN = 200


def ref_id(container_id: str, ifname: str) -> str:
    """The attachment's id in chain names and comments: unambiguous (see the docstring)."""
    if "-" not in container_id and len(container_id) <= _MAX_PLAIN:
        return f"{container_id}-{ifname}"
    from cnilib.firewall.base import sha256_hex

    return "h" + sha256_hex(f"{container_id}\0{ifname}")[:32]


def iface_chain(rid: str) -> str:
    return "cni-br-iface-" + rid


def mac_chain(rid: str) -> str:
    return iface_chain(rid) + "-mac"


def _chain(name: str, **extra: object) -> dict:
    c = {"family": FAMILY, "table": TABLE, "name": name}
    c.update(extra)
    return {"chain": c}


def _rule(chain: str, expr: list, rid: str) -> dict:
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr, "comment": COMMENT_PREFIX + rid}}


def setup_commands(host_veth: str, mac: str, rid: str) -> list[dict]:
    """The nft JSON commands of setup (one transaction)."""
    ic, mc = iface_chain(rid), mac_chain(rid)
    return [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": _chain(BASE_CHAIN, type="filter", hook="prerouting", prio=-300, policy="accept")},
        {"add": _chain(ic)},
        {"add": _chain(mc)},
        {"flush": _chain(ic)},
        {"flush": _chain(mc)},
        {"add": _rule(BASE_CHAIN, [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": host_veth}},
                                   {"jump": {"target": ic}}], rid)},
        {"add": _rule(ic, [{"jump": {"target": mc}}], rid)},
        {"add": _rule(mc, [{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                                      "right": mac}},
                           {"return": None}], rid)},
        {"add": _rule(mc, [{"drop": None}], rid)},
    ]


def _nft(commands: list[dict] | None, *argv: str) -> bytes:
    from cnilib import jsonio
    from cnilib.firewall import _exec

    nft = _exec.find_tool("nft")
    if nft is None:
        raise CNIError(NOT_AVAILABLE, "macspoofchk needs nftables, but the nft command was not found")
    # "-f /proc/self/fd/0" rather than "-f -": nft opens /dev/stdin for "-", a symlink that
    # minimal systems (a bare devtmpfs, some initramfs and VM setups) do not have.
    full = [nft, "-j", *argv] if commands is None else [nft, "-j", "-f", "/proc/self/fd/0"]
    request = b"" if commands is None else jsonio.dumps({"nftables": commands}, indent=False).encode()
    rc, out, err = _exec.run(full, request)
    if rc != 0:
        raise _exec.tool_error(full, rc, err, request.decode())
    return out


def setup(host_veth: str, mac: str, container_id: str, ifname: str) -> None:
    """Install the spoof check for one attachment."""
    _nft(setup_commands(host_veth, mac, ref_id(container_id, ifname)))


def _table() -> tuple[set[str], list[dict]]:
    """(chain names, rules with handles) of table ``bridge nat``; empty when absent."""
    from cnilib import jsonio

    try:
        out = _nft(None, "-a", "list", "table", FAMILY, TABLE)
    except CNIError as e:
        if "No such file or directory" in e.msg:
            return set(), []
        raise
    chains: set[str] = set()
    rules: list[dict] = []
    for x in jsonio.loads(out or b"{}").get("nftables", []):
        if isinstance(x, dict) and "chain" in x:
            chains.add(x["chain"].get("name"))
        elif isinstance(x, dict) and "rule" in x:
            rules.append(x["rule"])
    return chains, rules


def teardown_commands(chains: set[str], rules: list[dict], rid: str) -> list[dict]:
    """Delete what exists of the attachment: its jump rule(s) in the base chain, then its
    two chains (emptied first: a chain with rules cannot be deleted)."""
    cmds: list[dict] = []
    for r in rules:
        if r.get("chain") == BASE_CHAIN and r.get("comment") == COMMENT_PREFIX + rid and "handle" in r:
            cmds.append({"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": BASE_CHAIN,
                                             "handle": r["handle"]}}})
    mine = [c for c in (iface_chain(rid), mac_chain(rid)) if c in chains]
    cmds += [{"flush": _chain(c)} for c in mine] + [{"delete": _chain(c)} for c in mine]
    return cmds


def teardown(container_id: str, ifname: str) -> None:
    """Remove the spoof check of one attachment; nothing there is fine. One read, and one
    transaction when there is something to delete."""
    from cnilib.firewall import _exec

    if _exec.find_tool("nft") is None:
        return  # without nft nobody installed a spoof check here
    rid = ref_id(container_id, ifname)
    for _attempt in range(3):
        chains, rules = _table()
        cmds = teardown_commands(chains, rules, rid)
        if not cmds:
            return
        try:
            _nft(cmds)
            return
        except CNIError as e:
            if "No such file or directory" not in e.msg:
                raise
            # Something changed between the read and the write (a parallel teardown): reread.
    raise CNIError(11, f"macspoofchk teardown of {rid} kept racing with other changes")


def present(host_veth: str, mac: str, container_id: str, ifname: str) -> str:
    """"" when the spoof check is in place for this attachment, else what is missing."""
    rid = ref_id(container_id, ifname)
    chains, rules = _table()
    if not any(r.get("chain") == BASE_CHAIN and r.get("comment") == COMMENT_PREFIX + rid for r in rules):
        return f"no macspoofchk rule for {host_veth} in {FAMILY} {TABLE} {BASE_CHAIN}"
    mc = [r for r in rules if r.get("chain") == mac_chain(rid)]
    if not mc:
        return f"macspoofchk chain {mac_chain(rid)} is missing or empty"
    from cnilib import jsonio

    text = jsonio.dumps(mc, indent=False).lower()
    if mac.lower() not in text or '"drop"' not in text:
        return f"macspoofchk chain {mac_chain(rid)} does not allow only {mac}"
    return ""
