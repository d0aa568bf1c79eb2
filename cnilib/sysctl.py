"""Read and write ``/proc/sys`` entries (``net/...`` ones are per network namespace).

``/proc/sys/net`` resolves against the network namespace of the *calling thread*, so
inside ``netns.run_in`` these act on the container's namespace. Paths use slashes
(``net/ipv6/conf/eth0/accept_dad``): interface names may contain dots.

Why ``net/...`` paths are opened relative to a cached ``/proc/sys/net`` directory: every
namespace that ever looked up ``/proc/sys/net`` leaves a dentry named "net" in one dcache
hash chain, and the kernel walks that chain (taking a global lock per entry) on every
lookup, so with many namespaces on a host (pods) every open of ``/proc/sys/net/...`` gets
slower (README, "What the code avoids, measured"); the directory is looked up once per
process and namespace instead of once per entry.
"""

from __future__ import annotations

import posix

ROOT = "/proc/sys/"
# Network namespace (inode of /proc/thread-self/ns/net) -> fd of its /proc/sys/net. A
# plugin process holds its namespaces open while it works, so an inode is not reused
# under it.
_NET_DIRS: dict[int, int] = {}


def _net_dir() -> int | None:
    """An fd of ``/proc/sys/net`` as the calling thread's namespace sees it (None: no
    /proc/thread-self, then paths are opened from the root)."""
    try:
        ino = posix.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return None
    fd = _NET_DIRS.get(ino)
    if fd is None:
        fd = posix.open(ROOT + "net", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        _NET_DIRS[ino] = fd
    return fd


def _open(path: str, flags: int) -> int:
    flags |= posix.O_CLOEXEC
    if path.startswith("net/"):
        d = _net_dir()
        if d is not None:
            return posix.open(path[4:], flags, dir_fd=d)
    return posix.open(ROOT + path, flags)


def get(path: str) -> str:
    """The value of ``path`` (relative to /proc/sys), stripped; OSError if missing."""
    fd = _open(path, posix.O_RDONLY)
    try:
        return posix.read(fd, 4096).decode().strip()
    finally:
        posix.close(fd)


def set(path: str, value: str) -> None:  # noqa: A001 - the module's verb
    """Write ``value`` to ``path``; OSError if it does not exist or the kernel refuses."""
    fd = _open(path, posix.O_WRONLY)
    try:
        posix.write(fd, value.encode())
    finally:
        posix.close(fd)


def ensure(path: str, value: str) -> None:
    """Write ``value`` unless ``path`` already holds it (saves a write, and works where
    the entry is read-only but already right)."""
    try:
        if get(path) == value:
            return
    except OSError:
        pass
    set(path, value)


def try_set(path: str, value: str) -> bool:
    """Best effort (the reference ignores these errors): True if written."""
    try:
        set(path, value)
        return True
    except OSError:
        return False
