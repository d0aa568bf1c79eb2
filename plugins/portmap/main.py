"""portmap: forward host ports to the container (a chained plugin).

Same keys, capability and ADD/DEL/CHECK behaviour as the reference portmap (config.py),
plus GC and STATUS, through cnilib.firewall's host-port layer (nftables maps: constant
cost per change and per packet, whatever the number of containers; or one
iptables-restore per family per change). Beyond the reference: a host port another
attachment holds is an error naming the holder (code 101), never a silent takeover;
rules are owned by (network, container ID, ifname), so DEL and GC need neither prevResult
nor the mappings; conditionsV4/V6 apply to their own container only; dual-stack CHECK
works right after ADD (#819); only traffic to a local address is translated (#1209).
The plugin never imports a netlink library: firewall tools, /proc/sys and one
ctnetlink socket (UDP mappings only) are all it uses.
"""

from __future__ import annotations

from cnilib import skel
from cnilib.errors import ALREADY_ALLOCATED, INVALID_CONFIG, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall import Owner

    from .config import PortMapConf


def _owner(cmd: skel.CmdArgs) -> "Owner":
    from cnilib.firewall import Owner

    return Owner(cmd.conf.name or "", cmd.container_id, cmd.ifname)


def _prev(cmd: skel.CmdArgs):
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "portmap must be called as a chained plugin: prevResult is missing")
    return cmd.conf.prev_result()


def cmd_add(cmd: skel.CmdArgs):
    from cnilib import firewall

    from . import config

    cfg = config.load(cmd)
    prev = _prev(cmd)
    addresses = config.container_addresses(prev, cmd.ifname)
    spec = config.spec(cfg, addresses)
    if not spec.mappings:
        return prev
    hostports = firewall.select(cfg.firewall_backend(), key="backend", probe=False).hostports()
    owner = _owner(cmd)
    try:
        if cfg.snat and 4 in spec.versions():
            _route_localnet(spec)
        hostports.add(owner, spec)
    except CNIError as e:
        if e.code != ALREADY_ALLOCATED:  # a conflict changed nothing; anything else may have
            _undo(hostports, owner)
        raise
    except BaseException:
        _undo(hostports, owner)
        raise
    _flush_udp(spec)
    return prev


def _route_localnet(spec) -> None:
    """route_localnet=1 where the container's IPv4 address is routed (see localnet.py)."""
    from cnilib.errors import IO_FAILURE

    from . import localnet

    for m in spec.family(4)[:1]:
        try:
            localnet.enable(m.container_ip)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot set route_localnet for {m.container_ip}: {e}") from None


def _undo(hostports, owner: "Owner") -> None:
    try:
        hostports.delete(owner)
    except CNIError:
        pass  # the original error is the one to report


def _flush_udp(spec) -> None:
    """Delete conntrack entries of the mapped UDP host ports: a stale entry (made while no
    mapping existed) would keep steering datagrams past the new DNAT. Failures are
    warnings, as in the reference."""
    import sys

    ports = sorted({(m.version, m.host_port) for m in spec.mappings if m.proto == "udp"})
    if not ports:
        return
    from cnilib import conntrack

    for version, port in ports:
        try:
            conntrack.delete_dport(port, 17, 2 if version == 4 else 10)
        except OSError as e:
            sys.stderr.write(f"portmap: cannot delete stale UDP conntrack entries for port {port}: {e}\n")


def cmd_del(cmd: skel.CmdArgs) -> None:
    """Remove the attachment's mappings from every backend that may hold them; needs
    neither prevResult nor the mappings (the owner names them). When the runtime passes
    both, as libcni does, they spare the nftables backend a read (it checks that they
    name exactly the owner's state before deleting anything)."""
    from cnilib import firewall

    from . import config

    cfg = config.load(cmd, strict=False)
    owner = _owner(cmd)
    known = _known_spec(cmd, cfg)
    firewall.on_every_backend(cfg.firewall_backend(), lambda b: b.hostports().delete(owner, known), "portmap: DEL")


def _known_spec(cmd: skel.CmdArgs, cfg: "PortMapConf"):
    """What ADD installed, from runtimeConfig and prevResult; None when either is missing
    or unreadable (DEL never fails for them)."""
    from . import config

    if cmd.conf.raw_prev_result is None:
        return None
    try:
        return config.spec(cfg, config.container_addresses(cmd.conf.prev_result(), cmd.ifname))
    except CNIError:
        return None


def cmd_check(cmd: skel.CmdArgs) -> None:
    from cnilib import firewall

    from . import config

    cfg = config.load(cmd)
    prev = _prev(cmd)
    spec = config.spec(cfg, config.container_addresses(prev, cmd.ifname))
    if not spec.mappings:
        return
    firewall.select(cfg.firewall_backend(), key="backend", probe=False).hostports().check(_owner(cmd), spec)


def cmd_gc(cmd: skel.CmdArgs) -> None:
    """Remove the mappings of this network's attachments missing from
    ``cni.dev/valid-attachments`` (nothing when the list is absent)."""
    from cnilib import firewall

    from . import config

    keep = cmd.conf.valid_attachments()
    if keep is None:
        return
    cfg: "PortMapConf" = config.load(cmd, strict=False)
    name = cmd.conf.name or ""
    firewall.on_every_backend(cfg.firewall_backend(), lambda b: b.hostports().gc(name, keep), "portmap: GC")


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready when the configured (or default) firewall backend works here; else code 50."""
    from cnilib import firewall

    from . import config

    firewall.select(config.load(cmd, strict=False).firewall_backend(), key="backend")


PLUGIN = skel.Plugin("portmap", "chained", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status)


def main() -> None:
    skel.run(PLUGIN)
