"""DEL and GC: release an attachment's IPAM lease, host veth, spoof check and masquerading.

DEL never needs the container: the host veth is found by its name and tag (see naming),
so a DEL without CNI_NETNS, or after the namespace is gone, still removes the veth (when
the kernel has not already), the lease and the firewall rules. Deleting the host end
deletes the container end with it. Only when no tagged veth exists (an attachment made by
the reference plugin) is the container's CNI_IFNAME looked at, and then deleted only if it
is a veth whose peer is a port of the configured bridge: a DEL after an ADD refused for an
existing CNI_IFNAME never deletes that foreign interface. Every step is tried; the first
error is reported at the end. The bridge, its addresses and sysctls stay, as the
reference leaves them.
"""

from __future__ import annotations

from cnilib import link, netns, nl
from cnilib.errors import CNIError, Teardown

from . import config, naming

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def cmd_del(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    td = Teardown("bridge: DEL")
    if cfg.layer3:
        from cnilib import ipam

        # IPAM first, while the container's interface still exists: a DHCP lease is
        # released by a message sent from it. (Upstream bridge too, since it reverted the
        # opposite order in Dec 2022; Debian's 1.1.1 still deletes the link first.)
        td.attempt("IPAM DEL", ipam.delete, cmd)
    td.attempt("deleting the veth pair", _delete_veth, cmd, cfg)
    if cfg.macspoofchk:
        from cnilib import firewall

        td.attempt("macspoofchk teardown", firewall.spoof_check(require=False).delete,
                   firewall.Owner(cfg.name, cmd.container_id, cmd.ifname))
    if cfg.ipmasq:
        from . import masq

        td.attempt("masquerade teardown", masq.release, cfg, cmd.container_id, cmd.ifname, _prev_result(cmd))
    td.finish()


def _prev_result(cmd: "CmdArgs"):
    """prevResult, or None when absent or unreadable (DEL never fails for it)."""
    try:
        return cmd.conf.prev_result()
    except CNIError:
        return None


def _delete_veth(cmd: "CmdArgs", cfg: config.BridgeConf) -> None:
    tag = naming.tag(cfg.name, cmd.container_id, cmd.ifname)
    with nl.Socket() as host:
        if _delete_tagged(host, cfg, tag):
            return
        if cmd.netns:
            try:
                _delete_reference_made(host, cmd, cfg)
            except netns.NetnsGone:
                pass  # the namespace took the container end (and so the host end) with it


def _delete_tagged(host: nl.Socket, cfg: config.BridgeConf, tag: str) -> bool:
    """Delete the host veth tagged ``tag``; True if there was one."""
    lk = link.get(host, naming.host_veth_name(tag))
    if lk is not None and lk.alias == tag:
        link.delete(host, lk.index)
        return True
    # Fallback names (the derived one was taken at ADD): look among the bridge's ports.
    br = link.get(host, cfg.bridge)
    if br is None:
        return False
    found = link.find_by_alias(host, tag, master=br.index)
    for index, _name in found:
        link.delete(host, index)
    return bool(found)


def _delete_reference_made(host: nl.Socket, cmd: "CmdArgs", cfg: config.BridgeConf) -> None:
    ctr = netns.run_in(cmd.netns, nl.Socket)
    with ctr:
        cv = link.get(ctr, cmd.ifname)
        if cv is None or cv.kind != "veth" or not cv.peer_index:
            return
        br = link.get(host, cfg.bridge)
        peer = link.get_by_index(host, cv.peer_index)
        if br is None or peer is None or peer.kind != "veth" or peer.master != br.index or \
                peer.peer_index != cv.index:
            return  # not a veth of this bridge: not ours to delete
        link.delete(ctr, cv.index)


def cmd_gc(cmd: "CmdArgs") -> None:
    """GC: IPAM GC, then the masquerading and host veths of this network's attachments
    that are not in ``cni.dev/valid-attachments`` (nothing when the list is absent)."""
    cfg = config.load(cmd, strict=False)
    td = Teardown("bridge: GC")
    if cfg.layer3:
        from cnilib import ipam

        td.attempt("IPAM GC", ipam.gc, cmd)
    keep = cmd.conf.valid_attachments()
    if keep is not None:
        if cfg.ipmasq:
            from . import masq

            td.attempt("masquerade GC", masq.gc, cfg, keep)
        td.attempt("GC of host veths", _gc_veths, cfg, keep)
    td.finish()


def _gc_veths(cfg: config.BridgeConf, keep: set[tuple[str, str]]) -> None:
    """Delete the bridge's ports tagged with this network whose attachment is not kept."""
    from cnilib.owner import gc_doomed, kept_tags, network_part

    with nl.Socket() as host:
        br = link.get(host, cfg.bridge)
        if br is None:
            return
        net_part = network_part(cfg.name)
        keep_tags = kept_tags(cfg.name, keep)
        for lk in link.list_links(host, master=br.index, kind="veth"):
            if lk.alias and gc_doomed(lk.alias, net_part, keep_tags):
                link.delete(host, lk.index)
