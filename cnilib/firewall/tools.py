"""Find and run the firewall tools (``nft``, ``iptables-restore``...) with arguments.

The spawning itself is ``cnilib.execplugin.spawn`` (posix_spawn and a poll loop, no
``subprocess``); this module adds finding the tools where a minimal PATH misses them, the
fixed environment they run in, and turning their failures into CNI errors. Both backends'
runners (``nftables.runner``, ``iptables.runner``) are built on it.

The tools run with ``LC_ALL=C``: callers recognise outcomes such as "File exists" in their
English messages.
"""

from __future__ import annotations

import posix

from cnilib.errors import TOOL_FAILED, TRY_AGAIN_LATER, CNIError

# Where the tools live when CNI_PATH/PATH from the runtime is minimal: libcni passes the
# runtime's environment, which may lack the sbin directories.
_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_ENV = {b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"LC_ALL": b"C"}
_found: dict[str, str | None] = {}

# How a missing tool is reported (the end of every "... not found" message).
NOT_FOUND_WHERE = "not found in PATH or /usr/sbin, /sbin"


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


def missing(tools: tuple[str, ...]) -> list[str]:
    """The names in ``tools`` that ``find_tool`` does not find, in order."""
    return [t for t in tools if find_tool(t) is None]


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run ``argv`` (argv[0] an absolute path) with ``stdin`` in the tools' fixed
    environment; return (status, stdout, stderr), a signal death as 128+signal."""
    from cnilib.execplugin import spawn

    return spawn(argv, stdin, _ENV)


def tool_error(argv: list[str], rc: int, stderr: bytes, request: str = "") -> CNIError:
    """A CNIError for a failed tool run: its stderr in the message, the request in details.

    A busy lock (xtables) or "try again" from the kernel is transient: code 11.
    """
    text = stderr.decode(errors="replace").strip() or f"exit status {rc}"
    code = TOOL_FAILED
    if "Resource temporarily unavailable" in text or "holding the xtables lock" in text:
        code = TRY_AGAIN_LATER
    name = argv[0].rsplit("/", 1)[-1]
    details = request if len(request) <= 8192 else request[:8192] + "..."
    return CNIError(code, f"{name} {' '.join(argv[1:])} failed: {text}", details)
