"""tuning ADD: save what will change, then write the sysctls and set MAC, promisc, MTU,
all-multicast and txqueuelen of CNI_IFNAME in the container, in the reference's order.

The backup file is written before the first change (a process killed half-way leaves
what DEL needs) and records each value as it was before the *first* ADD of the
attachment (an ADD repeated without DEL keeps the original values; the reference's
second ADD records its own tuned values as the originals). A failed ADD reverts every
change it made, newest first, and puts the backup file back as it was.
"""

from __future__ import annotations

from cnilib import netns, netsysctl
from cnilib.errors import INVALID_CONFIG, IO_FAILURE, NO_SUCH_INTERFACE, CNIError
from cnilib.undo import Undo

from . import allowlist, backup, config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.rawlink import Socket
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

    from .config import TuningConf

EPERM, ENOENT, EACCES, EINVAL, ERANGE, EADDRNOTAVAIL = 1, 2, 13, 22, 34, 99


def prev_result(cmd: "CmdArgs") -> "Result":
    """prevResult parsed (code 7 when there is none: tuning only runs chained)."""
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "tuning must be called as a chained plugin: prevResult is missing "
                                       "(Required prevResult missing)")
    return cmd.conf.prev_result()  # type: ignore[return-value]


def sysctl_entries(cfg: "TuningConf", ifname: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(key as written, entry path components, value) of each sysctl; code 7 naming a key
    that is not a network sysctl."""
    out = []
    for key, value in cfg.sysctl.items():
        try:
            parts = netsysctl.resolve(key, ifname)
        except ValueError as e:
            raise CNIError(INVALID_CONFIG, f"invalid net sysctl key {key!r}: {e}") from None
        out.append((key, parts, value))
    return out


def sysctl_error(key: str, parts: tuple[str, ...], value: str | None, e: OSError) -> CNIError:
    """A refused sysctl read or write as a CNI error: code 7 when the config is to blame
    (no such entry, a value the kernel refuses, a read-only entry), else 5."""
    where = f"sysctl {key!r} (/proc/sys/{netsysctl.text(parts)})"
    if e.errno == ENOENT:
        return CNIError(INVALID_CONFIG, f"invalid {where}: no such entry in the container's namespace")
    if e.errno in (EINVAL, ERANGE):
        return CNIError(INVALID_CONFIG, f"invalid {where}: the kernel refused the value {value!r}")
    if e.errno in (EACCES, EPERM):
        return CNIError(INVALID_CONFIG, f"invalid {where}: the entry cannot be written")
    return CNIError(IO_FAILURE, f"{where}: {e.strerror or e}")


def link_error(key: str, value: object, e: OSError) -> CNIError:
    if e.errno in (EINVAL, ERANGE, EADDRNOTAVAIL):
        return CNIError(INVALID_CONFIG, f"invalid {key} {value!r}: the kernel refused it ({e.strerror})")
    return CNIError(IO_FAILURE, f"cannot set {key} {value!r}: {e.strerror or e}")


def add(cmd: "CmdArgs") -> "Result":
    cfg = config.load(cmd)
    config.check_no_duplicates(cmd)
    prev = prev_result(cmd)
    allowlist.check(list(cfg.sysctl))
    entries = sysctl_entries(cfg, cmd.ifname)
    if entries or cfg.changes_link():
        netns.run_in(cmd.netns, _apply, cmd, cfg, entries)
    if cfg.mac:
        for itf in prev.interfaces:  # as the reference: every interface of that name
            if itf.name == cmd.ifname:
                itf.mac = cfg.mac
    return prev


def _apply(cmd: "CmdArgs", cfg: "TuningConf", entries: list) -> None:
    """Runs in the container's namespace."""
    undo = Undo("tuning: ADD")
    store = backup.Store.open(cfg.data_dir, create=True)
    sock = None
    if cfg.changes_link():  # only link changes need netlink (a sysctl-only ADD never loads it)
        from cnilib import rawlink

        sock = rawlink.Socket()
    try:
        try:
            _change(cmd, cfg, entries, store, sock, undo)
        except BaseException:
            undo.run()
            raise
    finally:
        if sock is not None:
            sock.close()
        store.close()


def _change(cmd: "CmdArgs", cfg: "TuningConf", entries: list, store: backup.Store,
            sock: "Socket | None", undo: Undo) -> None:
    st = None
    if sock is not None:
        from cnilib import rawlink

        st = rawlink.get(sock, cmd.ifname)
        if st is None:
            raise CNIError(NO_SUCH_INTERFACE, f"interface {cmd.ifname} is not in the container's network "
                                              f"namespace {cmd.netns}")
    # What is there now: for the backup file (unless an earlier ADD recorded it) and undo.
    before: dict[str, str] = {}
    for key, parts, value in entries:
        path = netsysctl.text(parts)
        if path in before:
            continue
        try:
            before[path] = netsysctl.read(parts)
        except OSError as e:
            if e.errno not in (EACCES, EPERM):
                raise sysctl_error(key, parts, value, e) from None
            # A write-only entry (route/flush): written, never restored.
    prior = store.load(cmd.container_id, cmd.ifname)
    b = (backup.Backup.from_dict(prior.to_dict()) if prior is not None  # prior stays as it was, for undo
         else backup.Backup(cfg.name, cmd.container_id, cmd.ifname))
    b.network, b.container_id, b.ifname = cfg.name, cmd.container_id, cmd.ifname
    for path, value in before.items():
        b.sysctl.setdefault(path, value)
    if st is not None:
        if cfg.mac and b.mac is None:
            b.mac = st.mac
        if cfg.promisc and b.promisc is None:
            b.promisc = st.promisc
        if cfg.mtu and b.mtu is None:
            b.mtu = st.mtu
        if cfg.allmulti is not None and b.allmulti is None:
            b.allmulti = st.allmulti
        if cfg.txqlen is not None and b.txqlen is None:
            b.txqlen = st.txqlen
    if not b.is_empty():
        undo.push("backup file", _put_back, store, cmd, prior)
        try:
            store.save(b)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot write the tuning backup file in {store.path}: "
                                       f"{e.strerror or e}") from None

    for key, parts, value in entries:
        path = netsysctl.text(parts)
        if path in before:
            undo.push(f"sysctl {path}", netsysctl.write, parts, before[path])
        try:
            netsysctl.write(parts, value)
        except OSError as e:
            raise sysctl_error(key, parts, value, e) from None
    if st is None:
        return
    i = st.index

    def step(key: str, value: object, do, revert) -> None:
        undo.push(key, revert)
        try:
            do()
        except OSError as e:
            raise link_error(key, value, e) from None

    if cfg.mac and cfg.mac != st.mac:
        step(cfg.mac_source, cfg.mac, lambda: rawlink.set_link(sock, i, mac=cfg.mac),
             lambda: rawlink.set_link(sock, i, mac=st.mac))
    if cfg.promisc and not st.promisc:
        step("promisc", True, lambda: rawlink.set_link(sock, i, promisc=True),
             lambda: rawlink.set_link(sock, i, promisc=False))
    if cfg.mtu and cfg.mtu != st.mtu:
        step("mtu", cfg.mtu, lambda: rawlink.set_link(sock, i, mtu=cfg.mtu),
             lambda: rawlink.set_link(sock, i, mtu=st.mtu))
    if cfg.allmulti is not None and cfg.allmulti != st.allmulti:
        step("allmulti", cfg.allmulti, lambda: rawlink.set_link(sock, i, allmulti=cfg.allmulti),
             lambda: rawlink.set_link(sock, i, allmulti=st.allmulti))
    if cfg.txqlen is not None and cfg.txqlen != st.txqlen:
        step("txQLen", cfg.txqlen, lambda: rawlink.set_link(sock, i, txqlen=cfg.txqlen),
             lambda: rawlink.set_link(sock, i, txqlen=st.txqlen))


def _put_back(store: backup.Store, cmd: "CmdArgs", prior: "backup.Backup | None") -> None:
    """The backup file as it was before this ADD."""
    if prior is None:
        store.remove(cmd.container_id, cmd.ifname)
    else:
        store.save(prior)
