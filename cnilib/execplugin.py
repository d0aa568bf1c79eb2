"""Exec another CNI plugin (a delegate) the way libcni's invoke package does.

posix_spawn plus a poll loop instead of ``subprocess``: ``import subprocess`` costs ~20 ms
here (selectors, signal, threading...), more than the whole exec. Standard library only.
"""

from __future__ import annotations

import errno
import os

# libcni retries exec while the binary is being written ("text file busy") — a plugin
# installed at the same moment a pod starts.
_TXTBSY_RETRIES = 10
_TXTBSY_SLEEP = 0.1


def find_in_path(name: str, dirs: list[str]) -> str | None:
    """The first executable file called ``name`` in ``dirs`` (CNI_PATH), or None."""
    if not name or "/" in name or name in (".", ".."):
        return None
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def run(path: str, stdin: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``path`` with ``env`` and ``stdin``; return (exit status, stdout, stderr).

    A signal death is reported as 128+signal, like a shell does.
    """
    import time

    for attempt in range(_TXTBSY_RETRIES + 1):
        try:
            return _run_once(path, stdin, env)
        except OSError as e:
            if e.errno != errno.ETXTBSY or attempt == _TXTBSY_RETRIES:
                raise
            time.sleep(_TXTBSY_SLEEP)
    raise AssertionError("unreachable")


def _run_once(path: str, stdin: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    import select

    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    try:
        pid = os.posix_spawn(path, [path], env, file_actions=[
            (os.POSIX_SPAWN_DUP2, r_in, 0),
            (os.POSIX_SPAWN_DUP2, w_out, 1),
            (os.POSIX_SPAWN_DUP2, w_err, 2),
        ])
    except OSError:
        for fd in (r_in, w_in, r_out, w_out, r_err, w_err):
            os.close(fd)
        raise
    for fd in (r_in, w_out, w_err):
        os.close(fd)
    out: list[bytes] = []
    err: list[bytes] = []
    pending = memoryview(stdin)
    os.set_blocking(w_in, False)
    poller = select.poll()
    open_fds = {r_out: out, r_err: err}
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    if pending:
        poller.register(w_in, select.POLLOUT)
    else:
        os.close(w_in)
        w_in = -1
    while open_fds or w_in >= 0:
        for fd, ev in poller.poll():
            if fd == w_in:
                try:
                    n = os.write(w_in, pending[:65536])
                    pending = pending[n:]
                except BrokenPipeError:
                    pending = pending[:0]  # the child stopped reading: its problem
                if not pending:
                    poller.unregister(w_in)
                    os.close(w_in)
                    w_in = -1
            else:
                chunk = os.read(fd, 65536)
                if chunk:
                    open_fds[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    del open_fds[fd]
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    return code, b"".join(out), b"".join(err)
