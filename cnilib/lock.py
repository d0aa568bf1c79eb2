"""An exclusive ``flock(2)`` on a file, held for one operation.

host-local's reference (go-filemutex) takes ``flock(LOCK_EX)`` on ``<dataDir>/<network>/lock``;
taking the same kind of lock on the same file is what makes our plugin and the reference
safe to run side by side on one store. ``flock`` locks belong to the open file description,
so two processes (or two opens in one process) exclude each other, and the kernel drops the
lock when the process dies: a crashed plugin never leaves the store locked.
"""

from __future__ import annotations

import fcntl
import posix  # not os: with the launchers' -S, importing os costs ~1.5 ms per call

LOCK_NAME = "lock"


class FileLock:
    """``flock`` on ``name`` (relative to ``dir_fd`` when given), created 0600 if missing.

    The file is opened read-only: ``flock`` needs no write access, and the reference opens it
    the same way, so an existing lock file of any mode works for both.
    """

    __slots__ = ("fd", "held")

    def __init__(self, name: str = LOCK_NAME, dir_fd: int | None = None) -> None:
        self.fd = posix.open(name, posix.O_RDONLY | posix.O_CREAT | posix.O_CLOEXEC | posix.O_NOFOLLOW, 0o600,
                             dir_fd=dir_fd)
        self.held = False

    def acquire(self) -> None:
        """Block until the lock is ours (EINTR is retried by Python itself)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        """Give the lock up early; closing does it too."""
        if self.held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        """Release and close; safe to call twice."""
        if self.fd >= 0:
            self.held = False
            posix.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
