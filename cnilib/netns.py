"""Network namespaces: check that a path is one, and run code inside it.

``run_in(path, fn)`` runs ``fn`` on a dedicated thread that has entered the namespace with
setns(2): the rest of the process (and every other thread) stays in the runtime's
namespace, and the thread ends with the call, so nothing can run in the wrong namespace
afterwards. Sockets opened by ``fn`` belong to the container's namespace and keep working
after it returns. Standard library only (ctypes, for setns, where ``os.setns`` is missing).
"""

from __future__ import annotations

import os

from cnilib.errors import INVALID_NETNS, CNIError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11


class NetnsGone(CNIError):
    """The namespace path does not exist (any more): DEL treats this as already cleaned."""


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsGone(INVALID_NETNS, f"network namespace {path!r} does not exist") from None
    except OSError as e:
        raise CNIError(INVALID_NETNS, f"cannot open network namespace {path!r}: {e.strerror}") from None


def _check_fd(fd: int, path: str) -> None:
    import fcntl

    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    if kind != CLONE_NEWNET:
        raise CNIError(INVALID_NETNS, f"{path!r} is not a network namespace")


def check(path: str) -> None:
    """Raise code 8 unless ``path`` is a network namespace (nsfs or /proc/PID/ns/net);
    NetnsGone (a CNIError, code 8) when it does not exist."""
    fd = _open(path)
    try:
        _check_fd(fd, path)
    finally:
        os.close(fd)


def is_own(path: str) -> bool:
    """True when ``path`` is the namespace this process runs in."""
    try:
        a = os.stat(path)
        b = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)
    if setns is not None:  # Python >= 3.12
        setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in(path: str, fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` inside the network namespace at ``path``; return its
    value or re-raise its exception. Raise code 8 if ``path`` is not a namespace."""
    import threading

    fd = _open(path)
    box: dict = {}
    try:
        _check_fd(fd, path)

        def body() -> None:
            try:
                _setns(fd)
            except OSError as e:
                box["error"] = CNIError(INVALID_NETNS, f"cannot enter network namespace {path!r}: {e.strerror}")
                return
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as e:  # re-raised in the caller's thread
                box["error"] = e

        t = threading.Thread(target=body, name="netns")
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]
    return box.get("value")
