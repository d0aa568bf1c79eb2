"""Exec another program and collect its output: a CNI plugin (a delegate, the way libcni's
invoke package does it) or a tool such as ``nft`` (cnilib.firewall).

posix_spawn plus a poll loop instead of ``subprocess``: ``import subprocess`` (selectors,
signal, threading...) costs more than the whole exec (README, "What the code avoids,
measured"). Only C modules of the
standard library (``posix``, ``select``), as everything on a plugin's hot path.
"""

from __future__ import annotations

import posix

# libcni retries exec while the binary is being written ("text file busy") — a plugin
# installed at the same moment a pod starts.
ETXTBSY = 26
_TXTBSY_RETRIES = 10
_TXTBSY_SLEEP = 0.1
_S_IFMT, _S_IFREG = 0o170000, 0o100000


def find_in_path(name: str, dirs: list[str]) -> str | None:
    """The first executable file called ``name`` in ``dirs`` (CNI_PATH), or None."""
    if not name or "/" in name or name in (".", ".."):
        return None
    for d in dirs:
        p = f"{d.rstrip('/')}/{name}"
        try:
            if posix.stat(p).st_mode & _S_IFMT == _S_IFREG and posix.access(p, posix.X_OK):
                return p
        except OSError:
            continue
    return None


def run(path: str, stdin: bytes, env: dict) -> tuple[int, bytes, bytes]:
    """Run the plugin at ``path`` with ``env`` and ``stdin``, retrying while its file is
    busy being written; return (exit status, stdout, stderr)."""
    import time

    for attempt in range(_TXTBSY_RETRIES + 1):
        try:
            return spawn([path], stdin, env)
        except OSError as e:
            if e.errno != ETXTBSY or attempt == _TXTBSY_RETRIES:
                raise
            time.sleep(_TXTBSY_SLEEP)
    raise AssertionError("unreachable")


def spawn(argv: list[str], stdin: bytes, env: dict) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (argv[0] an absolute path) with ``env`` (str or bytes keys and values)
    and ``stdin``; return (exit status, stdout, stderr). Both outputs are read while stdin
    is written, so no pipe can fill up; a signal death is reported as 128+signal, as a
    shell does."""
    import select

    r_in, w_in = posix.pipe()
    r_out, w_out = posix.pipe()
    r_err, w_err = posix.pipe()
    try:
        pid = posix.posix_spawn(argv[0], argv, env, file_actions=[
            (posix.POSIX_SPAWN_DUP2, r_in, 0),
            (posix.POSIX_SPAWN_DUP2, w_out, 1),
            (posix.POSIX_SPAWN_DUP2, w_err, 2),
        ])
    except OSError:
        for fd in (r_in, w_in, r_out, w_out, r_err, w_err):
            posix.close(fd)
        raise
    for fd in (r_in, w_out, w_err):
        posix.close(fd)
    bufs: dict[int, list[bytes]] = {r_out: [], r_err: []}
    out, err = bufs[r_out], bufs[r_err]
    pending = memoryview(stdin)
    poller = select.poll()
    for fd in bufs:
        poller.register(fd, select.POLLIN)
    if pending:
        posix.set_blocking(w_in, False)
        poller.register(w_in, select.POLLOUT)
    else:
        posix.close(w_in)
        w_in = -1
    open_fds = set(bufs)
    while open_fds or w_in >= 0:
        for fd, _ in poller.poll():
            if fd == w_in:
                try:
                    n = posix.write(w_in, pending[:65536])
                    pending = pending[n:]
                except BrokenPipeError:
                    pending = pending[:0]  # the child stopped reading; its exit status tells why
                if not pending:
                    poller.unregister(w_in)
                    posix.close(w_in)
                    w_in = -1
            else:
                chunk = posix.read(fd, 65536)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    posix.close(fd)
                    open_fds.discard(fd)
    _, status = posix.waitpid(pid, 0)
    code = posix.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), b"".join(out), b"".join(err)
