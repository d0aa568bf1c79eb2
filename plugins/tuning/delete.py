"""tuning DEL and GC.

DEL puts back what ADD changed, from the attachment's backup file: the sysctls (newest
first; the reference never restores them, which matters for interfaces that go back to
the host, such as host-device or SR-IOV ones), then MTU, MAC, promisc, all-multicast and
txqueuelen as the reference does. An entry or interface that is gone has nothing left to
restore. The file is removed once everything is restored; a restore the kernel refuses
fails DEL (code 5, naming every failure) and keeps the file for the runtime's retry.
With CNI_NETNS empty or the namespace gone, nothing can be restored: the file is removed
(the reference leaves it behind for ever). DEL needs only ``dataDir`` of the config.

GC removes the backup files of this network's attachments not in
``cni.dev/valid-attachments`` (their containers are gone; nothing is restored).
"""

from __future__ import annotations

from cnilib import netns, netsysctl
from cnilib.errors import IO_FAILURE, CNIError, Teardown

from . import backup, config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

ENOENT, ENODEV = 2, 19


def delete(cmd: "CmdArgs") -> None:
    cfg = config.load(cmd, strict=False)
    store = backup.Store.open(cfg.data_dir, create=False)
    if store is None:
        return
    with store:
        b = store.load(cmd.container_id, cmd.ifname)
        if b is None:
            return
        if cmd.netns:
            try:
                netns.run_in(cmd.netns, restore, b, cmd.ifname)
            except netns.NetnsGone:
                pass  # the namespace is gone, and with it everything to restore
        store.remove(cmd.container_id, cmd.ifname)


def restore(b: backup.Backup, ifname: str) -> None:
    """Put the backup's values back (in the container's namespace); CNIError listing what
    the kernel refused."""
    td = Teardown("tuning: DEL", os_code=IO_FAILURE)
    for path, value in reversed(list(b.sysctl.items())):
        try:
            parts = netsysctl.from_text(path)  # only ever a net/... entry, whatever the file says
        except ValueError:
            continue
        try:
            netsysctl.write(parts, value)
        except FileNotFoundError:
            pass  # an entry of an interface that is gone
        except OSError as e:
            td.add(CNIError(IO_FAILURE, f"failed to restore sysctl /proc/sys/{path} to {value!r}: {e.strerror or e}"))
    if b.mac or b.mtu or b.promisc is not None or b.allmulti is not None or b.txqlen is not None:
        from cnilib import rawlink  # only link attributes need netlink

        with rawlink.Socket() as sock:
            st = rawlink.get(sock, ifname)
            if st is not None:
                i = st.index
                if b.mtu:
                    td.attempt("failed to restore MTU", rawlink.set_link, sock, i, mtu=b.mtu)
                if b.mac:
                    td.attempt("failed to restore MAC address", rawlink.set_link, sock, i, mac=b.mac)
                if b.promisc is not None:
                    td.attempt("failed to restore promiscuous mode", rawlink.set_link, sock, i, promisc=b.promisc)
                if b.allmulti is not None:
                    td.attempt("failed to restore all-multicast mode", rawlink.set_link, sock, i,
                               allmulti=b.allmulti)
                if b.txqlen is not None:
                    td.attempt("failed to restore txqueuelen", rawlink.set_link, sock, i, txqlen=b.txqlen)
    td.finish()


def gc(cmd: "CmdArgs") -> None:
    keep = cmd.conf.valid_attachments()
    if keep is None:
        return
    cfg = config.load(cmd, strict=False)
    store = backup.Store.open(cfg.data_dir, create=False)
    if store is None:
        return
    with store:
        for name, b in store.of_network(cmd.conf.name or ""):
            if (b.container_id, b.ifname) not in keep:
                store.remove_name(name)
