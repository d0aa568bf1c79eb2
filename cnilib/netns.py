"""Network namespaces: check that a path is one, and run code inside it.

``run_in(path, fn)`` runs ``fn`` on a dedicated thread that has entered the namespace with
setns(2): the rest of the process (and every other thread) stays in the runtime's
namespace, and the thread ends with the call, so nothing can run in the wrong namespace
afterwards. Sockets opened by ``fn`` belong to the container's namespace and keep working
after it returns. Standard library only, and only its C modules (``posix``, ``_thread``,
``_ctypes``), which load in well under a millisecond where ``os``/``threading``/``ctypes``
cost several.
"""

from __future__ import annotations

import posix

from cnilib.errors import INVALID_NETNS, CNIError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11


class NetnsGone(CNIError):
    """The namespace path does not exist (any more): DEL treats this as already cleaned."""


_S_IFMT, _S_IFREG = 0o170000, 0o100000


def _open(path: str) -> int:
    # A namespace file (nsfs, or /proc/PID/ns/net) is a regular empty file. Look before
    # opening: a FIFO would block open(2) forever and a device may act on being opened.
    # The open itself cannot block either (O_NONBLOCK), in case the path changes between
    # the two; what was opened is checked again, then asked for its namespace type.
    try:
        st = posix.stat(path)
    except FileNotFoundError:
        raise NetnsGone(INVALID_NETNS, f"network namespace {path!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise CNIError(INVALID_NETNS, f"cannot open network namespace {path!r}: {_why(e)}") from None
    if st.st_mode & _S_IFMT != _S_IFREG:
        raise CNIError(INVALID_NETNS, f"{path!r} is not a network namespace (not a namespace file)")
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | posix.O_NOCTTY)
    except FileNotFoundError:
        raise NetnsGone(INVALID_NETNS, f"network namespace {path!r} does not exist") from None
    except OSError as e:
        raise CNIError(INVALID_NETNS, f"cannot open network namespace {path!r}: {e.strerror}") from None
    try:
        if posix.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            raise CNIError(INVALID_NETNS, f"{path!r} is not a network namespace (not a namespace file)")
        _check_fd(fd, path)
    except BaseException:
        posix.close(fd)
        raise
    return fd


def _why(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _check_fd(fd: int, path: str) -> None:
    import fcntl

    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    if kind != CLONE_NEWNET:
        raise CNIError(INVALID_NETNS, f"{path!r} is not a network namespace")


def open_fd(path: str) -> int:
    """An O_CLOEXEC descriptor of the network namespace at ``path`` (the caller closes
    it). Code 8 unless it is one (NetnsGone when it does not exist); never blocks, never
    opens anything but a regular file."""
    return _open(path)


def check(path: str) -> None:
    """Raise code 8 unless ``path`` is a network namespace (nsfs or /proc/PID/ns/net);
    NetnsGone (a CNIError, code 8) when it does not exist."""
    posix.close(_open(path))


def is_own(path: str) -> bool:
    """True when ``path`` is the namespace this process runs in."""
    try:
        a = posix.stat(path)
        b = posix.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _libc_setns():
    """libc's setns(2) as a callable, through ``_ctypes`` directly.

    ``import ctypes`` costs ~4 ms here (its package defines dozens of types at import);
    the C core ``_ctypes`` loads in under 1 ms and three tiny classes are all setns needs.
    Falls back to ``ctypes`` if the private API ever differs.
    """
    try:
        import _ctypes

        class _CInt(_ctypes._SimpleCData):
            _type_ = "i"

        class _Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _CInt

        class _Libc:
            _handle = _ctypes.dlopen(None, 0)

        return _Func(("setns", _Libc())), _ctypes.get_errno
    except (ImportError, AttributeError, TypeError, OSError):  # pragma: no cover
        import ctypes

        return ctypes.CDLL(None, use_errno=True).setns, ctypes.get_errno


def _setns(fd: int) -> None:
    setns = getattr(posix, "setns", None)
    if setns is not None:  # Python >= 3.12
        setns(fd, CLONE_NEWNET)
        return
    fn, get_errno = _libc_setns()
    if fn(fd, CLONE_NEWNET) != 0:
        err = get_errno()
        raise OSError(err, posix.strerror(err))


def run_in(path: str, fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` inside the network namespace at ``path``; return its
    value or re-raise its exception. Raise code 8 if ``path`` is not a namespace."""
    # _thread, not threading: threading costs ~6 ms to import (functools, collections).
    import _thread

    fd = _open(path)
    box: dict = {}
    done = _thread.allocate_lock()
    try:
        def body() -> None:
            try:
                try:
                    _setns(fd)
                except OSError as e:
                    raise CNIError(INVALID_NETNS, f"cannot enter network namespace {path!r}: {e.strerror}") from None
                box["value"] = fn(*args, **kwargs)
            except BaseException as e:  # re-raised in the caller's thread
                box["error"] = e
            finally:
                done.release()

        done.acquire()
        _thread.start_new_thread(body, ())
        done.acquire()  # released by body() when fn has returned or raised
    finally:
        posix.close(fd)
    if "error" in box:
        raise box["error"]
    return box.get("value")
