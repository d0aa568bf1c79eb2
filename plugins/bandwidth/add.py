"""bandwidth ADD: a TBF on the host veth for ingress (into the container); for egress an
IFB with a TBF, and on the host veth an ingress qdisc with a match-all u32 filter
redirecting everything the container sends to the IFB (what the reference builds).

Order: the IFB and its TBF exist before the redirect, so no packet is redirected to an
unshaped device. Every step pushes its undo: a failed ADD leaves no IFB and no qdisc (the
reference leaves whatever it made). A qdisc of someone else's already on the veth (an
exclusive create meets EEXIST) is code 101 naming it, nothing changed.
"""

from __future__ import annotations

from cnilib import tc
from cnilib.errors import ALREADY_ALLOCATED, INVALID_CONFIG, IO_FAILURE, CNIError
from cnilib.undo import Undo
from cnilib import rawlink as links

from . import config, hostveth, ifb, shape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

EEXIST, EINVAL, ERANGE = 17, 22, 34
ROOT_HANDLE = tc.handle(1)


def prev_result(cmd: CmdArgs) -> Result:
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "bandwidth must be called as a chained plugin: prevResult is missing")
    return cmd.conf.prev_result()  # type: ignore[return-value]


def buckets(cfg: config.BandwidthConf, mtu: int) -> dict[str, shape.Bucket]:
    """The TBF of each shaped direction (code 7 for one that could not pass a packet)."""
    try:
        ticks = shape.tick_in_usec()
    except (OSError, ValueError, IndexError, ZeroDivisionError) as e:
        raise CNIError(IO_FAILURE, f"cannot read the packet scheduler's clock from {shape.PSCHED}: {e}") from None
    out = {}
    for d in config.DIRECTIONS:
        lim = getattr(cfg, d)
        if lim is not None:
            out[d] = shape.for_limit(lim, d, mtu, ticks)
    return out


def add(cmd: CmdArgs) -> Result:
    cfg = config.load(cmd)
    prev = prev_result(cmd)
    if not cfg.shaped():
        return prev
    from cnilib.types import Interface

    with links.Socket() as sock:
        host = hostveth.peer(sock, cmd.netns, cmd.ifname)
        hostveth.check_listed(prev, host)
        bk = buckets(cfg, host.mtu)
        undo = Undo("bandwidth: ADD")
        try:
            dev = _shape(sock, cmd, host, bk, undo)
        except BaseException:
            undo.run()
            raise
    if dev is not None:
        prev.interfaces.append(Interface(dev.name, dev.mac))
    return prev


def _kernel_error(what: str, e: OSError) -> CNIError:
    if e.errno == EEXIST:
        return CNIError(ALREADY_ALLOCATED, f"{what}: one is already there (another shaper holds it)")
    if e.errno in (EINVAL, ERANGE):
        return CNIError(INVALID_CONFIG, f"{what}: the kernel refused it ({e.strerror})")
    return CNIError(IO_FAILURE, f"{what}: {e.strerror or e}")


def _shape(sock: links.Socket, cmd: CmdArgs, host, bk: dict[str, shape.Bucket], undo: Undo):
    """Runs the changes; returns the IFB link (None without egress shaping)."""
    ing = bk.get("ingress")
    if ing is not None:
        what = f"adding the ingress tbf qdisc on host veth {host.name}"
        try:
            tc.add_qdisc(sock, tc.tbf_request(host.index, ing.rate, ing.buffer, ing.limit))
        except OSError as e:
            raise _kernel_error(what, e) from None
        undo.push(what, tc.delete_qdisc, sock, host.index, ROOT_HANDLE, tc.TC_H_ROOT)
    eg = bk.get("egress")
    if eg is None:
        return None
    tag = ifb.owner_tag(cmd)
    name = ifb.name(tag)
    try:
        dev = ifb.create(sock, name, host.mtu, tag)
    except OSError as e:
        if e.errno == EEXIST:  # not ours to delete
            raise CNIError(ALREADY_ALLOCATED, f"IFB {name} already exists: the attachment ({cmd.conf.name}, "
                                              f"{cmd.container_id}, {cmd.ifname}) is already shaped") from None
        undo.push(f"creating IFB {name}", ifb.delete, sock, name, True)  # half made: tagging failed
        raise _kernel_error(f"creating IFB {name}", e) from None
    undo.push(f"creating IFB {name}", ifb.delete, sock, name, True)
    try:
        tc.add_qdisc(sock, tc.tbf_request(dev.index, eg.rate, eg.buffer, eg.limit))
    except OSError as e:
        raise _kernel_error(f"adding the egress tbf qdisc on {name}", e) from None
    what = f"adding the ingress qdisc on host veth {host.name}"
    try:
        tc.add_qdisc(sock, tc.ingress_request(host.index))
    except OSError as e:
        raise _kernel_error(what, e) from None
    undo.push(what, tc.delete_qdisc, sock, host.index, tc.INGRESS_HANDLE, tc.TC_H_INGRESS)
    try:
        tc.add_filter(sock, tc.u32_redirect_request(host.index, dev.index))
    except OSError as e:
        raise _kernel_error(f"adding the u32 filter redirecting {host.name} to {name}", e) from None
    return dev
