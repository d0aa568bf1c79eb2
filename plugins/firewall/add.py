"""firewall ADD: the attachment's accept rules (and its bridge's isolation) in the chosen
backend; prevResult passed on unchanged. A failed ADD removes the attachment's rules."""

from __future__ import annotations

from cnilib.firewall import Owner

from . import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result


def add(cmd: "CmdArgs") -> "Result":
    cfg = config.load(cmd)
    prev = config.prev_result(cmd)
    spec = config.spec(cfg, prev)  # every value checked before anything is touched
    if not spec.addresses:
        return prev  # no family to open, as in the reference
    fwd = config.backend(cfg).forward()
    owner = Owner(cfg.name, cmd.container_id, cmd.ifname)
    try:
        fwd.add(owner, spec)
    except BaseException:
        try:
            fwd.delete(owner)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise
    return prev
