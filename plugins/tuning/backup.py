"""What ADD changed and DEL restores: one backup file per attachment in ``dataDir``.

Compatible with the reference's files both ways: ``<dataDir>/<containerID>_<ifname>.json``
holding ``{"mac", "promisc", "mtu", "allmulti", "txQLen"}`` (each only when ADD changed
it, the value it had before), which the reference's DEL reads and ours too. We add keys
the reference ignores: ``sysctl`` (entry path -> value before ADD, restored by our DEL;
the reference never restores sysctls) and ``network``/``containerID``/``ifname`` (so GC
removes only its own network's files). A container ID holding ``_`` (``a_b`` + ``c`` and
``a`` + ``b_c`` would share a name) or a name longer than a file name can be gets
``cnipy-<sha256>.json`` instead, which the reference does not find.

Safety (the reference creates the directory, and missing parents, mode 0600, and follows
whatever is there): directories we create are 0700 and files 0600; the directory is
opened without following a symlink in its last component; every file is opened relative
to it, non-blocking, with ``O_NOFOLLOW``, and read only when it is a regular file owned
by us (root) that nobody else can write: a FIFO, symlink or someone else's file planted
there is never read, so it cannot make DEL hang or set values of its choosing. Files are
written complete under a temporary name, then renamed into place.
"""

from __future__ import annotations

import posix

from cnilib import dirs, gokeys, jsonio
from cnilib.errors import IO_FAILURE, CNIError

FILE_MODE = 0o600
DIR_MODE = 0o700
MAX_BYTES = 1 << 20
NAME_MAX = 255
HASH_PREFIX = "cnipy-"
_S_IFMT, _S_IFREG = 0o170000, 0o100000
_READ = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK
_CREATE = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK
FIELDS = gokeys.Struct("mac", "promisc", "mtu", "allmulti", "txQLen", "sysctl", "network", "containerID", "ifname")


class Backup:
    """The values an attachment's interface and sysctls had before ADD changed them
    (None / absent: not changed)."""

    __slots__ = ("network", "container_id", "ifname", "mac", "promisc", "mtu", "allmulti", "txqlen", "sysctl")

    def __init__(self, network: str, container_id: str, ifname: str) -> None:
        self.network = network
        self.container_id = container_id
        self.ifname = ifname
        self.mac: str | None = None
        self.promisc: bool | None = None
        self.mtu: int | None = None
        self.allmulti: bool | None = None
        self.txqlen: int | None = None
        self.sysctl: dict[str, str] = {}  # "net/ipv4/..." -> value before ADD, in write order

    def is_empty(self) -> bool:
        return (self.mac is None and self.promisc is None and self.mtu is None and self.allmulti is None
                and self.txqlen is None and not self.sysctl)

    def to_dict(self) -> dict:
        """The file's content: the reference's keys in its order, then ours."""
        out: dict = {}
        if self.mac:
            out["mac"] = self.mac
        if self.promisc is not None:
            out["promisc"] = self.promisc
        if self.mtu:
            out["mtu"] = self.mtu
        if self.allmulti is not None:
            out["allmulti"] = self.allmulti
        if self.txqlen is not None:
            out["txQLen"] = self.txqlen
        if self.sysctl:
            out["sysctl"] = dict(self.sysctl)
        out["network"] = self.network
        out["containerID"] = self.container_id
        out["ifname"] = self.ifname
        return out

    @classmethod
    def from_dict(cls, d: dict, container_id: str = "", ifname: str = "") -> "Backup":
        """Read a file's content (ours or the reference's); values of the wrong type are
        ignored, as if absent."""
        f = FIELDS.read(d)

        def s(key: str, default: str = "") -> str:
            v = f.get(key)
            return v if isinstance(v, str) else default

        b = cls(s("network"), s("containerID", container_id), s("ifname", ifname))
        b.mac = s("mac") or None
        for key in ("promisc", "allmulti"):
            v = f.get(key)
            if isinstance(v, bool):
                setattr(b, key, v)
        mtu, txq = f.get("mtu"), f.get("txQLen")
        if isinstance(mtu, int) and not isinstance(mtu, bool) and mtu > 0:
            b.mtu = mtu
        if isinstance(txq, int) and not isinstance(txq, bool) and 0 <= txq <= 0xFFFFFFFF:
            b.txqlen = txq
        sysctl = f.get("sysctl")
        if isinstance(sysctl, dict):
            b.sysctl = {k: v for k, v in sysctl.items() if isinstance(k, str) and isinstance(v, str)}
        return b


def file_name(container_id: str, ifname: str) -> str:
    """The attachment's file name: the reference's where it is unambiguous and fits."""
    name = f"{container_id}_{ifname}.json"
    if "_" not in container_id and len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX:
        return name
    from cnilib.owner import sha256_hex

    return HASH_PREFIX + sha256_hex(f"{container_id}\n{ifname}") + ".json"


class Store:
    """``dataDir`` opened as a directory fd (close it with ``close``)."""

    __slots__ = ("path", "dfd")

    def __init__(self, path: str, dfd: int) -> None:
        self.path = path
        self.dfd = dfd

    @classmethod
    def open(cls, path: str, create: bool) -> "Store | None":
        """The directory (made 0700, parents too, with ``create``); None when it does not
        exist and ``create`` is False. Code 5 naming the path when it cannot be opened
        (a symlink or something else than a directory among the reasons)."""
        try:
            dfd = dirs.open_dir(path, create=create, mode=DIR_MODE, nofollow=True)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot open the tuning data directory {path}: {e.strerror or e}") from None
        return None if dfd is None else cls(path, dfd)

    def close(self) -> None:
        if self.dfd >= 0:
            posix.close(self.dfd)
            self.dfd = -1

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, name: str) -> dict | None:
        """The JSON object in ``name`` when it is a regular file of ours no one else can
        write; None otherwise (absent, special, foreign, too big, not JSON)."""
        try:
            fd = posix.open(name, _READ, dir_fd=self.dfd)
        except OSError:
            return None
        try:
            st = posix.fstat(fd)
            if (st.st_mode & _S_IFMT != _S_IFREG or st.st_uid != posix.geteuid() or st.st_mode & 0o022
                    or st.st_size > MAX_BYTES):
                return None
            data = posix.read(fd, MAX_BYTES + 1)
        except OSError:
            return None
        finally:
            posix.close(fd)
        try:
            doc = jsonio.loads(data)
        except jsonio.JSONError:
            return None
        return doc if isinstance(doc, dict) else None

    def load(self, container_id: str, ifname: str) -> Backup | None:
        """The attachment's backup, or None."""
        doc = self._read(file_name(container_id, ifname))
        return None if doc is None else Backup.from_dict(doc, container_id, ifname)

    def exists(self, container_id: str, ifname: str) -> bool:
        """Whether the attachment's name holds anything at all."""
        try:
            posix.stat(file_name(container_id, ifname), dir_fd=self.dfd, follow_symlinks=False)
            return True
        except OSError:
            return False

    def save(self, b: Backup) -> None:
        """Write ``b`` atomically (complete or not at all, 0600). OSError on failure."""
        name = file_name(b.container_id, b.ifname)
        tmp = f".tmp-{posix.getpid()}"
        data = jsonio.dumps(b.to_dict()).encode("utf-8", "surrogateescape") + b"\n"
        try:
            fd = posix.open(tmp, _CREATE, FILE_MODE, dir_fd=self.dfd)
        except FileExistsError:  # a leftover of a killed process with our PID
            posix.unlink(tmp, dir_fd=self.dfd)
            fd = posix.open(tmp, _CREATE, FILE_MODE, dir_fd=self.dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view):]
            posix.close(fd)
            fd = -1
            posix.rename(tmp, name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        except BaseException:
            if fd >= 0:
                posix.close(fd)
            try:
                posix.unlink(tmp, dir_fd=self.dfd)
            except OSError:
                pass
            raise

    def remove(self, container_id: str, ifname: str) -> None:
        """Delete the attachment's file (if it is a regular file: nothing else is ours)."""
        self.remove_name(file_name(container_id, ifname))

    def remove_name(self, name: str) -> None:
        try:
            st = posix.stat(name, dir_fd=self.dfd, follow_symlinks=False)
        except OSError:
            return
        if st.st_mode & _S_IFMT == _S_IFREG:
            try:
                posix.unlink(name, dir_fd=self.dfd)
            except FileNotFoundError:
                pass

    def of_network(self, network: str) -> list[tuple[str, Backup]]:
        """(file name, backup) of every file of ours that records ``network``."""
        out = []
        with posix.scandir(self.dfd) as it:
            for entry in it:
                if not entry.name.endswith(".json") or not entry.is_file(follow_symlinks=False):
                    continue
                doc = self._read(entry.name)
                if doc is None:
                    continue
                b = Backup.from_dict(doc)
                if b.network == network and b.container_id and b.ifname:
                    out.append((entry.name, b))
        return out
