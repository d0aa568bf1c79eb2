"""``dhcp daemon``'s command line, parsed as Go's ``flag`` package does (the reference's).

``-name value``, ``-name=value``, ``--name`` alike; booleans take no value (``-broadcast``) or
``=true``/``=false``; durations in Go's syntax (``10s``, ``1m2s``, ``500ms``, ``1h``).
"""

from __future__ import annotations

from .lease import DEFAULT_STATE_DIR

DEFAULT_SOCKET = "/run/cni/dhcp.sock"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class Flags:
    def __init__(self) -> None:
        self.pidfile = ""
        self.hostprefix = ""
        self.socketpath = DEFAULT_SOCKET
        self.statedir = DEFAULT_STATE_DIR  # ours: where leases persist
        self.broadcast = False
        self.timeout = 10.0
        self.resendmax = 62.0
        self.resendtimeout = 208.0


class UsageError(ValueError):
    """A bad command line (``str(e) == "usage"``: -h asked for the usage text)."""


USAGE = """usage: dhcp daemon [flags]
  -pidfile PATH        write the daemon's PID there (absolute path)
  -hostprefix PREFIX   the host's / is mounted at PREFIX (socket, state and netns paths are under it)
  -socketpath PATH     unix socket to serve (default /run/cni/dhcp.sock; ignored with systemd's LISTEN_FDS)
  -statedir DIR        where leases persist (default /var/lib/cni/dhcp) [cni-py]
  -timeout DURATION    wait for each answer (default 10s; then 2x, 4x)
  -resendmax DURATION  longest pause between exchanges (default 1m2s)
  -resendtimeout DURATION  give an ADD up after this long (default 3m28s)
  -broadcast           ask servers to broadcast their answers (BOOTP broadcast flag)
"""


def duration(text: str) -> float:
    """A Go duration string in seconds."""
    s = text.strip()
    if s in ("0", ""):
        return 0.0
    total, i = 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise UsageError(f"invalid duration {text!r}")
        num = float(s[i:j])
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        unit = s[j:k]
        if unit not in _UNITS:
            raise UsageError(f"invalid duration {text!r}: unknown unit {unit!r}")
        total += num * _UNITS[unit]
        i = k
    return total


STRINGS = ("pidfile", "hostprefix", "socketpath", "statedir")
DURATIONS = ("timeout", "resendmax", "resendtimeout")
BOOLS = ("broadcast",)


def parse(argv: list[str]) -> Flags:
    f = Flags()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        if not a.startswith("-") or a == "-":
            raise UsageError(f"unexpected argument {a!r}")
        name, eq, value = a.lstrip("-").partition("=")
        if name in ("h", "help"):
            raise UsageError("usage")
        if name in BOOLS:
            if eq and value.lower() not in ("1", "0", "t", "f", "true", "false"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            setattr(f, name, not eq or value.lower() in ("1", "t", "true"))
        elif name in STRINGS or name in DURATIONS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            setattr(f, name, duration(value) if name in DURATIONS else value)
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
        i += 1
    if f.pidfile and not f.pidfile.startswith("/"):
        raise UsageError("-pidfile must be an absolute path")
    if f.timeout <= 0:
        raise UsageError("-timeout must be positive")
    return f
