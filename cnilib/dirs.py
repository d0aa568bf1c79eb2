"""Data directories opened as file descriptors: ``mkdir -p`` and open-or-create.

The plugins' stores (host-local's leases, tuning's backups) work relative to one directory
fd, so a path component swapped after the open cannot redirect their writes. Only
``posix``: this runs on every call of plugins whose start-up is guarded.
"""

from __future__ import annotations

import posix

_DIR = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC | posix.O_NONBLOCK


def mkdir_p(path: str, mode: int) -> None:
    """``mkdir -p`` with ``mode`` for every directory made (what os.makedirs does, without
    importing os). An existing non-directory is left for the O_DIRECTORY open that follows
    to refuse."""
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = path.rstrip("/").rpartition("/")[0]
        if not parent or parent == path:
            raise
        mkdir_p(parent, mode)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            pass  # made concurrently by another plugin call


def open_dir(path: str, *, create: bool, mode: int, nofollow: bool = False) -> int | None:
    """A directory fd for ``path``, made first (parents too, with ``mode``) when it is
    missing and ``create`` is set; None when it is missing and ``create`` is not. With
    ``nofollow`` a symlink as the last component is refused (ELOOP). Raises OSError."""
    flags = _DIR | (posix.O_NOFOLLOW if nofollow else 0)
    try:
        return posix.open(path, flags)
    except FileNotFoundError:
        if not create:
            return None
    mkdir_p(path, mode)
    return posix.open(path, flags)
