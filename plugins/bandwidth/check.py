"""bandwidth CHECK: what ADD made is there, as ADD made it.

Ingress: the host veth's root qdisc is a TBF ``1:`` with ADD's rate, buffer and limit.
Egress: the IFB exists, is an IFB and up, its root TBF has ADD's parameters, and the host
veth has an ingress qdisc with a match-all filter redirecting to the IFB. The reference
checks the TBFs only up to the first non-TBF qdisc of its listing (so usually nothing of
the egress side on the veth) and never the filter. Missing: code 102; there but changed:
code 103. No shaping configured: nothing to check.
"""

from __future__ import annotations

from cnilib import tc
from cnilib.errors import NOT_AS_ADDED, NOT_FOUND, CNIError
from cnilib import rawlink as links

from . import add, config, hostveth, ifb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

    from .shape import Bucket


def check(cmd: CmdArgs) -> None:
    cfg = config.load(cmd)
    prev = add.prev_result(cmd)
    if not cfg.shaped():
        return
    with links.Socket() as sock:
        host = hostveth.peer(sock, cmd.netns, cmd.ifname)
        hostveth.check_listed(prev, host)
        bk = add.buckets(cfg, host.mtu)
        if "ingress" in bk:
            _tbf(sock, host.index, f"host veth {host.name}", bk["ingress"], "ingress")
        if "egress" in bk:
            name = ifb.name(ifb.owner_tag(cmd))
            dev = links.get(sock, name)
            if dev is None:
                raise CNIError(NOT_FOUND, f"egress shaping: IFB {name} does not exist")
            if dev.kind != "ifb":
                raise CNIError(NOT_AS_ADDED, f"egress shaping: {name} is a {dev.kind or 'device'}, not an IFB")
            if not dev.flags & links.IFF_UP:
                raise CNIError(NOT_AS_ADDED, f"egress shaping: IFB {name} is down")
            _tbf(sock, dev.index, f"IFB {name}", bk["egress"], "egress")
            if tc.ingress_qdisc(tc.qdiscs(sock, host.index)) is None:
                raise CNIError(NOT_FOUND, f"egress shaping: host veth {host.name} has no ingress qdisc")
            if not any(f.redirects_to(dev.index) for f in tc.filters(sock, host.index)):
                raise CNIError(NOT_FOUND, f"egress shaping: no filter on host veth {host.name} redirects its "
                                          f"traffic to IFB {name}")


def _tbf(sock: links.Socket, index: int, where: str, want: Bucket, direction: str) -> None:
    root = tc.root_qdisc(tc.qdiscs(sock, index))
    if root is None or root.kind != "tbf" or root.handle != add.ROOT_HANDLE or root.tbf is None:
        have = f"{root.kind} {tc.handle_text(root.handle)}" if root is not None else "none"
        raise CNIError(NOT_FOUND, f"{direction} shaping: {where} has no root tbf qdisc 1: (root qdisc: {have})")
    t = root.tbf
    diffs = [f"{k} is {a}, ADD made {b}" for k, a, b in (("rate (bytes/s)", t.rate, want.rate),
                                                          ("buffer (ticks)", t.buffer, want.buffer),
                                                          ("limit (bytes)", t.limit, want.limit)) if a != b]
    if diffs:
        raise CNIError(NOT_AS_ADDED, f"{direction} shaping: the tbf qdisc on {where}: " + "; ".join(diffs))
