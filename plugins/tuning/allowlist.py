"""The sysctl allowlist: ``/etc/cni/tuning/allowlist.conf``, as the reference reads it.

When the file exists, each non-empty line (surrounding whitespace trimmed) is a regular
expression, matched unanchored (Go's ``regexp.MatchString``, Python's ``re.search``)
against each sysctl key as written in the config (before ``IFNAME`` is substituted, after
``args.cni`` is merged); a key no line matches is refused. No file: every key is allowed.
ADD only, as in the reference.

The reference's path is hard-coded; ours too, except that the environment variable
``CNIPY_TUNING_ALLOWLIST`` names another file (the tests use it; a runtime passes its own
environment to plugins, so an operator could set it too). The file is opened
non-blocking and must be a regular file (a symlink to one is fine: Kubernetes mounts
config maps through symlinks). ``re`` is imported only when the file exists.
"""

from __future__ import annotations

import posix

from cnilib.errors import INVALID_CONFIG, IO_FAILURE, CNIError

DEFAULT_PATH = "/etc/cni/tuning/allowlist.conf"
PATH_VAR = b"CNIPY_TUNING_ALLOWLIST"
MAX_BYTES = 1 << 20
_S_IFMT, _S_IFREG = 0o170000, 0o100000


def path() -> str:
    """The allowlist file this process uses."""
    v = posix.environ.get(PATH_VAR)
    return v.decode("utf-8", "surrogateescape") if v else DEFAULT_PATH


def load() -> "list | None":
    """The compiled patterns, or None when there is no allowlist file. Code 5 when it
    cannot be read (or is not a regular file), code 7 naming the line of a bad pattern."""
    p = path()
    try:
        fd = posix.open(p, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | posix.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CNIError(IO_FAILURE, f"cannot read the sysctl allowlist {p}: {e.strerror}") from None
    try:
        if posix.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            raise CNIError(IO_FAILURE, f"the sysctl allowlist {p} is not a regular file")
        chunks, total = [], 0
        while True:
            b = posix.read(fd, 65536)
            if not b:
                break
            total += len(b)
            if total > MAX_BYTES:
                raise CNIError(IO_FAILURE, f"the sysctl allowlist {p} is larger than {MAX_BYTES} bytes")
            chunks.append(b)
    except OSError as e:
        raise CNIError(IO_FAILURE, f"cannot read the sysctl allowlist {p}: {e.strerror}") from None
    finally:
        posix.close(fd)
    import re

    out = []
    for n, line in enumerate(b"".join(chunks).decode("utf-8", "replace").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            out.append(re.compile(line))
        except re.error as e:
            raise CNIError(INVALID_CONFIG, f"the sysctl allowlist {p} line {n} is not a regular expression: "
                                           f"{line!r}: {e}") from None
    return out


def check(keys: "list[str]") -> None:
    """Code 7 for the first key no allowlist pattern matches (nothing without the file)."""
    if not keys:
        return
    patterns = load()
    if patterns is None:
        return
    for key in keys:
        if not any(p.search(key) for p in patterns):
            shown = [p.pattern for p in patterns]
            raise CNIError(INVALID_CONFIG, f"sysctl {key} is not allowed: the allowlist {path()} allows only {shown}")
