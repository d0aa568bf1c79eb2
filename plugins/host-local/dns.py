"""``ipam.resolvConf``: a resolv.conf file read into the result's ``dns``.

Same reading as the reference: lines are trimmed, empty lines and ``#``/``;`` comments are
skipped, lines with fewer than two fields are ignored; ``nameserver`` adds its first
argument, ``domain`` sets (the last one wins), ``search`` and ``options`` add all their
arguments.
"""

from __future__ import annotations

from cnilib.errors import invalid_config
from cnilib.types import DNS


_MAX_BYTES = 1 << 20  # resolv.conf is tiny; don't slurp a wrong huge file


def _read_regular(path: str) -> bytes:
    """Up to _MAX_BYTES of regular file ``path`` (symlinks followed: /etc/resolv.conf often
    is one). Opened O_NONBLOCK and checked before reading: a FIFO would block the open (and
    the ADD) until some writer came, a device could be endless (NotRegularFile)."""
    import posix

    from cnilib.lock import check_regular

    fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    try:
        check_regular(fd)
        parts, total = [], 0
        while total < _MAX_BYTES:
            chunk = posix.read(fd, _MAX_BYTES - total)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts)
    finally:
        posix.close(fd)


def parse_resolv_conf(path: str) -> DNS:
    """Read ``path``; a missing or unreadable file, or one that is not a regular file, is a
    config error naming it."""
    try:
        data = _read_regular(path)
    except OSError as e:
        raise invalid_config("ipam.resolvConf", path, f"cannot read it: {e.strerror or e}") from None
    dns = DNS()
    for line in data.decode("utf-8", "replace").split("\n"):  # bufio.Scanner lines
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        key = fields[0]
        if key == "nameserver":
            dns.nameservers.append(fields[1])
        elif key == "domain":
            dns.domain = fields[1]
        elif key == "search":
            dns.search.extend(fields[1:])
        elif key == "options":
            dns.options.extend(fields[1:])
    return dns
