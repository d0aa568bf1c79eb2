"""An exclusive ``flock(2)`` on a regular file, held for one operation, waited for a bounded time.

host-local's reference (go-filemutex) takes ``flock(LOCK_EX)`` on ``<dataDir>/<network>/lock``;
taking the same kind of lock on the same file is what makes our plugin and the reference
safe to run side by side on one store. ``flock`` locks belong to the open file description,
so two processes (or two opens in one process) exclude each other, and the kernel drops the
lock when the process dies: a crashed plugin never leaves the store locked.

Hostile or stuck lock files must not hang a plugin (and with it every other call waiting
for the same lock):

* every open is ``O_NONBLOCK | O_NOFOLLOW`` and anything but a regular file is refused
  (``open_regular``): opening a FIFO for reading would otherwise block until a writer
  comes, a symlink could point anywhere;
* the wait for a held lock is bounded (``wait_bound``: ``CNIPY_LOCK_TIMEOUT`` seconds,
  default ``DEFAULT_WAIT``), then the caller gets CNI error 11 ("try again later") naming
  the lock file and, when ``/proc/locks`` shows it, the holder's PID and command;
* machine-wide locks live in a directory only root can create files in
  (``open_private_dir``), never in a world-writable one such as ``/run/lock``, where any
  user could plant a FIFO under the lock's name or take the lock first and keep it.
"""

from __future__ import annotations

import fcntl
import posix  # not os: with the launchers' -S, importing os costs ~1.5 ms per call

from cnilib.errors import INVALID_ENVIRONMENT, TRY_AGAIN_LATER, CNIError

LOCK_NAME = "lock"
# How long a plugin waits for a lock another process holds. Every holder of ours keeps a
# lock for one operation: a few ms for the lease store, one nft/iptables transaction
# (~10-60 ms on the project VM) for the firewall. 30 s lets a burst of several hundred
# parallel changes drain (32 parallel chain ADDs take ~2 s in all here), and still answers
# well before the runtimes give up on the call (kubelet's CRI request timeout is 2 min),
# with an error that names the holder instead of a hang.
DEFAULT_WAIT = 30.0
WAIT_VAR = b"CNIPY_LOCK_TIMEOUT"  # seconds (a decimal number >= 0); tests use a short one
# Polling back-off while the lock is busy: flock has no timed wait, and a timer signal to
# interrupt a blocking flock would not mix with the threads cnilib.netns uses.
_FIRST_SLEEP = 0.001
_MAX_SLEEP = 0.01
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_OPEN_LOCK = posix.O_RDONLY | posix.O_CREAT | posix.O_CLOEXEC | posix.O_NOFOLLOW | posix.O_NONBLOCK


class NotRegularFile(OSError):
    """A path that must be a regular file is something else (FIFO, device, socket, dir)."""


def check_regular(fd: int) -> int:
    """``fd``'s size when it is a regular file; else NotRegularFile (``fd`` stays open)."""
    st = posix.fstat(fd)
    if st.st_mode & _S_IFMT != _S_IFREG:
        import errno

        raise NotRegularFile(errno.EINVAL, "not a regular file")
    return st.st_size


def open_regular(name: str, flags: int, mode: int = 0o600, dir_fd: int | None = None) -> int:
    """``open(2)`` that never blocks, never follows a symlink in the last component and
    only ever returns a regular file's descriptor (else NotRegularFile, or the OSError of
    the open: ELOOP for a symlink, ENXIO for a FIFO opened for writing with no reader)."""
    fd = posix.open(name, flags | posix.O_NONBLOCK | posix.O_NOFOLLOW | posix.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        check_regular(fd)
    except BaseException:
        posix.close(fd)
        raise
    return fd


def open_private_dir(path: str) -> int:
    """A directory fd for ``path``, created 0700 if missing, that only this user (root) can
    create files in: refused (PermissionError) if it is owned by another user or gives
    any access to group or others, and never followed if it is a symlink (ELOOP)."""
    try:
        posix.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK)
    st = posix.fstat(fd)
    if st.st_mode & _S_IFMT != _S_IFDIR or st.st_uid != posix.geteuid() or st.st_mode & 0o077:
        posix.close(fd)
        import errno

        raise PermissionError(errno.EPERM, f"not a private directory (owner uid {st.st_uid}, mode "
                              f"{st.st_mode & 0o7777:04o}; must be uid {posix.geteuid()}'s, mode 0700)")
    return fd


def wait_bound() -> float:
    """Seconds to wait for a busy lock: ``CNIPY_LOCK_TIMEOUT`` or DEFAULT_WAIT; a value that
    is not a finite number >= 0 is an environment error (code 4) naming the variable."""
    raw = posix.environ.get(WAIT_VAR)
    if raw is None:
        return DEFAULT_WAIT
    try:
        value = float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        raise CNIError(INVALID_ENVIRONMENT, f"invalid {WAIT_VAR.decode()} {raw.decode('utf-8', 'replace')!r}: "
                       "must be a number of seconds >= 0")
    return value


def lock_holder(fd: int) -> str:
    """" held by PID n (comm)" for the process /proc/locks shows holding a flock on ``fd``'s
    file, or "" when none is visible (another PID namespace, or released meanwhile)."""
    st = posix.fstat(fd)
    key = f"{posix.major(st.st_dev):02x}:{posix.minor(st.st_dev):02x}:{st.st_ino}"
    text = _read_small("/proc/locks")
    # "1: FLOCK  ADVISORY  WRITE 4242 00:1a:12345 0 EOF"; a blocked waiter's line has "->"
    # after the id, and is skipped: only the holder is of interest.
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[5] == key and f[4].isdigit() and f[4] != "0":
            comm = _read_small(f"/proc/{f[4]}/comm").strip()
            return f" held by PID {f[4]}" + (f" ({comm})" if comm else "")
    return ""


def _read_small(path: str) -> str:
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return ""
    try:
        parts = []
        while True:
            b = posix.read(fd, 65536)
            if not b:
                break
            parts.append(b)
        return b"".join(parts).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        posix.close(fd)


class FileLock:
    """``flock`` on ``name`` (relative to ``dir_fd`` when given), created 0600 if missing.

    The file is opened read-only: ``flock`` needs no write access, and the reference opens it
    the same way, so an existing lock file of any mode works for both. It must be a regular
    file (NotRegularFile otherwise) and is never reached through a symlink (ELOOP).
    ``path`` is how messages name it.
    """

    __slots__ = ("fd", "held", "path")

    def __init__(self, name: str = LOCK_NAME, dir_fd: int | None = None, path: str | None = None) -> None:
        self.path = path or name
        self.fd = -1
        self.fd = open_regular(name, _OPEN_LOCK, 0o600, dir_fd=dir_fd)
        self.held = False

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (default ``wait_bound()``)
        for another holder to let go; then CNIError 11 naming the file and the holder."""
        if timeout is None:
            timeout = wait_bound()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait(timeout)
        self.held = True

    def _wait(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        pause = _FIRST_SLEEP
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CNIError(TRY_AGAIN_LATER, f"timed out after {timeout:g} s waiting for the lock {self.path}"
                               f"{lock_holder(self.fd)}; try again later",
                               f"the wait is bounded by {WAIT_VAR.decode()} (seconds, default {DEFAULT_WAIT:g})")
            time.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_SLEEP)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                continue

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
