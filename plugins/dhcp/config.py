"""The dhcp plugin's configuration (the ``ipam`` object), read on the plugin side.

Keys, as the reference: ``daemonSocketPath`` (default /run/cni/dhcp.sock), ``request``
(``[{option, skipDefault}]``), ``provide`` (``[{option, value, fromArg}]``), ``priority``
(route metric). Options are resolved here (names to codes, ``fromArg`` from CNI_ARGS), so
the daemon receives plain codes and bytes. Every error is code 7 naming the key path.
Standard library free: this runs on the plugin's start-up budget.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader
from cnilib.errors import invalid_config

from .options import DEFAULT_REQUEST, RESERVED, code_of

DEFAULT_SOCKET = "/run/cni/dhcp.sock"
IPAM = gokeys.Struct("type", "daemonSocketPath", "request", "provide", "priority")
REQUEST = gokeys.Struct("skipDefault", "option")
PROVIDE = gokeys.Struct("option", "value", "fromArg")


class DHCPConfig:
    """What the daemon needs to know about one attachment's options."""

    __slots__ = ("socket_path", "request", "provide", "priority", "from_args")

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.request: list[int] = []
        self.provide: list[tuple[int, bytes]] = []
        self.priority = 0
        self.from_args: set[str] = set()  # CNI_ARGS keys `fromArg` names (known keys then)


def _ipam(conf, strict: bool) -> Reader:
    if conf.ipam is None:
        raise invalid_config("ipam", None, "the dhcp plugin needs an \"ipam\" object")
    return Reader(conf.ipam, IPAM, "ipam", strict)


def load_socket(conf) -> DHCPConfig:
    """Just the daemon's socket (DEL, GC): a config broken after ADD never blocks a release."""
    return DHCPConfig(_ipam(conf, strict=False).str("daemonSocketPath", DEFAULT_SOCKET))


def load(conf, env_args: dict[str, str]) -> DHCPConfig:
    """Everything, validated (ADD, CHECK, STATUS); ``env_args`` is CNI_ARGS parsed."""
    f = _ipam(conf, strict=True)
    cfg = DHCPConfig(f.str("daemonSocketPath", DEFAULT_SOCKET))
    if not cfg.socket_path.startswith("/"):
        raise invalid_config("ipam.daemonSocketPath", cfg.socket_path, "must be an absolute path")
    cfg.priority = f.int("priority", 0, lo=0, hi=0xFFFFFFFF)
    skip_default = False
    wanted: list[int] = []
    for i, item in enumerate(f.list("request")):
        r = f.item(item, i, REQUEST, "request")
        if r.bool("skipDefault"):
            skip_default = True
        code = _code(r, "option", allow_empty=True)
        if code is not None:
            wanted.append(code)
    codes = ([] if skip_default else list(DEFAULT_REQUEST)) + wanted
    cfg.request = list(dict.fromkeys(codes))  # ordered, no duplicates
    for i, item in enumerate(f.list("provide")):
        p = f.item(item, i, PROVIDE, "provide")
        code = _code(p, "option", allow_empty=False)
        value = p.str("value")
        arg = p.str("fromArg")
        if arg:
            cfg.from_args.add(arg)
            if arg in env_args:  # as the reference: the CNI_ARGS value wins over `value`
                value = env_args[arg]
        data = value.encode("utf-8", "surrogateescape")
        if len(data) > 255:
            raise invalid_config(p.path("value"), value, "longer than 255 bytes, the most one DHCP option holds")
        if value or not arg:
            cfg.provide.append((code, data))  # type: ignore[arg-type]
    return cfg


def _code(r: Reader, key: str, allow_empty: bool) -> int | None:
    v = r.raw(key)
    if v is None or v == "":
        if allow_empty:
            return None
        raise invalid_config(r.path(key), v, "an option name or a decimal code is required")
    code = code_of(v)
    if code is None:
        raise invalid_config(r.path(key), v, "not a DHCP option name (e.g. \"host-name\", "
                             "\"classless-static-routes\") or a decimal code 0-255 given as a string")
    if code in RESERVED:
        raise invalid_config(r.path(key), v, f"option {code} ({RESERVED[code]}) is managed by the DHCP client")
    return code
