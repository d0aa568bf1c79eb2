"""Network sysctls named by a config key (``net.ipv4.conf.IFNAME.arp_notify``), read and
written without ever leaving the calling thread's ``/proc/sys/net``.

``resolve(key, ifname)`` turns a key into path components below ``/proc/sys`` as the
reference tuning plugin does (every ``.`` becomes ``/``, then the first ``IFNAME`` becomes
the interface name, so interface names with dots work through ``IFNAME``) and refuses
anything that is not a ``net/...`` entry: a NUL byte, nothing after ``net``, a first
component other than ``net``. Since every dot becomes a slash first, ``..`` in a key is
two empty components, never a parent directory; a ``..`` component (which only a
substituted name could bring) is refused anyway. Empty components (``net//ipv4``, a
leading ``/``) are dropped, as path cleaning does, so a key is always relative to
``/proc/sys``: it can never name an absolute path.

``read``/``write`` open the entry component by component from ``/proc/sys/net`` with
``O_NOFOLLOW`` (never through a symlink), non-blocking, and only ever do I/O on a regular
file. ``/proc/sys/net`` resolves against the network namespace of the *calling thread*:
call them inside ``cnilib.netns.run_in``.
"""

from __future__ import annotations

import posix

ROOT = "/proc/sys/"
MAX_VALUE = 1 << 16  # the longest entry we read (the kernel prints far less)
_S_IFMT, _S_IFREG = 0o170000, 0o100000
_DIR = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK
_FILE = posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK


def resolve(key: str, ifname: str) -> tuple[str, ...]:
    """The components below /proc/sys of sysctl ``key`` (the first is always ``net``);
    ValueError with the reason when the key names nothing under /proc/sys/net."""
    if not isinstance(key, str) or not key:
        raise ValueError("must be a non-empty string")
    if "\0" in key:
        raise ValueError("contains a NUL byte")
    path = key.replace(".", "/").replace("IFNAME", ifname, 1)
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("must not contain '..'")
    if len(parts) < 2 or parts[0] != "net":
        raise ValueError("is not a network sysctl (it must name an entry under /proc/sys/net)")
    return parts


def from_text(path: str) -> tuple[str, ...]:
    """The components of an entry path written by ``text`` (``net/ipv4/conf/eth0.100/x``:
    dots are part of names here); ValueError unless it names an entry under net/."""
    if not isinstance(path, str) or "\0" in path:
        raise ValueError("not a sysctl entry path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts or len(parts) < 2 or parts[0] != "net":
        raise ValueError("is not a network sysctl entry")
    return parts


def text(parts: tuple[str, ...]) -> str:
    """The entry as a path relative to /proc/sys (``net/ipv4/ip_forward``)."""
    return "/".join(parts)


def _open(parts: tuple[str, ...], flags: int) -> int:
    """An fd of regular file ``/proc/sys/<parts>``, reached without following a link."""
    d = posix.open(ROOT + parts[0], _DIR)
    try:
        for p in parts[1:-1]:
            nd = posix.open(p, _DIR, dir_fd=d)
            posix.close(d)
            d = nd
        fd = posix.open(parts[-1], flags | _FILE, dir_fd=d)
    finally:
        posix.close(d)
    if posix.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
        posix.close(fd)
        import errno

        raise OSError(errno.EINVAL, "not a sysctl entry (not a regular file)")
    return fd


def read(parts: tuple[str, ...]) -> str:
    """The entry's content as the kernel prints it, without its one trailing newline."""
    fd = _open(parts, posix.O_RDONLY)
    try:
        chunks, total = [], 0
        while total <= MAX_VALUE:
            b = posix.read(fd, 8192)
            if not b:
                break
            chunks.append(b)
            total += len(b)
    finally:
        posix.close(fd)
    value = b"".join(chunks).decode("utf-8", "replace")
    return value[:-1] if value.endswith("\n") else value


def write(parts: tuple[str, ...], value: str) -> None:
    """Write ``value`` in one write(2) (the kernel parses a sysctl write whole; a second
    write at an offset would be taken as a continuation or ignored)."""
    data = value.encode("utf-8", "surrogateescape")
    fd = _open(parts, posix.O_WRONLY)
    try:
        n = posix.write(fd, data)
        if n != len(data):
            import errno

            raise OSError(errno.EIO, f"short write ({n} of {len(data)} bytes)")
    finally:
        posix.close(fd)


def same_value(want: str, have: str) -> bool:
    """Whether a configured value and the kernel's text mean the same: equal once runs of
    whitespace are normalised (the kernel prints ``tcp_rmem`` with tabs, configs use spaces)."""
    return want.split() == have.split()
