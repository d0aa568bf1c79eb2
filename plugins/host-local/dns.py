"""``ipam.resolvConf``: a resolv.conf file read into the result's ``dns``.

Same reading as the reference: lines are trimmed, empty lines and ``#``/``;`` comments are
skipped, lines with fewer than two fields are ignored; ``nameserver`` adds its first
argument, ``domain`` sets (the last one wins), ``search`` and ``options`` add all their
arguments.
"""

from __future__ import annotations

from cnilib.errors import invalid_config
from cnilib.types import DNS


def parse_resolv_conf(path: str) -> DNS:
    """Read ``path``; a missing or unreadable file is a config error naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)  # resolv.conf is tiny; don't slurp a wrong huge file
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
