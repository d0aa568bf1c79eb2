"""Who holds a (master, VLAN ID): the kernel allows one VLAN device per pair across all
namespaces and only says EEXIST. The error names the holder: the attachment (from the
link's alias tag, cnilib.owner) and namespace, or the link's name.

Looked for in the master's own namespace and in every named network namespace
(/run/netns, where runtimes and ``ip netns`` keep them); a holder elsewhere (an unnamed
namespace) is reported as such.
"""

from __future__ import annotations

from cnilib import link, netns, nl
from cnilib.errors import ALREADY_ALLOCATED, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

    from .config import VlanConf

NETNS_DIRS = ("/run/netns", "/var/run/netns")


def _describe(lk: link.Link, where: str) -> str:
    from cnilib.owner import parse_tag

    parts = parse_tag(lk.alias) if lk.alias else None
    if parts:
        net, cid, ifname = parts
        return f"container {cid} (interface {ifname} of network {net}, namespace {where})"
    return f"link {lk.name} in {where}"


def _match(sock: nl.Socket, master_index: int, vid: int, foreign: bool) -> link.Link | None:
    for lk in link.list_links(sock, kind="vlan"):
        if lk.vlan_id == vid and lk.peer_index == master_index and (lk.peer_netnsid is not None) == foreign:
            return lk
    return None


def find(master_sock: nl.Socket, master: link.Link, vid: int) -> str:
    """A description of the VLAN device holding (``master``, ``vid``), or ""."""
    lk = _match(master_sock, master.index, vid, foreign=False)
    if lk is not None:
        return _describe(lk, "the master's namespace")
    import posix

    seen: set[tuple[int, int]] = set()
    for d in NETNS_DIRS:
        try:
            names = sorted(posix.listdir(d))
        except OSError:
            continue
        for name in names:
            path = f"{d}/{name}"
            try:
                st = posix.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            try:
                lk = netns.run_in(path, _match_in_ns, master.index, vid)
            except (CNIError, OSError):
                continue
            if lk is not None:
                return _describe(lk, path)
    return ""


def _match_in_ns(master_index: int, vid: int) -> link.Link | None:
    with nl.Socket() as s:
        return _match(s, master_index, vid, foreign=True)


def conflict(c: "VlanConf", cmd: "CmdArgs", master: link.Link) -> CNIError:
    """Code 101: VLAN ``c.vlan_id`` on ``master`` already has a device, named if found."""
    try:
        if c.link_in_container:
            who = netns.run_in(cmd.netns, _find_here, master, c.vlan_id)
        else:
            with nl.Socket() as host:
                who = find(host, master, c.vlan_id)
    except (CNIError, OSError):
        who = ""
    held = who or "a device this plugin could not find (in a namespace without a name?)"
    return CNIError(ALREADY_ALLOCATED, f"VLAN {c.vlan_id} on master {master.name} is already in use by {held}",
                    "the kernel allows one VLAN device per (master, VLAN ID); use a bridge with a VLAN port "
                    "to put several containers on one VLAN")


def _find_here(master: link.Link, vid: int) -> str:
    with nl.Socket() as s:
        return find(s, master, vid)
