"""The spoof check with nftables: drop frames entering the bridge from an owner's host
veth with a source MAC other than the container's (the bridge's ``macspoofchk``).

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
The id holds no network name (the reference's layout has none): GC cannot tell one
network's checks from another's and leaves them to DEL.

Unlike the reference (two ``nft`` runs to set up), setup is one atomic transaction, and
the input is nft's JSON so no name needs quoting.
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, NOT_FOUND, TRY_AGAIN_LATER, CNIError
from cnilib.firewall.base import SpoofCheck
from cnilib.firewall.nftables.listing import Listing, read_table
from cnilib.firewall.nftables.runner import ENOENT, Nft
from cnilib.owner import sha256_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall.spoof import SpoofSpec
    from cnilib.owner import Owner

FAMILY = "bridge"
TABLE = "nat"
BASE_CHAIN = "PREROUTING"
COMMENT_PREFIX = "macspoofchk-"
# Longest container ID kept in a name: nft chain names stop at 255 bytes (NFT_NAME_MAXLEN).
_MAX_PLAIN = 200
# A teardown reads, then deletes by rule handle: a parallel change in between makes the
# delete fail (ENOENT) and the teardown read again, this many times in all.
_TEARDOWN_ATTEMPTS = 3


def ref_id(container_id: str, ifname: str) -> str:
    """The attachment's id in chain names and comments: unambiguous (see the docstring)."""
    if "-" not in container_id and len(container_id) <= _MAX_PLAIN:
        return f"{container_id}-{ifname}"
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


def teardown_commands(st: Listing, rid: str) -> list[dict]:
    """Delete what exists of the attachment: its jump rule(s) in the base chain (by handle),
    then its two chains (emptied first: a chain with rules cannot be deleted)."""
    cmds: list[dict] = []
    for r in st.chains.get(BASE_CHAIN, []):
        if r.get("comment") == COMMENT_PREFIX + rid and "handle" in r:
            cmds.append({"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": BASE_CHAIN,
                                             "handle": r["handle"]}}})
    mine = [c for c in (iface_chain(rid), mac_chain(rid)) if c in st.chains]
    cmds += [{"flush": _chain(c)} for c in mine] + [{"delete": _chain(c)} for c in mine]
    return cmds


def check_problem(st: Listing, host_veth: str, mac: str, rid: str) -> str:
    """"" when the check is in place for the attachment ``rid``, else what is missing."""
    if not any(r.get("comment") == COMMENT_PREFIX + rid for r in st.chains.get(BASE_CHAIN, [])):
        return f"no macspoofchk rule for {host_veth} in {FAMILY} {TABLE} {BASE_CHAIN}"
    mc = st.chains.get(mac_chain(rid), [])
    if not mc:
        return f"macspoofchk chain {mac_chain(rid)} is missing or empty"
    from cnilib import jsonio

    text = jsonio.dumps(mc, indent=False).lower()
    if mac.lower() not in text or '"drop"' not in text:
        return f"macspoofchk chain {mac_chain(rid)} does not allow only {mac}"
    return ""


def request(cmds: list[dict]) -> bytes:
    """The stdin of ``nft -j -f``: the commands alone, as the reference's JSON has them."""
    from cnilib import jsonio

    return jsonio.dumps({"nftables": cmds}, indent=False).encode()


class NftSpoofCheck(SpoofCheck):
    """The spoof check in table ``bridge nat``, run through the backend's ``nft``. The
    owner's container ID and ifname name its chains; its network is not part of them."""

    __slots__ = ("nft",)

    def __init__(self, nft: Nft) -> None:
        self.nft = nft

    def require(self) -> None:
        if self.nft.path() is None:
            raise CNIError(NOT_AVAILABLE, "macspoofchk needs nftables, but the nft command was not found")

    def _state(self) -> Listing:
        return read_table(self.nft, FAMILY, TABLE, handles=True) or Listing(FAMILY, TABLE)

    def add(self, owner: "Owner", spec: "SpoofSpec") -> None:
        self.require()
        rc, err, req = self.nft.run_batch(request(setup_commands(spec.host_veth, spec.mac,
                                                                 ref_id(owner.container_id, owner.ifname))))
        if rc != 0:
            raise self.nft.batch_error(rc, err, req)

    def delete(self, owner: "Owner", spec: "SpoofSpec | None" = None) -> None:
        """One read, and one transaction when there is something to delete; without nft
        nobody installed a check here."""
        if self.nft.path() is None:
            return
        rid = ref_id(owner.container_id, owner.ifname)
        for _attempt in range(_TEARDOWN_ATTEMPTS):
            cmds = teardown_commands(self._state(), rid)
            if not cmds:
                return
            rc, err, req = self.nft.run_batch(request(cmds))
            if rc == 0:
                return
            if ENOENT not in err:
                raise self.nft.batch_error(rc, err, req)
            # Something changed between the read and the write (a parallel teardown): reread.
        raise CNIError(TRY_AGAIN_LATER, f"macspoofchk teardown of {rid} kept racing with other changes")

    def check(self, owner: "Owner", spec: "SpoofSpec") -> None:
        self.require()
        why = check_problem(self._state(), spec.host_veth, spec.mac, ref_id(owner.container_id, owner.ifname))
        if why:
            raise CNIError(NOT_FOUND, why)

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Nothing: the layout names no network (see the module docstring)."""
