"""What the firewalld backend added for each attachment, kept on disk: firewalld's zone
sources carry no tag, so this record is how DEL (without prevResult), GC and a later
firewalld start or stop know what is ours.

One file per attachment under ``RECORD_DIR`` (``/run/cni-py/firewalld``: a directory
only root can create files in, 0700, refused if it is anyone else's, open to others, or
a symlink), named by the owner's tag (``cnipy:<net>:<cid>:<ifname>``, see
``cnilib.owner``: never ``.``/``..``, no ``/``), mode 0600, holding JSON::

    {"backend": "firewalld", "tag": "<owner tag>", "zone": "trusted",
     "sources": ["10.88.0.5/32", "fd00::5/128"], "isolation": ["cni0", "same-bridge"] | null}

A record is written whole to a temporary name (starting with ``.``, never a tag) and
renamed over its final name, so a crash leaves the old record or the new one, never half
of one; temporary files left by a crash are removed by the next write or GC. Records live
under ``/run`` (gone at reboot, like firewalld's runtime sources they describe).

Every writer holds the backend's lock (``LOCK_NAME``, cnilib.firewall.base.Lock) across
reading the records, talking to firewalld and writing: a source two attachments claim is
removed only when the last claim goes (the claims are read under the lock). Reading
(DEL's "is there a record at all") needs no lock and creates nothing.
"""

from __future__ import annotations

import posix

from cnilib.errors import IO_FAILURE, CNIError
from cnilib.firewall.base import LOCK_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.ip import IP

RECORD_DIR = LOCK_DIR + "/firewalld"
LOCK_NAME = "cnipy-firewalld.lock"
BACKEND = "firewalld"
TEMP_PREFIX = ".tmp."
MAX_RECORD = 1 << 16  # a record is a few hundred bytes; anything bigger is not ours
_DIR_FLAGS = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK


def source_of(ip: "IP") -> str:
    """The zone source of one address, as recorded and as firewalld is told: ``IP/32`` or
    ``IP/128``."""
    return f"{ip}/{ip.bits}"


class Record:
    """One attachment's firewalld state: the zone and the sources ADD added (or shares
    with another attachment), and the bridge isolation it asked for (kept by the forward
    backend, named here for CHECK and for people reading the file)."""

    __slots__ = ("tag", "zone", "sources", "isolation")

    def __init__(self, tag: str, zone: str, sources: list[str],
                 isolation: tuple[str, str] | None = None) -> None:
        self.tag = tag
        self.zone = zone
        self.sources = sources
        self.isolation = isolation

    def to_json(self) -> bytes:
        from cnilib.jsonio import dumps

        return dumps({"backend": BACKEND, "tag": self.tag, "zone": self.zone, "sources": self.sources,
                      "isolation": list(self.isolation) if self.isolation else None}).encode() + b"\n"

    @classmethod
    def from_json(cls, tag: str, data: bytes) -> "Record":
        """The record in ``data``; an unreadable one is a record of no sources (DEL and GC
        drop it; nothing is removed from firewalld on its word)."""
        from cnilib.jsonio import JSONError, loads

        try:
            doc = loads(data)
        except JSONError:
            return cls(tag, "", [])
        if not isinstance(doc, dict) or doc.get("backend") != BACKEND:
            return cls(tag, "", [])
        zone = doc.get("zone") if isinstance(doc.get("zone"), str) else ""
        raw = doc.get("sources")
        sources = [s for s in raw if isinstance(s, str)] if isinstance(raw, list) else []
        iso = doc.get("isolation")
        isolation = (iso[0], iso[1]) if (isinstance(iso, list) and len(iso) == 2
                                         and all(isinstance(x, str) for x in iso)) else None
        return cls(tag, zone, sources, isolation)

    def __repr__(self) -> str:
        return f"Record({self.tag!r}, {self.zone!r}, {self.sources!r}, {self.isolation!r})"


def _file_error(verb: str, name: str, e: OSError) -> CNIError:
    return CNIError(IO_FAILURE, f"cannot {verb} firewalld record {RECORD_DIR}/{name}: {e.strerror or e}")


def _dir_error(e: OSError) -> CNIError:
    return CNIError(IO_FAILURE, f"cannot use the firewalld record directory {RECORD_DIR}: {e.strerror or e}")


def _open_existing() -> int | None:
    """The record directory's fd, or None when it does not exist (nothing recorded yet).
    Refused (code 5) unless it is a private directory of ours."""
    try:
        fd = posix.open(RECORD_DIR, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _dir_error(e) from None
    st = posix.fstat(fd)
    if st.st_uid != posix.geteuid() or st.st_mode & 0o077:
        posix.close(fd)
        raise CNIError(IO_FAILURE, f"firewalld record directory {RECORD_DIR} is not private (owner uid "
                                   f"{st.st_uid}, mode {st.st_mode & 0o7777:04o}; must be mode 0700)")
    return fd


def _open_or_create() -> int:
    from cnilib.lock import open_private_dir

    try:
        posix.close(open_private_dir(LOCK_DIR))
        return open_private_dir(RECORD_DIR)
    except OSError as e:
        raise _dir_error(e) from None


def _read_at(dfd: int, name: str) -> Record | None:
    from cnilib.lock import NotRegularFile, open_regular

    try:
        fd = open_regular(name, posix.O_RDONLY, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except NotRegularFile:
        return Record(name, "", [])  # not ours to read; DEL/GC remove the name
    except OSError as e:
        raise _file_error("read", name, e) from None
    try:
        data = posix.read(fd, MAX_RECORD + 1)
    finally:
        posix.close(fd)
    return Record.from_json(name, data if len(data) <= MAX_RECORD else b"")


def _is_record_name(name: str) -> bool:
    from cnilib.owner import parse_tag

    return parse_tag(name) is not None


def read(tag: str) -> Record | None:
    """The attachment's record, or None. Creates nothing."""
    dfd = _open_existing()
    if dfd is None:
        return None
    try:
        return _read_at(dfd, tag)
    finally:
        posix.close(dfd)


def read_all() -> list[Record]:
    """Every record (in name order). Creates nothing."""
    dfd = _open_existing()
    if dfd is None:
        return []
    try:
        names = sorted(n for n in posix.listdir(dfd) if _is_record_name(n))
        return [r for r in (_read_at(dfd, n) for n in names) if r is not None]
    finally:
        posix.close(dfd)


def write(record: Record) -> None:
    """Replace the attachment's record with ``record``, atomically (temp file + rename)."""
    if not _is_record_name(record.tag):
        raise ValueError(f"not an owner tag: {record.tag!r}")
    dfd = _open_or_create()
    tmp = f"{TEMP_PREFIX}{posix.getpid()}"
    try:
        _remove_temps(dfd)
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
        fd = posix.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            data = record.to_json()
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view):]
            posix.fsync(fd)
        finally:
            posix.close(fd)
        posix.rename(tmp, record.tag, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as e:
        try:
            posix.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise _file_error("write", record.tag, e) from None
    finally:
        posix.close(dfd)


def remove(tag: str) -> None:
    """Remove the attachment's record; none there is fine."""
    dfd = _open_existing()
    if dfd is None:
        return
    try:
        posix.unlink(tag, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _file_error("remove", tag, e) from None
    finally:
        posix.close(dfd)


def remove_temps() -> None:
    """Remove temporary files a crashed writer left (called under the lock)."""
    dfd = _open_existing()
    if dfd is None:
        return
    try:
        _remove_temps(dfd)
    finally:
        posix.close(dfd)


def _remove_temps(dfd: int) -> None:
    for name in posix.listdir(dfd):
        if name.startswith(TEMP_PREFIX):
            try:
                posix.unlink(name, dir_fd=dfd)
            except OSError:
                pass
