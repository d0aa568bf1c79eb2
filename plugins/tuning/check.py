"""tuning CHECK: what ADD set is still so in the container.

Each sysctl's value equals the configured one once whitespace is normalised (the kernel
prints ``tcp_rmem`` with tabs; the reference compares the strings exactly, so such a
sysctl never passes its CHECK), ``IFNAME`` substituted (Debian's reference 1.1.1 does not
substitute it in CHECK); MAC, MTU, all-multicast and txqueuelen equal when configured;
promisc on when configured (``promisc: false`` means "no change", so, unlike the
reference, a later plugin turning promisc on does not fail our CHECK).
"""

from __future__ import annotations

from cnilib import netns, netsysctl
from cnilib.errors import NO_SUCH_INTERFACE, NOT_AS_ADDED, NOT_FOUND, CNIError

from . import add, config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

    from .config import TuningConf


def check(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd)
    config.check_no_duplicates(cmd)
    add.prev_result(cmd)
    entries = add.sysctl_entries(cfg, cmd.ifname)
    netns.run_in(cmd.netns, _verify, cmd, cfg, entries)


def _verify(cmd: "CmdArgs", cfg: "TuningConf", entries: list) -> None:
    from cnilib import rawlink

    for key, parts, want in entries:
        path = "/proc/sys/" + netsysctl.text(parts)
        try:
            have = netsysctl.read(parts)
        except OSError as e:
            raise CNIError(NOT_FOUND, f"sysctl {key!r}: cannot read {path}: {e.strerror or e}") from None
        if not netsysctl.same_value(want, have):
            raise CNIError(NOT_AS_ADDED, f"sysctl {key!r}: {path} is {have!r}, the config says {want!r}")
    with rawlink.Socket() as sock:
        st = rawlink.get(sock, cmd.ifname)
    if st is None:
        raise CNIError(NO_SUCH_INTERFACE, f"Cannot find container link {cmd.ifname}")
    problems = []
    if cfg.mac and st.mac != cfg.mac:
        problems.append(f"MAC is {st.mac}, the config says {cfg.mac}")
    if cfg.promisc and not st.promisc:
        problems.append("promiscuous mode is off, the config says promisc true")
    if cfg.mtu and st.mtu != cfg.mtu:
        problems.append(f"MTU is {st.mtu}, the config says {cfg.mtu}")
    if cfg.allmulti is not None and st.allmulti != cfg.allmulti:
        problems.append(f"all-multicast is {'on' if st.allmulti else 'off'}, the config says allmulti "
                        f"{'true' if cfg.allmulti else 'false'}")
    if cfg.txqlen is not None and st.txqlen != cfg.txqlen:
        problems.append(f"txqueuelen is {st.txqlen}, the config says txQLen {cfg.txqlen}")
    if problems:
        raise CNIError(NOT_AS_ADDED, f"interface {cmd.ifname}: " + "; ".join(problems))
