"""dhcp: IPAM through a DHCP server, as a plugin and as the daemon that owns the leases.

One executable, two roles (as the reference): called by a runtime it is the IPAM plugin, a
thin client of the daemon (``client.py``); ``dhcp daemon [flags]`` is the long-lived
process that runs the DHCP exchanges inside the containers' namespaces, renews the leases
and persists them (``daemon.py``). The plugin side uses only the standard library's C
modules and cnilib's lean readers; the daemon imports what it likes (it starts once).

Verbs: ADD asks the daemon for the lease of (container ID, network, ifname) and prints it in
the config's version; DEL releases it (unknown: success); CHECK asks the daemon whether the
lease is held and bound, without acquiring anything, and compares prevResult's address; GC
releases this network's leases whose attachment is not in ``cni.dev/valid-attachments``;
STATUS is code 50 when the daemon does not answer.
"""

from __future__ import annotations

import sys

from cnilib import skel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.types import Result


def _netns_abs(path: str) -> str:
    # As the reference: the daemon may run with another working directory.
    if path and not path.startswith("/"):
        import posix

        return posix.getcwd() + "/" + path
    return path


def _base(cmd: skel.CmdArgs) -> dict:
    return {"containerID": cmd.container_id, "network": cmd.conf.name, "ifname": cmd.ifname}


def cmd_add(cmd: skel.CmdArgs) -> Result:
    from cnilib import args as _args
    from cnilib.types import Result

    from . import client, config

    cfg = config.load(cmd.conf, cmd.args)
    _args.check_known(cmd.args, cfg.from_args)
    req = dict(_base(cmd), op="add", netns=_netns_abs(cmd.netns), request=cfg.request,
               provide=[[code, data.hex()] for code, data in cfg.provide], priority=cfg.priority)
    res = Result.parse(client.call(cfg.socket_path, req), "1.1.0")
    res.cni_version = cmd.conf.cni_version
    return res


def cmd_del(cmd: skel.CmdArgs) -> None:
    from . import client, config

    cfg = config.load_socket(cmd.conf)
    client.call(cfg.socket_path, dict(_base(cmd), op="del"))


def cmd_check(cmd: skel.CmdArgs) -> None:
    from cnilib.errors import NOT_FOUND, CNIError
    from cnilib.types import Result

    from . import client, config

    cfg = config.load(cmd.conf, cmd.args)
    held = Result.parse(client.call(cfg.socket_path, dict(_base(cmd), op="check",
                                                          netns=_netns_abs(cmd.netns))), "1.1.0")
    prev = cmd.conf.prev_result()
    if prev is None:
        return
    ours = {str(i.address.ip) for i in held.ips}
    for ipc in prev.ips:
        if ipc.version == 4 and str(ipc.address.ip) not in ours:
            raise CNIError(NOT_FOUND, f"dhcp: {ipc.address.ip} from prevResult is not the address leased to "
                           f"{cmd.container_id} ({cmd.ifname}) on network {cmd.conf.name} "
                           f"(the lease holds {', '.join(sorted(ours)) or 'nothing'})")


def cmd_gc(cmd: skel.CmdArgs) -> None:
    from . import client, config

    valid = cmd.conf.valid_attachments()
    cfg = config.load_socket(cmd.conf)
    if valid is None:
        return  # no list: remove nothing
    client.call(cfg.socket_path, {"op": "gc", "network": cmd.conf.name,
                                  "valid": sorted([cid, ifn] for cid, ifn in valid)})


def cmd_status(cmd: skel.CmdArgs) -> None:
    from cnilib.errors import NOT_AVAILABLE, CNIError

    from . import client, config

    cfg = config.load(cmd.conf, {})
    try:
        client.call(cfg.socket_path, {"op": "status"})
    except client.DaemonUnreachable as e:
        raise CNIError(NOT_AVAILABLE, f"dhcp: {e.msg}") from None


PLUGIN = skel.Plugin("dhcp", "ipam", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc,
                     status=cmd_status)


def main() -> None:
    """Entry point of the ``dhcp`` executable: ``dhcp daemon ...`` runs the daemon, anything
    else is a CNI plugin call."""
    if len(sys.argv) > 1 and sys.argv[1] == "daemon":
        from .daemon import main as daemon_main

        sys.exit(daemon_main(sys.argv[2:]))
    skel.run(PLUGIN)
