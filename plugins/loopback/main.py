"""loopback: bring ``lo`` up in the container's namespace (ADD), down (DEL), verify (CHECK).

Standard library only (ioctl + /proc), like the reference's behaviour key by key:
the result lists ``lo`` (named by CNI_IFNAME, MAC all zeros, sandbox = CNI_NETNS) and its
first IPv4 and IPv6 addresses; with a prevResult it passes that through unchanged. DEL
succeeds when CNI_NETNS is empty or the namespace is already gone.
"""

from __future__ import annotations

from cnilib import netns, skel
from cnilib.errors import NOT_AS_ADDED, CNIError

LO = "lo"
# lo is down or has a non-loopback address (was 100, which means "no address available").
LOOPBACK_BROKEN = NOT_AS_ADDED


def _up_and_addresses() -> tuple[object, object]:
    from cnilib import ifaddr

    ifaddr.set_up(LO, True)
    v4 = ifaddr.ipv4_address(LO)
    v6 = ifaddr.ipv6_addresses(LO)
    for a in ([v4] if v4 else []) + v6:
        # Same sanity check as the reference: lo must hold loopback addresses only.
        if not _is_loopback(a.ip):
            raise CNIError(LOOPBACK_BROKEN, f"loopback interface found with non-loopback address {a.ip}")
    return v4, (v6[0] if v6 else None)


def _is_loopback(ip) -> bool:
    return (ip.version == 4 and ip.value >> 24 == 127) or (ip.version == 6 and ip.value == 1)


def cmd_add(cmd: skel.CmdArgs):
    from cnilib.types import Interface, IPConfig, Result

    v4, v6 = netns.run_in(cmd.netns, _up_and_addresses)
    prev = cmd.conf.prev_result()
    if prev is not None:
        return prev
    r = Result(cmd.conf.cni_version, [Interface(cmd.ifname, "00:00:00:00:00:00", cmd.netns)])
    for a in (v4, v6):
        if a is not None:
            r.ips.append(IPConfig(a, None, 0))
    return r


def _down() -> None:
    from cnilib import ifaddr

    ifaddr.set_up(LO, False)


def cmd_del(cmd: skel.CmdArgs) -> None:
    if not cmd.netns:
        return
    try:
        netns.run_in(cmd.netns, _down)
    except netns.NetnsGone:
        return  # already gone with its namespace: nothing left to undo


def _verify(prev) -> None:
    from cnilib import ifaddr

    if not ifaddr.get_flags(LO) & ifaddr.IFF_UP:
        raise CNIError(LOOPBACK_BROKEN, "loopback interface is down")
    if prev is None:
        return
    have = {str(a) for a in ifaddr.ipv6_addresses(LO)}
    v4 = ifaddr.ipv4_address(LO)
    if v4 is not None:
        have.add(str(v4))
    for ipc in prev.ips:
        iface = prev.interfaces[ipc.interface] if ipc.interface is not None and ipc.interface < len(prev.interfaces) else None
        if iface is not None and iface.name == LO and str(ipc.address) not in have:
            raise CNIError(LOOPBACK_BROKEN, f"loopback address {ipc.address} is missing")


def cmd_check(cmd: skel.CmdArgs) -> None:
    netns.run_in(cmd.netns, _verify, cmd.conf.prev_result())


PLUGIN = skel.Plugin("loopback", "loopback", add=cmd_add, delete=cmd_del, check=cmd_check)


def main() -> None:
    skel.run(PLUGIN)
