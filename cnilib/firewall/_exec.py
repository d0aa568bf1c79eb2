"""Find and run the firewall tools (``nft``, ``iptables-restore``...) with arguments.

``cnilib.execplugin.run`` execs a CNI plugin with no arguments; the firewall tools need argv,
so this is its small sibling: ``posix_spawn`` and a poll loop (``subprocess`` costs ~20 ms of
imports), ``posix`` rather than ``os`` (not loaded under the launchers' ``-S``).

The tools run with ``LC_ALL=C``: callers recognise outcomes such as "File exists" in their
English messages.
"""

from __future__ import annotations

import posix

from cnilib.errors import CNIError

# Where the tools live when CNI_PATH/PATH from the runtime is minimal: libcni passes the
# runtime's environment, which may lack the sbin directories.
_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_ENV = {b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"LC_ALL": b"C"}
_found: dict[str, str | None] = {}

# Code for "the firewall tool failed or rejected our request" (plugin-specific range).
TOOL_FAILED = 110


def find_tool(name: str) -> str | None:
    """Absolute path of executable ``name`` in PATH or the sbin/bin directories, or None."""
    if name in _found:
        return _found[name]
    env_path = posix.environ.get(b"PATH", b"").decode(errors="replace")
    dirs = [d for d in env_path.split(":") if d.startswith("/")] + list(_FALLBACK_DIRS)
    hit = None
    for d in dirs:
        p = f"{d}/{name}"
        if posix.access(p, posix.X_OK):
            try:
                if posix.stat(p).st_mode & 0o170000 == 0o100000:  # a regular file (after symlinks)
                    hit = p
                    break
            except OSError:
                continue
    _found[name] = hit
    return hit


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run ``argv`` (argv[0] an absolute path) with ``stdin``; return (status, stdout, stderr).

    A signal death is reported as 128+signal, as a shell does.
    """
    import select

    r_in, w_in = posix.pipe()
    r_out, w_out = posix.pipe()
    r_err, w_err = posix.pipe()
    try:
        pid = posix.posix_spawn(argv[0], argv, _ENV, file_actions=[
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
                    pending = pending[:0]  # the tool stopped reading; its exit status tells why
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


def tool_error(argv: list[str], rc: int, stderr: bytes, request: str = "") -> CNIError:
    """A CNIError for a failed tool run: its stderr in the message, the request in details.

    A busy lock (xtables) or "try again" from the kernel is transient: code 11.
    """
    text = stderr.decode(errors="replace").strip() or f"exit status {rc}"
    code = TOOL_FAILED
    if "Resource temporarily unavailable" in text or "holding the xtables lock" in text:
        code = 11  # TRY_AGAIN_LATER
    name = argv[0].rsplit("/", 1)[-1]
    details = request if len(request) <= 8192 else request[:8192] + "..."
    return CNIError(code, f"{name} {' '.join(argv[1:])} failed: {text}", details)
