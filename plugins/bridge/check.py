"""CHECK: what ADD set up is still there.

The reference's checks (IPAM CHECK; prevResult required; the bridge exists with the
result's MAC and the configured promiscuous mode; the container interface is a veth in
CNI_NETNS with the result's MAC; a veth of the result is its peer and a port of the bridge;
every result address and route is in the container), plus: IPAM CHECK only for L3 configs
(the reference fails L2-only configs with "no plugin name provided"), the port's hairpin,
isolation and VLANs, the MTU of both ends when configured, the spoof check and the
masquerade rules. Anything missing is code 102 (not found) naming it.
"""

from __future__ import annotations

from cnilib import ifconfig, link, netns, nl
from cnilib.errors import INVALID_CONFIG, NOT_FOUND, CNIError

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs


def _missing(msg: str) -> CNIError:
    return CNIError(NOT_FOUND, msg)


def cmd_check(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    if cfg.layer3:
        from cnilib import ipam

        ipam.check(cmd)
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "Required prevResult missing")
    prev = cmd.conf.prev_result()

    br_if = next((i for i in prev.interfaces if i.name == cfg.bridge), None)
    ctr_if = next((i for i in prev.interfaces if i.name == cmd.ifname and i.sandbox == cmd.netns), None)
    with nl.Socket() as host:
        if br_if is None:
            raise _missing(f"CNI created bridge {cfg.bridge} in host namespace was not found in prevResult")
        br = link.get(host, cfg.bridge)
        if br is None:
            raise _missing(f"Interface name {cfg.bridge} not found")
        if br.kind != "bridge":
            raise _missing(f"Interface {cfg.bridge} does not have link type of bridge")
        if br_if.mac and br_if.mac != br.mac:
            raise _missing(f"Bridge interface {cfg.bridge} Mac doesn't match: {br_if.mac}")
        if br.promisc != cfg.promisc:
            raise _missing(f"Bridge interface {cfg.bridge} configured Promisc Mode {cfg.promisc} "
                           f"doesn't match current state: {br.promisc}")
        if ctr_if is None:
            raise _missing(f"Sandbox in prevResult doesn't match configured netns: {cmd.netns} "
                           f"(no interface {cmd.ifname} with that sandbox)")
        seen = netns.run_in(cmd.netns, _inspect_container, cmd.ifname)
        cv = seen["link"]
        if cv is None:
            raise _missing(f"CNI created interface in container {cmd.ifname} not found")
        if cv.kind != "veth":
            raise _missing(f"Error: Container interface {cmd.ifname} not of type veth")
        if ctr_if.mac and ctr_if.mac != cv.mac:
            raise _missing(f"Interface {cmd.ifname} Mac {ctr_if.mac} doesn't match container Mac: {cv.mac}")
        hv = _host_peer(host, prev, br, cv, cfg, cmd)
        _check_port(host, hv, cv, cfg)
        ifconfig.check_expected(prev, cmd.ifname, seen)
        if cfg.macspoofchk:
            from cnilib import firewall

            firewall.spoof_check().check(firewall.Owner(cfg.name, cmd.container_id, cmd.ifname),
                                         firewall.SpoofSpec(hv.name, cv.mac))  # code 102 if missing
        if cfg.ipmasq and cfg.layer3:
            from . import masq

            masq.backend(cfg).masquerade().check(masq.owner(cfg, cmd.container_id, cmd.ifname),
                                                 masq.attachment_rules(prev, cmd.ifname))


def _inspect_container(ifname: str) -> dict:
    with nl.Socket() as ctr:
        return ifconfig.inspect(ctr, ifname)


def _host_peer(host: nl.Socket, prev, br: link.Link, cv: link.Link, cfg, cmd: "CmdArgs") -> link.Link:
    """The result's host veth: the container interface's peer, a port of the bridge."""
    for intf in prev.interfaces:
        if intf.name in (cfg.bridge, cmd.ifname) or intf.sandbox:
            continue
        hv = link.get(host, intf.name)
        if hv is None or hv.kind != "veth":
            continue
        if hv.index != cv.peer_index or hv.peer_index != cv.index or hv.master != br.index:
            continue
        if intf.mac and intf.mac != hv.mac:
            raise _missing(f"Interface {intf.name} Mac doesn't match: {intf.mac} not found")
        return hv
    raise _missing(f"CNI veth created for bridge {cfg.bridge} was not found")


def _check_port(host: nl.Socket, hv: link.Link, cv: link.Link, cfg) -> None:
    if hv.hairpin is not None and hv.hairpin != cfg.hairpin:
        raise _missing(f"host veth {hv.name}: hairpin mode is {'on' if hv.hairpin else 'off'}, "
                       f"the config says hairpinMode {str(cfg.hairpin).lower()}")
    if hv.isolated is not None and hv.isolated != cfg.port_isolation:
        raise _missing(f"host veth {hv.name}: port isolation is {'on' if hv.isolated else 'off'}, "
                       f"the config says portIsolation {str(cfg.port_isolation).lower()}")
    if cfg.mtu:
        for lk, where in ((hv, "host veth"), (cv, "container interface")):
            if lk.mtu != cfg.mtu:
                raise _missing(f"{where} {lk.name} has MTU {lk.mtu}, the config says mtu {cfg.mtu}")
    if cfg.needs_vlans:
        from . import vlan

        why = vlan.port_mismatch(cfg, link.vlans(host, hv.index))
        if why:
            raise _missing(f"host veth {hv.name}: {why}")
