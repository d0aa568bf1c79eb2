"""ADD: bridge, veth pair, IPAM, container configuration, gateway, masquerading.

The reference's order and result (``interfaces: [bridge, host veth, container]``), with
these differences: everything that can be refused is refused before anything is created
(config values, firewall backend, ``nft`` for macspoofchk, CNI_IFNAME already taken, VLANs
on a kernel without them); the veth pair is created from the host side in one request (host
end up and on the bridge, container end named CNI_IFNAME directly in the container's
namespace); the host end is tagged (IFLA_IFALIAS) with the attachment so DEL finds it
without the container; and any failure undoes every step taken, in reverse (the reference
leaves the configured veth behind), including a bridge this ADD created if no port is
left on it. A bridge this ADD creates has its MAC pinned at once, so it never drifts to a
port's MAC (the reference pins it only for gateways).
"""

from __future__ import annotations

from cnilib import link, netns, nl
from cnilib.undo import Undo
from cnilib.errors import (INTERNAL, INVALID_CONFIG, INVALID_ENVIRONMENT, TRY_AGAIN_LATER, CNIError,
                           invalid_config)

from . import config, naming

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

EOPNOTSUPP = 95
HOST_VETH_UP_TIMEOUT = 2.5  # the reference polls 0 + 50 + 500 + 1000 + 1000 ms


def cmd_add(cmd: "CmdArgs") -> "Result":
    cfg = config.load(cmd)
    _result_expressible(cmd, cfg)
    fw = None
    if cfg.ipmasq and cfg.layer3:
        from . import masq

        fw = masq.backend(cfg)
    if cfg.macspoofchk:
        from cnilib import firewall

        firewall.spoof_check()  # code 50 when nft is missing, before anything is made
    import posix

    host = nl.Socket()
    ctr = netns.run_in(cmd.netns, nl.Socket)
    try:
        ctr_fd = netns.open_fd(cmd.netns)
    except BaseException:
        ctr.close()
        raise
    undo = Undo("bridge")
    try:
        result = _add(cmd, cfg, fw, host, ctr, ctr_fd, undo)
        # The skel prints the result after we return, too late to undo anything: convert
        # it here once, so a result the config's version cannot hold undoes the ADD.
        result.to_dict(cmd.conf.cni_version)
        return result
    except BaseException:
        undo.run()
        raise
    finally:
        posix.close(ctr_fd)
        ctr.close()
        host.close()


def _result_expressible(cmd: "CmdArgs", cfg: config.BridgeConf) -> None:
    """Code 7 before anything is created when no result of ours fits the config's
    version: a 0.1.0/0.2.0 result is one IPv4 and/or one IPv6 address, and an L2-only
    bridge (no IPAM) has none (the reference creates the veth pair, then fails)."""
    from cnilib import version

    if not cfg.layer3 and not version.at_least(cmd.conf.cni_version, "0.3.0"):
        raise invalid_config("cniVersion", cmd.conf.cni_version,
                             "an L2-only bridge (no ipam.type) has no IP address to report, and a "
                             "0.1.0/0.2.0 result is made of IP addresses: use cniVersion 0.3.0 or later")


def _add(cmd: "CmdArgs", cfg: config.BridgeConf, fw, host: nl.Socket, ctr: nl.Socket, ctr_fd: int,
         undo: Undo) -> "Result":
    from cnilib.types import Interface, Result

    if link.get(ctr, cmd.ifname) is not None:
        raise CNIError(INVALID_ENVIRONMENT, f"container interface {cmd.ifname!r} already exists",
                       f"CNI_IFNAME {cmd.ifname} is taken in {cmd.netns}; nothing was changed")
    tag = naming.tag(cfg.name, cmd.container_id, cmd.ifname)
    br, host_name = _attach(cmd, cfg, host, ctr_fd, tag, undo)
    hv = link.get(host, host_name)
    cv = link.get(ctr, cmd.ifname)
    if hv is None or cv is None:
        raise CNIError(INTERNAL, f"the veth pair {host_name}/{cmd.ifname} vanished right after its creation")

    from cnilib import sysctl

    sysctl.try_set(f"net/ipv6/conf/{host_name}/accept_ra", "0")  # we own this link's routes
    # The host end is a bridge port and needs no IPv6 of its own (the reference leaves it
    # on). Off before the container end comes up (addrconf waits for the carrier), the host
    # namespace gets no link-local address, no fe80::/64 and ff00::/8 route and no MLD or
    # router solicitations per pod: hundreds of sibling routes on those prefixes make every
    # link-local and multicast route lookup in the host walk them all.
    sysctl.try_set(f"net/ipv6/conf/{host_name}/disable_ipv6", "1")
    try:
        link.set_bridge_port(host, hv.index, alias=tag, hairpin=cfg.hairpin, isolated=cfg.port_isolation)
    except OSError as e:
        raise CNIError(INTERNAL, f"failed to set up bridge port {host_name} (hairpin {cfg.hairpin}, "
                                 f"isolated {cfg.port_isolation}): {e.strerror}") from None
    if cfg.needs_vlans:
        from . import vlan

        try:
            vlan.configure_port(host, hv.index, cfg.vlan, cfg.vlans, cfg.preserve_default_vlan)
        except OSError as e:
            raise CNIError(INTERNAL, f"failed to set up VLANs ({cfg.vlan_option()}) on {host_name}: "
                                     f"{e.strerror}") from None

    result = Result(cmd.conf.cni_version, [Interface(br.name, br.mac), Interface(host_name, hv.mac),
                                           Interface(cmd.ifname, cv.mac, cmd.netns)])
    if cfg.macspoofchk:
        from cnilib import firewall

        # Undo steps go in first: each tolerates finding nothing, and a step that fails
        # half-way (or IPAM that allocated and then failed) is then undone too.
        spoof, owner = firewall.spoof_check(), firewall.Owner(cfg.name, cmd.container_id, cmd.ifname)
        undo.push("macspoofchk", spoof.delete, owner)
        spoof.add(owner, firewall.SpoofSpec(host_name, cv.mac))

    from cnilib import ifconfig

    if cfg.layer3:
        from cnilib import ipam

        from . import gateway

        undo.push("IPAM lease", ipam.delete, cmd)
        got = ipam.add(cmd)
        result.ips, result.routes, result.dns = got.ips, got.routes, got.dns
        if not result.ips:
            raise CNIError(INTERNAL, "IPAM plugin returned missing IP config")
        gws = gateway.calc(result, cfg)
        netns.run_in(cmd.netns, ifconfig.configure, ctr, cmd.ifname, cv.index, result, enable_dad=cfg.enable_dad)
        if cfg.is_gw:
            _gateways(cfg, host, br, gws, result)
        if fw is not None:
            from . import masq

            o = masq.owner(cfg, cmd.container_id, cmd.ifname)
            undo.push("masquerading", fw.masquerade().delete, o)
            fw.masquerade().add(o, masq.rules(result))
    elif not cfg.disable_container_interface:
        ifconfig.configure(ctr, cmd.ifname, cv.index, None)

    if not cfg.disable_container_interface:
        hv = _wait_up(host, host_name)
    br = link.get(host, br.name) or br
    result.interfaces[0].mac = br.mac
    result.interfaces[1].mac = hv.mac
    if cfg.dns is not None:
        result.dns = cfg.dns
    return result


def _attach(cmd: "CmdArgs", cfg: config.BridgeConf, host: nl.Socket, ctr_fd: int, tag: str,
            undo: Undo) -> tuple[link.Link, str]:
    """Ensure the bridge and create the veth pair on it; (bridge, host veth name).

    A bridge removed between our lookup and the veth's creation (a parallel ADD that
    failed and cleaned up the bridge it had made) is recreated, up to three times."""
    for _attempt in range(3):
        br = _ensure_bridge(host, cfg, undo)
        try:
            name = _create_veth(cmd, cfg, host, ctr_fd, tag, br)
        except nl.NetlinkError as e:
            if e.errno in (22, 19) and link.get(host, cfg.bridge) is None:  # EINVAL/ENODEV: master gone
                continue
            raise CNIError(INTERNAL, f"failed to make veth pair for {cmd.ifname!r}: {e.strerror}") from None
        undo.push(f"host veth {name}", _delete_link, host, name)
        return br, name
    raise CNIError(TRY_AGAIN_LATER, f"bridge {cfg.bridge!r} keeps disappearing while connecting {cmd.ifname!r}")


def _delete_link(sock: nl.Socket, name: str) -> None:
    lk = link.get(sock, name)
    if lk is not None:
        link.delete(sock, lk.index)


def _ensure_bridge(host: nl.Socket, cfg: config.BridgeConf, undo: Undo) -> link.Link:
    """The bridge, created (VLAN filtering when the config needs VLANs, MTU, MAC pinned)
    when missing; promisc, accept_ra=0 and up as the reference sets them."""
    from cnilib import sysctl

    name = cfg.bridge
    br = link.get(host, name)
    created = False
    if br is None:
        try:
            created = link.create_bridge(host, name, cfg.mtu, cfg.needs_vlans)
        except nl.NetlinkError as e:
            if e.errno == EOPNOTSUPP and cfg.needs_vlans:
                from . import vlan

                raise vlan.unsupported(cfg, name) from None
            raise CNIError(INTERNAL, f"failed to create bridge {name!r}: {e.strerror}") from None
        br = link.get(host, name)
        if br is None:
            raise CNIError(TRY_AGAIN_LATER, f"bridge {name!r} disappeared right after its creation")
    if br.kind != "bridge":
        raise invalid_config("bridge", name, f"a link of that name already exists and is not a bridge "
                                             f"(it is {'a ' + br.kind if br.kind else 'a plain device'})")
    if cfg.needs_vlans and not link.bridge_has_vlan_support(br):
        from . import vlan

        raise vlan.unsupported(cfg, name)
    if created:
        undo.push(f"bridge {name}", _remove_bridge_if_unused, host, br.index)
    if created or cfg.is_gw:
        # Pin the MAC before the port joins: an unpinned bridge takes its lowest port's MAC
        # and changes it as ports come and go (all zeros once the last one leaves). The
        # reference pins it only for gateways, after the port joined, to the MAC it read
        # before, which fails when that was the all-zero MAC of an empty bridge.
        mac = br.mac if br.mac and br.mac != "00:00:00:00:00:00" else _random_mac()
        link.set_link(host, br.index, mac=mac)
    if cfg.promisc and not br.promisc:
        link.set_link(host, br.index, promisc=True)
    sysctl.try_set(f"net/ipv6/conf/{name}/accept_ra", "0")
    if not br.up:
        link.set_link(host, br.index, up=True)
    return link.get(host, name) or br


def _random_mac() -> str:
    import posix

    b = bytearray(posix.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{x:02x}" for x in b)


def _remove_bridge_if_unused(host: nl.Socket, index: int) -> None:
    if not link.list_links(host, master=index):
        link.delete(host, index)


def _create_veth(cmd: "CmdArgs", cfg: config.BridgeConf, host: nl.Socket, ctr_fd: int, tag: str,
                 br: link.Link) -> str:
    """Create the pair (see the module docstring); the host end's name."""
    names = [naming.host_veth_name(tag)] + [naming.random_veth_name() for _ in range(9)]
    for name in names:
        try:
            link.create_veth(host, name, cmd.ifname, ctr_fd, mtu=cfg.mtu, peer_mac=cfg.mac, master=br.index,
                             up=True)
            return name
        except nl.NetlinkError as e:
            if e.errno == link.EEXIST:
                if link.get(host, name) is not None:
                    continue  # the host name is taken: try the next one
                raise CNIError(INVALID_ENVIRONMENT, f"container interface {cmd.ifname!r} already exists") from None
            if e.errno == link.EADDRNOTAVAIL and cfg.mac:
                raise invalid_config(cfg.mac_source, cfg.mac, f"the kernel refused it: {e.strerror}") from None
            if e.errno == 22 and cfg.mtu:  # EINVAL
                raise CNIError(INVALID_CONFIG, f"failed to make veth pair with mtu {cfg.mtu}: {e.strerror}") from None
            raise
    raise CNIError(INTERNAL, "failed to find a unique veth name")


def _gateways(cfg: config.BridgeConf, host: nl.Socket, br: link.Link, gws: dict, result: "Result") -> None:
    """Gateway addresses on the bridge (or on ``<bridge>.<vlan>``), then forwarding."""
    from cnilib.types import Interface

    from cnilib import gateway

    dev = br
    for fam in (4, 6):
        for gw in gws[fam]:
            if cfg.vlan:
                from . import vlan

                if dev is br:
                    dev = vlan.ensure_gateway_iface(host, br, cfg)
                    result.interfaces.append(Interface(dev.name, dev.mac))
            if gateway.ensure_addr(host, dev, gw, cfg.force_address, cfg.enable_dad) and gw.version == 6 \
                    and cfg.enable_dad:
                from cnilib import ifconfig

                ifconfig.settle(host, dev.name, dev.index)
        if gws[fam]:
            gateway.enable_forwarding(fam)


def _wait_up(host: nl.Socket, name: str) -> link.Link:
    import time

    deadline = time.monotonic() + HOST_VETH_UP_TIMEOUT
    while True:
        lk = link.get(host, name)
        if lk is None:
            raise CNIError(INTERNAL, f"host veth {name} disappeared")
        if lk.operstate == "up":
            return lk
        if time.monotonic() > deadline:
            raise CNIError(INTERNAL, f"bridge port in error state: {lk.operstate}")
        time.sleep(0.01)
