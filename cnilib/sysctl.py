"""Read and write ``/proc/sys`` entries (``net/...`` ones are per network namespace).

``/proc/sys/net`` resolves against the network namespace of the *calling thread*, so
inside ``netns.run_in`` these act on the container's namespace. Paths use slashes
(``net/ipv6/conf/eth0/accept_dad``): interface names may contain dots.
"""

from __future__ import annotations

import posix

ROOT = "/proc/sys/"


def get(path: str) -> str:
    """The value of ``path`` (relative to /proc/sys), stripped; OSError if missing."""
    fd = posix.open(ROOT + path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        return posix.read(fd, 4096).decode().strip()
    finally:
        posix.close(fd)


def set(path: str, value: str) -> None:  # noqa: A001 - the module's verb
    """Write ``value`` to ``path``; OSError if it does not exist or the kernel refuses."""
    fd = posix.open(ROOT + path, posix.O_WRONLY | posix.O_CLOEXEC)
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
