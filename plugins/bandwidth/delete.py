"""bandwidth DEL and GC.

DEL needs neither prevResult nor the container's namespace: the IFB's name derives from
the attachment (ifb.py) and is deleted when present, together with an IFB of the
reference's name that the reference made. When the host veth can still be found
(hostveth.for_delete) its ingress qdisc (with the redirect filter; only when every filter
on it redirects to an IFB of this attachment) and its root TBF ``1:`` are removed too, so
nothing of ours outlives DEL even on a veth that stays (the reference leaves both, and a
filter redirecting to a device that no longer exists). Every step is tried; failures are
reported together at the end (code 5).

GC deletes this network's IFBs (found by their owner-tag alias) whose attachments are not
in ``cni.dev/valid-attachments``; nothing when the list is absent.
"""

from __future__ import annotations

from cnilib import tc
from cnilib.errors import IO_FAILURE, CNIError, Teardown
from cnilib import rawlink as links

from . import hostveth, ifb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

ROOT_HANDLE = tc.handle(1)


def _prev(cmd: CmdArgs):
    if cmd.conf.raw_prev_result is None:
        return None
    try:
        return cmd.conf.prev_result()
    except CNIError:
        return None  # DEL never fails for an unreadable prevResult


def delete(cmd: CmdArgs) -> None:
    tag = ifb.owner_tag(cmd)
    ours = ifb.name(tag)
    theirs = ifb.reference_name(cmd.conf.name or "", cmd.container_id)
    td = Teardown("bandwidth: DEL", os_code=IO_FAILURE)
    with links.Socket() as sock:
        host = td.attempt("finding the host veth", hostveth.for_delete, sock, cmd.netns, cmd.ifname,
                          lambda: _prev(cmd), tag)
        ifb_indexes = set()
        for n in (ours, theirs):
            lk = td.attempt(f"reading IFB {n}", _link, sock, n)
            if lk is not None:
                ifb_indexes.add(lk.index)
        if host is not None:
            td.attempt(f"removing the redirect to the IFB from host veth {host.name}", _unredirect, sock,
                       host.index, ifb_indexes)
        td.attempt(f"deleting IFB {ours}", ifb.delete, sock, ours, True)
        td.attempt(f"deleting the reference's IFB {theirs}", ifb.delete, sock, theirs, False)
        if host is not None:
            td.attempt(f"removing the tbf qdisc from host veth {host.name}", _untbf, sock, host.index)
    td.finish()


def _link(sock: links.Socket, name: str):
    lk = links.get(sock, name)
    return lk if lk is not None and lk.kind == "ifb" else None


def _unredirect(sock: links.Socket, index: int, ifbs: set[int]) -> None:
    """Delete the ingress qdisc when every filter on it redirects to one of ``ifbs`` or
    to a device that no longer exists (u32's bare hash-table entries carry no action and
    do not count)."""
    qs = tc.qdiscs(sock, index)
    if tc.ingress_qdisc(qs) is None:
        return
    for f in tc.filters(sock, index):
        if not (f.mirred or f.match_all):
            continue
        target = f.mirred[0][1] if f.mirred else 0
        gone = target == 0 or links.get_by_index(sock, target) is None  # 0: the kernel let go of a deleted one
        if not (f.redirects_to(target) and (target in ifbs or gone)):
            return  # someone else's filter: leave the qdisc alone
    tc.delete_qdisc(sock, index, tc.INGRESS_HANDLE, tc.TC_H_INGRESS)


def _untbf(sock: links.Socket, index: int) -> None:
    root = tc.root_qdisc(tc.qdiscs(sock, index))
    if root is not None and root.kind == "tbf" and root.handle == ROOT_HANDLE:
        tc.delete_qdisc(sock, index, ROOT_HANDLE, tc.TC_H_ROOT)


def gc(cmd: CmdArgs) -> None:
    from cnilib.owner import gc_doomed, kept_tags, network_part

    keep = cmd.conf.valid_attachments()
    if keep is None:
        return
    network = cmd.conf.name or ""
    net_part, keep_tags = network_part(network), kept_tags(network, keep)
    td = Teardown("bandwidth: GC", os_code=IO_FAILURE)
    with links.Socket() as sock:
        for index, name, alias in ifb.tagged(sock):
            if alias and gc_doomed(alias, net_part, keep_tags) and name == ifb.name(alias):
                td.attempt(f"deleting IFB {name}", links.delete, sock, index)
    td.finish()
