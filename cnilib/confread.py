"""Typed reads of a plugin's config keys, the same way in every plugin.

``Reader(obj, struct, where, strict)`` reads the keys of one JSON object as Go decodes them
into a struct (``cnilib.gokeys``: exact or case-folded, the last key wins) and checks each
value's type and range:

* strict (ADD, CHECK, STATUS): the first bad value raises code 7 naming the key's path
  (``ipam.ranges[1][0].rangeEnd``, ``runtimeConfig.portMappings[0].hostPort``) and the value;
* lenient (DEL, GC): a bad value is skipped and the default used, so a config edited (or
  broken) after ADD never blocks releasing an attachment.

An absent key, and ``null``, give the default (Go leaves the field as it was). Standard
library free: host-local reads its config with it on its start-up budget.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.errors import invalid_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.ip import IP, Net
    from cnilib.types import Route

MIN_MTU = 68  # ETH_MIN_MTU: the smallest MTU a veth, bridge or macvlan accepts
MAX_MTU = 65535


def is_int(v: object) -> bool:
    """A JSON integer (``true`` is no integer here, as in Go)."""
    return isinstance(v, int) and not isinstance(v, bool)


def parse_mac(text: object) -> str | None:
    """A 6-byte MAC in any of Go's net.ParseMAC notations (``aa:bb:..``, ``aa-bb-..``,
    ``aabb.ccdd.eeff``) as lower-case colon form; None if it is not one."""
    hexdigits = "0123456789abcdefABCDEF"
    t = text.strip() if isinstance(text, str) else ""
    if len(t) == 17 and t[2] in ":-":
        parts = t.split(t[2])
        if len(parts) != 6 or any(len(p) != 2 or not all(ch in hexdigits for ch in p) for p in parts):
            return None
    elif len(t) == 14 and t[4] == "." and t[9] == ".":
        raw = t.replace(".", "")
        if len(raw) != 12 or not all(ch in hexdigits for ch in raw):
            return None
        parts = [raw[i:i + 2] for i in range(0, 12, 2)]
    else:
        return None
    return ":".join(p.lower() for p in parts)


def check_mac(value: object, unicast: bool = True) -> tuple[str, str]:
    """(the MAC in lower-case colon form, "") or ("", why it is not a usable one)."""
    mac = parse_mac(value)
    if mac is None:
        return "", "must be a MAC address like 0a:58:0a:f4:00:05"
    if unicast and int(mac[:2], 16) & 1:
        return "", "must be a unicast MAC address (the first octet's lowest bit clear)"
    return mac, ""


class Reader:
    """The fields of one config object (see the module docstring)."""

    __slots__ = ("fields", "where", "strict")

    def __init__(self, obj: dict | None, struct: gokeys.Struct, where: str = "", strict: bool = True) -> None:
        self.fields = struct.read(obj) if obj else {}
        self.where = where
        self.strict = strict

    # -- plumbing ------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The key's path for messages (``ipam.dataDir``); "" is the object itself."""
        if not key:
            return self.where
        return f"{self.where}.{key}" if self.where else key

    def bad(self, key: str, value: object, why: str) -> None:
        """A bad value: code 7 naming the key path and the value (strict), else nothing."""
        if self.strict:
            raise invalid_config(self.path(key), value, why)

    def raw(self, key: str) -> object:
        """The value as given (None when absent or null)."""
        return self.fields.get(key)

    def has(self, key: str) -> bool:
        """Whether the key is given with a non-null value."""
        return self.fields.get(key) is not None

    # -- scalars -------------------------------------------------------------------------
    def bool(self, key: str, default: bool = False) -> bool:
        v = self.fields.get(key)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        self.bad(key, v, "must be true or false")
        return default

    def int(self, key: str, default: int = 0, lo: int | None = None, hi: int | None = None,
            why: str = "") -> int:
        """An integer in [lo, hi] (either bound optional)."""
        v = self.fields.get(key)
        if v is None:
            return default
        if is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi):
            return v  # type: ignore[return-value]
        if not why:
            why = ("must be an integer" + (f" from {lo}" if lo is not None else "")
                   + (f" to {hi}" if hi is not None else ""))
        self.bad(key, v, why)
        return default

    def mtu(self, key: str = "mtu") -> int:
        """0 (the kernel's default) or MIN_MTU..MAX_MTU."""
        v = self.fields.get(key)
        if v is None:
            return 0
        if is_int(v) and (v == 0 or MIN_MTU <= v <= MAX_MTU):
            return v  # type: ignore[return-value]
        self.bad(key, v, f"must be 0 (the kernel's default) or between {MIN_MTU} and {MAX_MTU}")
        return 0

    def str(self, key: str, default: str = "") -> str:
        """A string; "" counts as unset (as in Go); a NUL byte is refused."""
        v = self.fields.get(key)
        if v is None or v == "":
            return default
        if not isinstance(v, str):
            self.bad(key, v, "must be a string")
            return default
        if "\0" in v:
            self.bad(key, v, "contains a NUL byte")
            return default
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        v = self.fields.get(key)
        if v is None:
            return default
        if isinstance(v, str) and v in choices:
            return v
        self.bad(key, v, "must be " + " or ".join(repr(c) for c in choices))
        return default

    def ifname(self, key: str, default: str = "") -> str:
        """An interface name the kernel takes as it is (libcni's rules, no ``%`` template);
        "" means the default."""
        from cnilib.skel import valid_ifname

        v = self.fields.get(key)
        if v is None or v == "":
            return default
        why = valid_ifname(v) if isinstance(v, str) else "must be a string"
        if why:
            self.bad(key, v, why)
            return default
        return v  # type: ignore[return-value]

    def mac(self, key: str, unicast: bool = True) -> str:
        """A MAC address (Go's notations) in lower-case colon form; "" when unset."""
        v = self.fields.get(key)
        if v is None or v == "":
            return ""
        mac, why = check_mac(v, unicast)
        if why:
            self.bad(key, v, why)
        return mac

    def ip(self, key: str) -> "IP | None":
        text = self.str(key)
        if not text:
            return None
        from cnilib.ip import parse_ip

        try:
            return parse_ip(text)
        except ValueError:
            self.bad(key, text, "not an IP address")
            return None

    def cidr(self, key: str) -> "Net | None":
        text = self.str(key)
        if not text:
            return None
        from cnilib.ip import parse_cidr

        try:
            return parse_cidr(text)
        except ValueError:
            self.bad(key, text, "not a CIDR (address/prefix)")
            return None

    def as_route(self, same_family: bool = False) -> "Route":
        """This object as a CNI route (``dst`` required, ``gw`` and the 1.1.0 integer
        fields optional): an IPAM config's ``routes`` entry. ``same_family``: a ``gw`` of
        the other address family than ``dst`` is code 7 too."""
        from cnilib.ip import parse_cidr
        from cnilib.types import Route

        dst = self.raw("dst")
        if not isinstance(dst, str):
            raise invalid_config(self.path("dst"), dst, "every route needs a dst CIDR string")
        try:
            net = parse_cidr(dst)
        except ValueError:
            raise invalid_config(self.path("dst"), dst, "not a CIDR (address/prefix)") from None
        gw = self.ip("gw")
        if same_family and gw is not None and gw.version != net.version:
            raise invalid_config(self.path("gw"), str(gw), f"is not of the address family of dst {dst}")
        ints = {k: self.int(k, None, why="must be an integer")  # type: ignore[arg-type]
                for k in ("mtu", "advmss", "priority", "table", "scope")}
        return Route(net, gw, ints["mtu"] or 0, ints["advmss"] or 0, ints["priority"] or 0, ints["table"],
                     ints["scope"])

    # -- containers ----------------------------------------------------------------------
    def strings(self, key: str) -> list[str]:
        """A list of strings; [] when unset."""
        v = self.fields.get(key)
        if v is None:
            return []
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return list(v)
        self.bad(key, v, "must be a list of strings")
        return []

    def list(self, key: str) -> list:
        """A list (items as given); [] when unset."""
        v = self.fields.get(key)
        if v is None:
            return []
        if isinstance(v, list):
            return v
        self.bad(key, v, "must be a list")
        return []

    def obj(self, key: str, struct: gokeys.Struct) -> "Reader | None":
        """The object under ``key`` as a Reader of ``struct``; None when unset (or bad, lenient)."""
        v = self.fields.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            self.bad(key, v, "must be an object")
            return None
        return Reader(v, struct, self.path(key), self.strict)

    def item(self, value: object, index: int, struct: gokeys.Struct, key: str) -> "Reader | None":
        """List item ``index`` of ``key`` as a Reader of ``struct`` (path ``key[index]``)."""
        where = f"{self.path(key)}[{index}]"
        if not isinstance(value, dict):
            if self.strict:
                raise invalid_config(where, value, "must be an object")
            return None
        return Reader(value, struct, where, self.strict)
