"""ADD, DEL, CHECK, GC and STATUS of a plugin whose container link hangs off a parent
device (macvlan, ipvlan, vlan): everything but the link request itself, which the plugin
supplies as a ``Plan``.

ADD, in order, refusing before anything is created whatever can be refused: a result the
config's version cannot hold (an L2-only link below 0.3.0), a kernel without the link kind
(code 50, ``cnilib.linkkind``), a missing master or default route, an MTU above the
master's (code 7), CNI_IFNAME taken in the container (code 4). Then the link (born in the
container under a temporary name and renamed, ``cnilib.ctrlink``), IPAM (or the chained
prevResult's addresses), addresses and routes (``cnilib.ifconfig``). Any failure undoes
every step (the reference leaves the link, and sometimes the lease). The result is
``interfaces: [container link]``, every IP on interface 0, and the config's ``dns`` when it
sets one, else the IPAM plugin's (the reference always replaces it, dropping IPAM's).

DEL needs neither the master, nor a default route, nor the namespace: it deletes the link
if the namespace is still there (only a link of the plugin's kind carrying this
attachment's tag, or none at all), then releases the lease; every step is tried.
"""

from __future__ import annotations

from cnilib import ifconfig, link, netns, nl
from cnilib.errors import (
    INTERNAL,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    NOT_AS_ADDED,
    NOT_AVAILABLE,
    NOT_FOUND,
    CNIError,
    Teardown,
    invalid_config,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from cnilib.parentconf import ParentLinkConf
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

EINVAL = 22


class Plan:
    """What a plugin tells the shared flow.

    ``kind``: the link kind; ``who``: the config as messages name it ("macvlan network
    'net1' (mode bridge)"); ``build(name, parent index, netns fd or -1)``: the link's
    RTM_NEWLINK request; ``explain(errno, master)``: a clearer CNIError for a refused
    create, or None; ``verify(link)``: CHECK's kind-specific comparison, "" when it
    matches else what differs; ``ndisc_notify``: set net.ipv6 ndisc_notify as arp_notify.
    """

    __slots__ = ("kind", "who", "build", "explain", "verify", "ndisc_notify")

    def __init__(self, kind: str, who: str, build: "Callable[[str, int, int], object]", *,
                 explain: "Callable[[int, link.Link], CNIError | None] | None" = None,
                 verify: "Callable[[link.Link], str] | None" = None, ndisc_notify: bool = True) -> None:
        self.kind = kind
        self.who = who
        self.build = build
        self.explain = explain
        self.verify = verify
        self.ndisc_notify = ndisc_notify


def tag(cfg: "ParentLinkConf", cmd: "CmdArgs") -> str:
    """The attachment's tag, the container link's alias."""
    from cnilib.owner import attachment_tag

    return attachment_tag(cfg.name, cmd.container_id, cmd.ifname)


# -- the master ---------------------------------------------------------------------------

def where(cfg: "ParentLinkConf") -> str:
    return "the container's namespace" if cfg.link_in_container else "the host namespace"


def find_master(sock: nl.Socket, cfg: "ParentLinkConf", name: str = "") -> link.Link:
    """The master link: ``name`` (default: the config's ``master``), or the default-route
    interface; code 7 naming what is missing."""
    name = name or cfg.master
    if name:
        lk = link.get(sock, name)
        if lk is None:
            raise invalid_config("master", name, f"no such interface in {where(cfg)}")
        return lk
    from cnilib.defroute import default_route_link

    lk = default_route_link(sock)
    if lk is None:
        raise CNIError(INVALID_CONFIG, f"no master given and no default route interface found in {where(cfg)}",
                       "set \"master\" to the parent interface")
    return lk


def check_mtu(cfg: "ParentLinkConf", master: link.Link) -> None:
    """Code 7 unless ``mtu`` is 0 (inherit) or at most the master's MTU."""
    if cfg.mtu and cfg.mtu > master.mtu:
        raise invalid_config("mtu", cfg.mtu, f"must be 0 (inherit) or at most master {master.name}'s MTU "
                                             f"{master.mtu}")


# -- ADD ------------------------------------------------------------------------------------

def result_expressible(cmd: "CmdArgs", cfg: "ParentLinkConf", has_ips: bool) -> None:
    """Code 7 before anything is created when the config's version cannot hold a result
    without addresses (0.1.0/0.2.0 results are addresses only)."""
    from cnilib import version

    if not has_ips and not version.at_least(cmd.conf.cni_version, "0.3.0"):
        raise invalid_config("cniVersion", cmd.conf.cni_version,
                             f"an L2-only {cfg.plugin} (no ipam.type) has no IP address to report, and a "
                             "0.1.0/0.2.0 result is made of IP addresses: use cniVersion 0.3.0 or later")


def add(cmd: "CmdArgs", cfg: "ParentLinkConf", plan: Plan, prev: "Result | None" = None,
        master_name: str = "") -> "Result":
    """The whole ADD (see the module docstring). ``prev``: a chained prevResult whose
    addresses and routes are used when no IPAM plugin is configured (ipvlan);
    ``master_name`` overrides the config's ``master`` (ipvlan's chained master)."""
    use_prev = not cfg.layer3 and prev is not None and bool(prev.ips)
    result_expressible(cmd, cfg, cfg.layer3 or use_prev)
    import posix

    from cnilib import linkkind

    host = nl.Socket()
    try:
        linkkind.require(host, plan.kind, plan.who)
        ctr = netns.run_in(cmd.netns, nl.Socket)
    except BaseException:
        host.close()
        raise
    try:
        ctr_fd = netns.open_fd(cmd.netns)
    except BaseException:
        ctr.close()
        host.close()
        raise
    from cnilib.undo import Undo

    undo = Undo(cfg.plugin)
    try:
        result = _add(cmd, cfg, plan, prev if use_prev else None, master_name, host, ctr, ctr_fd, undo)
        result.to_dict(cmd.conf.cni_version)  # a result the version cannot hold undoes the ADD
        return result
    except BaseException:
        undo.run()
        raise
    finally:
        posix.close(ctr_fd)
        ctr.close()
        host.close()


def _add(cmd: "CmdArgs", cfg: "ParentLinkConf", plan: Plan, prev: "Result | None", master_name: str,
         host: nl.Socket, ctr: nl.Socket, ctr_fd: int, undo) -> "Result":
    from cnilib import ctrlink
    from cnilib.types import Interface, Result

    msock = ctr if cfg.link_in_container else host
    master = find_master(msock, cfg, master_name)
    check_mtu(cfg, master)
    if link.get(ctr, cmd.ifname) is not None:
        raise CNIError(INVALID_ENVIRONMENT, f"container interface {cmd.ifname!r} already exists",
                       f"CNI_IFNAME {cmd.ifname} is taken in {cmd.netns}; nothing was changed")
    fd = -1 if cfg.link_in_container else ctr_fd
    try:
        # The undo step goes in first: if the rename fails the link is deleted already,
        # and deleting by name finds nothing (or a foreign eth0 it leaves alone).
        undo.push(f"{plan.kind} link {cmd.ifname}", _undo_link, ctr, cmd.ifname, plan.kind, tag(cfg, cmd))
        lk = ctrlink.create_and_rename(msock, ctr, lambda name: plan.build(name, master.index, fd), cmd.ifname,
                                       tag(cfg, cmd))
    except nl.NetlinkError as e:
        raise _create_error(e, cfg, plan, master) from None

    result = Result(cmd.conf.cni_version, [Interface(cmd.ifname, lk.mac, cmd.netns)])
    if cfg.layer3:
        from cnilib import ipam

        undo.push("IPAM lease", ipam.delete, cmd)
        got = ipam.add(cmd)
        result.ips, result.routes, result.dns = got.ips, got.routes, got.dns
        if not result.ips:
            raise CNIError(INTERNAL, f"IPAM plugin {cfg.ipam_type} returned no IP address")
    elif prev is not None:
        result.ips, result.routes, result.dns = prev.ips, prev.routes, prev.dns
    for ipc in result.ips:
        ipc.interface = 0
    if result.ips:
        netns.run_in(cmd.netns, ifconfig.configure, ctr, cmd.ifname, lk.index, result,
                     ndisc_notify=plan.ndisc_notify)
    else:
        ifconfig.configure(ctr, cmd.ifname, lk.index, None)
    lk = link.get(ctr, cmd.ifname) or lk
    result.interfaces[0].mac = lk.mac
    if cfg.dns is not None:
        result.dns = cfg.dns
    return result


def _undo_link(ctr: nl.Socket, ifname: str, kind: str, alias: str) -> None:
    from cnilib import ctrlink

    ctrlink.delete_if_ours(ctr, ifname, kind, alias)


def _create_error(e: nl.NetlinkError, cfg: "ParentLinkConf", plan: Plan, master: link.Link) -> CNIError:
    from cnilib import linkkind

    if plan.explain is not None:
        better = plan.explain(e.errno, master)
        if better is not None:
            return better
    if e.errno == linkkind.EOPNOTSUPP:
        return linkkind.unsupported(plan.kind, plan.who)
    if e.errno == link.EADDRNOTAVAIL and cfg.mac:
        return invalid_config(cfg.mac_source, cfg.mac, f"the kernel refused it: {e.strerror}")
    if e.errno == EINVAL and cfg.mtu:
        return invalid_config("mtu", cfg.mtu, f"the kernel refused it for a {plan.kind} on {master.name}: "
                                              f"{e.strerror}")
    return CNIError(INTERNAL, f"failed to create the {plan.kind} link on {master.name}: {e.strerror}")


# -- DEL / GC ------------------------------------------------------------------------------

def delete(cmd: "CmdArgs", cfg: "ParentLinkConf", kind: str, release_ipam: bool) -> None:
    """DEL: the lease, then the container link (when the namespace is still there). IPAM
    goes first, while the link exists: a DHCP lease is released by a message sent from it
    (the reference's order too)."""
    td = Teardown(f"{cfg.plugin}: DEL")
    if release_ipam:
        from cnilib import ipam

        td.attempt("IPAM DEL", ipam.delete, cmd)
    if cmd.netns:
        td.attempt(f"deleting {cmd.ifname}", _delete_link, cmd, kind, tag(cfg, cmd))
    td.finish()


def _delete_link(cmd: "CmdArgs", kind: str, alias: str) -> None:
    from cnilib import ctrlink

    def gone_in_there() -> None:
        with nl.Socket() as ctr:
            ctrlink.delete_if_ours(ctr, cmd.ifname, kind, alias)

    try:
        netns.run_in(cmd.netns, gone_in_there)
    except netns.NetnsGone:
        pass  # the namespace took the link with it


def gc(cmd: "CmdArgs", cfg: "ParentLinkConf") -> None:
    """GC: the container links die with their namespaces; the leases are the IPAM
    plugin's to collect (it gets ``cni.dev/valid-attachments``)."""
    if cfg.layer3:
        from cnilib import ipam

        ipam.gc(cmd)


# -- CHECK ---------------------------------------------------------------------------------

def _missing(msg: str) -> CNIError:
    return CNIError(NOT_FOUND, msg)


def check(cmd: "CmdArgs", cfg: "ParentLinkConf", plan: Plan, check_ipam: bool | None = None) -> None:
    """CHECK: IPAM CHECK (L3), prevResult required, then in the container: the link of
    the right kind (and mode/VLAN ID: ``plan.verify``) on the configured master, the
    result's MAC, the configured MTU, every address and route of the result."""
    if cfg.layer3 if check_ipam is None else check_ipam:
        from cnilib import ipam

        ipam.check(cmd)
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "Required prevResult missing")
    prev = cmd.conf.prev_result()
    ctr_if = next((i for i in prev.interfaces if i.name == cmd.ifname), None)
    if ctr_if is None:
        raise _missing(f"interface {cmd.ifname} is not in prevResult")
    if ctr_if.sandbox != cmd.netns:
        raise _missing(f"Sandbox in prevResult ({ctr_if.sandbox!r}) doesn't match configured netns: {cmd.netns}")
    master = None
    if cfg.master and not cfg.link_in_container:
        with nl.Socket() as host:
            master = link.get(host, cfg.master)
    seen = netns.run_in(cmd.netns, _inspect, cmd.ifname, cfg.master if cfg.link_in_container else "")
    if cfg.link_in_container:
        master = seen["master"]
    if cfg.master and master is None:
        raise _missing(f"master {cfg.master} not found in {where(cfg)}")
    lk = seen["link"]
    if lk is None:
        raise _missing(f"container interface {cmd.ifname} not found")
    if lk.kind != plan.kind:
        raise _missing(f"container interface {cmd.ifname} is {'a ' + lk.kind if lk.kind else 'a plain device'}, "
                       f"not a {plan.kind}")
    if not lk.peer_index:
        raise _missing(f"{plan.kind} {cmd.ifname} has no parent device")
    if master is not None and lk.peer_index != master.index:
        raise _missing(f"{plan.kind} {cmd.ifname} is not on master {cfg.master}")
    if plan.verify is not None:
        why = plan.verify(lk)
        if why:
            raise CNIError(NOT_AS_ADDED, f"{plan.kind} {cmd.ifname}: {why}")
    if ctr_if.mac and ctr_if.mac != lk.mac:
        raise CNIError(NOT_AS_ADDED, f"interface {cmd.ifname} MAC {lk.mac} doesn't match prevResult's {ctr_if.mac}")
    if cfg.mtu and lk.mtu != cfg.mtu:
        raise CNIError(NOT_AS_ADDED, f"interface {cmd.ifname} has MTU {lk.mtu}, the config says mtu {cfg.mtu}")
    ifconfig.check_expected(prev, cmd.ifname, seen)


def _inspect(ifname: str, master: str) -> dict:
    with nl.Socket() as ctr:
        seen = ifconfig.inspect(ctr, ifname)
        seen["master"] = link.get(ctr, master) if master else None
        return seen


# -- STATUS --------------------------------------------------------------------------------

def status(cmd: "CmdArgs", cfg: "ParentLinkConf", plan: Plan, check_master: bool = True) -> None:
    """STATUS: code 50 unless the kernel has the link kind, the master (or a default-route
    interface) exists in the host (not checkable for ``linkInContainer``: no container
    then), and the IPAM plugin is ready."""
    from cnilib import linkkind

    with nl.Socket() as host:
        linkkind.require(host, plan.kind, plan.who)
        if check_master and not cfg.link_in_container:
            try:
                find_master(host, cfg)
            except CNIError as e:
                raise CNIError(NOT_AVAILABLE, f"{plan.who}: {e.msg}", e.details) from None
    if cfg.layer3:
        from cnilib import ipam

        ipam.status(cmd)

