"""Where the D-Bus system bus is, found without connecting (and without importing the
client, ``cnilib.dbus``): the automatic firewall backend asks on every ADD whether a bus
could be there at all, and must stay cheap where none is.

``DBUS_SYSTEM_BUS_ADDRESS`` names the bus (its first ``unix:path=`` or
``unix:abstract=`` entry counts; other transports are not supported), else the
well-known ``unix:path=/run/dbus/system_bus_socket``.
"""

from __future__ import annotations

import posix

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
ADDRESS_VAR = b"DBUS_SYSTEM_BUS_ADDRESS"
_S_IFMT, _S_IFSOCK = 0o170000, 0o140000


def system_bus_address() -> str:
    """The system bus address: ``DBUS_SYSTEM_BUS_ADDRESS`` or the well-known default."""
    raw = posix.environ.get(ADDRESS_VAR)
    return raw.decode("utf-8", "replace") if raw else DEFAULT_SYSTEM_BUS


def _unescape(value: str) -> str:
    """An address value with its ``%xx`` escapes decoded."""
    if "%" not in value:
        return value
    raw, out, i = value.encode(), bytearray(), 0
    while i < len(raw):
        hex2 = raw[i + 1:i + 3]
        if raw[i] == 0x25 and len(hex2) == 2 and all(c in b"0123456789abcdefABCDEF" for c in hex2):
            out.append(int(hex2, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def unix_socket(address: str) -> tuple[str, str]:
    """(what to connect to, how to name it in messages) for the first ``unix:path=`` or
    ``unix:abstract=`` entry of ``address``; an abstract socket's name starts with NUL.
    ValueError when the address has no such entry."""
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        if kind != "unix":
            continue
        for kv in params.split(","):
            key, _, value = kv.partition("=")
            if key == "path" and value:
                path = _unescape(value)
                return path, path
            if key == "abstract" and value:
                name = _unescape(value)
                return "\0" + name, "@" + name
    raise ValueError(f"D-Bus address {address!r} has no unix:path= or unix:abstract= entry")


def describe(address: str | None = None) -> str:
    """The bus socket of ``address`` (default: the system bus) as messages name it."""
    address = address or system_bus_address()
    try:
        return unix_socket(address)[1]
    except ValueError:
        return repr(address)


def socket_present(address: str | None = None) -> bool:
    """Whether a bus may be listening at ``address`` (default: the system bus), judged
    without connecting: a path must be a socket; an abstract name cannot be checked."""
    try:
        target, _ = unix_socket(address or system_bus_address())
    except ValueError:
        return False
    if target.startswith("\0"):
        return True
    try:
        return posix.stat(target).st_mode & _S_IFMT == _S_IFSOCK
    except OSError:
        return False
