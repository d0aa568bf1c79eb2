"""static: IPAM that gives an attachment the addresses its config or its runtime names.

ADD answers ``ipam.addresses`` (or the addresses of a higher source: CNI_ARGS ``IP``,
``args.cni.ips``, ``runtimeConfig.ips``, with CNI_ARGS ``GATEWAY``; ``resolve.py`` holds
the precedence and where it differs from the reference's) with ``ipam.routes`` and
``ipam.dns``, in the config's cniVersion; it keeps no state and touches nothing. DEL and
GC have nothing to release and succeed (DEL reads no config: a config broken after ADD
never blocks a teardown). STATUS succeeds when the ``ipam`` object is valid. CHECK
compares the addresses with prevResult and with what CNI_IFNAME holds in the container
(``check.py``).

Beyond the reference: every bad value is code 7 (code 4 in CNI_ARGS) naming the key and
the value, before anything is answered; zero addresses and a gateway outside every
address's subnet are errors; CHECK looks at the kernel. Standard library only on every
verb (CHECK's netlink dump is packed by hand, ``cnilib.rawaddr``).
"""

from __future__ import annotations

from cnilib import skel

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib.types import Result


def _known_args(cmd: skel.CmdArgs) -> None:
    from cnilib import args as _args

    from .resolve import ENV_KEYS

    _args.check_known(cmd.args, ENV_KEYS)


def cmd_add(cmd: skel.CmdArgs) -> Result:
    from cnilib.types import IPConfig, Result

    from . import config
    from .resolve import addresses

    _known_args(cmd)
    cfg = config.load(cmd.conf)
    entries = addresses(cfg, cmd.conf, cmd.args)
    return Result(cmd.conf.cni_version, [], [IPConfig(e.net, e.gateway) for e in entries], cfg.routes, cfg.dns)


def cmd_check(cmd: skel.CmdArgs) -> None:
    from .check import check

    _known_args(cmd)
    check(cmd)


def cmd_status(cmd: skel.CmdArgs) -> None:
    """Ready when the ``ipam`` object is valid (code 7 naming the bad key otherwise): the
    runtime's sources are per attachment, so an empty ``addresses`` is no error here."""
    from . import config

    config.load(cmd.conf)


# DEL and GC: None is a no-op success in the skel (nothing allocated, nothing to collect).
PLUGIN = skel.Plugin("static", "ipam", add=cmd_add, delete=None, check=cmd_check, gc=None, status=cmd_status)


def main() -> None:
    """Entry point of the ``static`` executable."""
    skel.run(PLUGIN)
