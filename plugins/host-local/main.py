"""host-local: IPAM from address ranges, with leases kept as files on the host.

ADD gives the attachment one address from every range set (a requested one if CNI_ARGS
``IP``, ``args.cni.ips`` or ``runtimeConfig.ips`` names one in the set, else the next free
one round-robin) and returns them with the configured routes and resolv.conf DNS; DEL
releases the attachment's leases; CHECK verifies them. Beyond the reference (which stops
at CNI 1.0.0): GC releases every lease whose attachment is not in
``cni.dev/valid-attachments``, and STATUS reports whether the store is writable and every
range set still has a free address.

Every verb runs under one ``flock`` of ``<dataDir>/<network>/lock`` (the file the
reference locks too; a holder that keeps it past ``CNIPY_LOCK_TIMEOUT`` seconds, default
30, makes us fail with code 11 naming it), and ADD is all-or-nothing: on any failure the
leases it made are removed and no ``last_reserved_ip`` file moves.
"""

from __future__ import annotations

import sys

from cnilib import skel
from cnilib.errors import ALREADY_ALLOCATED, IO_FAILURE, NO_ADDRESS_AVAILABLE, NOT_AVAILABLE, NOT_FOUND, CNIError

from . import config

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib.store import Store  # noqa: F401
    from cnilib.types import Result  # noqa: F401

    from .allocator import RangeSet, Request  # noqa: F401


def _open_store(cfg: config.IPAMConfig, create: bool) -> Store | None:
    from cnilib.store import Store

    return Store.open(cfg.data_dir, cfg.name, create=create)


def _io_error(what: str, e: OSError) -> CNIError:
    return CNIError(IO_FAILURE, f"{what}: {e.strerror or e}")


def _mine(leases: list, cid: str, ifname: str) -> list:
    """The attachment's leases as the reference finds them for DEL: exact matches, or,
    only when there are none, legacy files holding the container ID alone."""
    exact = [lease for lease in leases if lease.is_exact(cid, ifname)]
    return exact or [lease for lease in leases if lease.is_legacy(cid)]


# -- ADD -------------------------------------------------------------------------------

def cmd_add(cmd: skel.CmdArgs) -> Result:
    from cnilib import args as _args
    from cnilib.ip import Net
    from cnilib.types import DNS, IPConfig, Result

    from .allocator import assign_requests

    _args.check_known(cmd.args)
    cfg = config.load(cmd.conf, cmd.args)
    dns = DNS()
    if cfg.resolv_conf:
        from .dns import parse_resolv_conf

        dns = parse_resolv_conf(cfg.resolv_conf)
    # Everything that can be decided without the store is decided before it is touched.
    requested = assign_requests(cfg.sets, cfg.requests)
    store = _open_store(cfg, create=True)
    with store:
        got = _allocate(store, cfg.sets, requested, cmd.container_id, cmd.ifname)
    ips = [IPConfig(Net(ip, r.subnet.prefixlen), r.ip(r.gateway)) for ip, r in got]
    return Result(cmd.conf.cni_version, [], ips, list(cfg.routes), dns)


def _allocate(store: Store, sets: list, requested: list, cid: str, ifname: str) -> list:
    """One address per set under the lock; all or nothing."""
    try:
        taken, held = store.scan_for_add(cid, ifname)
    except OSError as e:
        raise _io_error(f"cannot list the lease store {store.path}", e) from None
    # As the reference: an attachment holds at most one address per set (the spec forbids
    # a second ADD for the same attachment); legacy leases of the container count too.
    created: list = []
    try:
        for idx, rs in enumerate(sets):
            for lease in held:
                if rs.contains(lease.ip):
                    raise CNIError(ALREADY_ALLOCATED, f"{lease.ip} has been allocated to {cid} ({ifname}) in "
                                   f"range set {idx} ({rs.where}), duplicate allocation is not allowed")
            req = requested[idx]
            if req is not None:
                got = _reserve_requested(store, rs, req, cid, ifname)
            else:
                got = _reserve_next(store, rs, idx, taken, cid, ifname)
            created.append(got)
    except BaseException:
        for ip, _ in created:
            try:
                store.remove(str(ip))
            except OSError as e:  # keep undoing; report the first problem
                sys.stderr.write(f"host-local: cannot remove lease {ip} while undoing a failed ADD: {e}\n")
        raise
    # Only now, with every set served, move the round-robin positions (the reference moves
    # them on every reservation, even when the ADD then fails).
    for idx, (ip, _) in enumerate(created):
        try:
            store.set_last_reserved(idx, ip)
        except OSError as e:  # a hint only: losing it costs round-robin, never correctness
            sys.stderr.write(f"host-local: cannot record last_reserved_ip.{idx}: {e}\n")
    return created


def _reserve_requested(store: Store, rs: RangeSet, req: Request, cid: str, ifname: str) -> tuple:
    r = rs.range_for(req.ip)  # assign_requests guarantees it is inside, not the gateway
    try:
        ok = store.reserve(req.ip, cid, ifname)
    except OSError as e:
        raise _io_error(f"cannot write the lease for {req.ip} in {store.path}", e) from None
    if not ok:
        owner_cid, owner_ifname = store.owner_of(str(req.ip))
        by = ""
        if owner_cid:
            by = f" (leased to container {owner_cid}" + (f", {owner_ifname})" if owner_ifname else ")")
        raise CNIError(ALREADY_ALLOCATED, f"{req} is not available in range set {rs} ({rs.where}){by}")
    return req.ip, r


def _reserve_next(store: Store, rs: RangeSet, idx: int, taken: set, cid: str, ifname: str) -> tuple:
    """``taken``: the names of the leases (an address's text form is its file name)."""
    for value, r in rs.walk(store.last_reserved(idx)):
        ip = r.ip(value)
        if str(ip) in taken:
            continue  # leased: no need to try the O_EXCL create
        try:
            if store.reserve(ip, cid, ifname):
                return ip, r
        except OSError as e:
            raise _io_error(f"cannot write the lease for {ip} in {store.path}", e) from None
    raise CNIError(NO_ADDRESS_AVAILABLE, f"no IP addresses available in range set {idx} ({rs.where}): {rs}")


# -- DEL -------------------------------------------------------------------------------

def cmd_del(cmd: skel.CmdArgs) -> None:
    # Only the store's location is needed: a DEL must release leases even when the rest
    # of the config has become invalid, and it never fails for an unknown attachment.
    cfg = config.load_store_location(cmd.conf)
    store = _open_store(cfg, create=False)
    if store is None:
        return  # nothing was ever leased on this network
    with store:
        try:
            leases = store.leases()
        except OSError as e:
            raise _io_error(f"cannot list the lease store {store.path}", e) from None
        # A lease a killed ADD was writing (never visible as one): the DEL that follows a
        # killed ADD is the runtime's cleanup, and may be the last call on this network.
        store.collect_temp()
        _remove_all(store, _mine(leases, cmd.container_id, cmd.ifname))


def _remove_all(store: Store, doomed: list) -> None:
    """Remove every lease in ``doomed``, carrying on past failures, then report them."""
    from cnilib.errors import Teardown

    td = Teardown("host-local", os_code=IO_FAILURE)
    for lease in doomed:
        td.attempt(f"cannot release lease {lease.name} in {store.path}", store.remove, lease.name)
    td.finish()


# -- CHECK -----------------------------------------------------------------------------

def cmd_check(cmd: skel.CmdArgs) -> None:
    from cnilib import args as _args

    _args.check_known(cmd.args)
    cfg = config.load(cmd.conf)
    cid, ifname = cmd.container_id, cmd.ifname
    store = _open_store(cfg, create=False)
    leases = []
    if store is not None:
        with store:
            try:
                leases = store.leases()
            except OSError as e:
                raise _io_error(f"cannot list the lease store {store.path}", e) from None
    mine = [lease for lease in leases if lease.is_exact(cid, ifname) or lease.is_legacy(cid)]
    if not mine:
        raise CNIError(NOT_FOUND, f"host-local: failed to find an address leased to container {cid} "
                       f"({ifname}) on network {cfg.name}")
    # Beyond the reference: every address of prevResult inside our ranges must still be
    # this attachment's lease (a lease removed or taken over is an alteration, spec G.31).
    prev = cmd.conf.prev_result()
    if prev is None:
        return
    owned = {lease.ip for lease in mine}
    for ipc in prev.ips:
        ip = ipc.address.ip
        if ip not in owned and any(rs.contains(ip) for rs in cfg.sets):
            raise CNIError(NOT_FOUND, f"host-local: {ip} from prevResult is not leased to container {cid} "
                           f"({ifname}) on network {cfg.name}")


# -- GC --------------------------------------------------------------------------------

def cmd_gc(cmd: skel.CmdArgs) -> None:
    valid = cmd.conf.valid_attachments()
    cfg = config.load_store_location(cmd.conf)
    if valid is None:
        return
    # Lease files are compared with surrounding whitespace trimmed (as the reference reads
    # them), so the IDs we keep are too.
    valid = {(cid.strip(), ifname) for cid, ifname in valid}
    store = _open_store(cfg, create=False)
    if store is None:
        return
    from cnilib.conf import valid_name

    valid_cids = {cid for cid, _ in valid}
    with store:
        try:
            leases = store.leases()
        except OSError as e:
            raise _io_error(f"cannot list the lease store {store.path}", e) from None
        store.collect_temp()  # a lease a killed ADD was writing: never visible as one
        doomed = []
        for lease in leases:
            if not lease.readable:
                continue  # a FIFO, device, socket, link or oversized file: not ours to judge
            if lease.ifname is not None:
                stale = (lease.cid, lease.ifname) not in valid
            elif lease.cid == "":
                # An empty lease: a writer died between create and write (the reference,
                # or our versions before leases were made atomically).
                stale = True
            elif valid_name(lease.cid):
                stale = lease.cid not in valid_cids  # legacy lease: any ifname of the container
            else:
                continue  # content we cannot attribute: not ours to judge, keep it
            if stale:
                doomed.append(lease)
        _remove_all(store, doomed)


# -- STATUS ----------------------------------------------------------------------------

def cmd_status(cmd: skel.CmdArgs) -> None:
    cfg = config.load(cmd.conf)
    try:
        store = _open_store(cfg, create=True)
        with store:
            store.probe()
            leases = store.leases()
    except CNIError as e:
        raise CNIError(NOT_AVAILABLE, f"host-local: data dir not usable: {e.msg}") from None
    except OSError as e:
        raise CNIError(NOT_AVAILABLE, f"host-local: data dir {cfg.data_dir}/{cfg.name} not usable: "
                       f"{e.strerror or e}") from None
    taken = {4: set(), 6: set()}
    for lease in leases:
        taken[lease.ip.version].add(lease.ip.value)
    for idx, rs in enumerate(cfg.sets):
        if rs.free_count(taken[rs.version]) <= 0:
            raise CNIError(NOT_AVAILABLE,
                           f"host-local: no free address in range set {idx} ({rs.where}): {rs}")


PLUGIN = skel.Plugin("host-local", "ipam", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status)


def main() -> None:
    """Entry point of the ``host-local`` executable."""
    skel.run(PLUGIN)
