"""A lean rtnetlink client: pyroute2's message classes, a small synchronous socket of ours.

``import pyroute2`` costs more than ten plugin start-ups: the package root imports every
module it has (IPRoute, NDB, asyncio, multiprocessing...). A plugin needs three message
classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``) and a blocking request/ack loop, so
``load()`` imports exactly those (README, "What the code avoids, measured"):

- the package root and ``pyroute2.config`` (which imports ``multiprocessing`` and runs
  ``uname``) are stand-ins holding what the message modules read; they turn into the real
  modules on first use of anything else (PEP 562 ``__getattr__``), so a later
  ``from pyroute2 import IPRoute`` in the same process still works;
- while the message modules import, the standard modules they import but do not use at
  import time (``logging``, ``traceback``, ``pkgutil``, ``threading``, ``socket``,
  ``typing``: mostly ``logging`` -> ``re`` and ``typing``) are stand-ins
  too: what is read at import time is provided (``getLogger`` returning a logger that
  resolves on use, ``_thread`` locks, ``_socket``'s address functions, inert typing
  constructs for annotations) and anything else resolves to the real module on first use.
  The stand-ins leave ``sys.modules`` as soon as the import is done; a module already
  imported is never replaced.

The socket I/O is ours (``_socket``): pyroute2 0.9's own sockets are asyncio-based.

A ``Socket`` belongs to the network namespace of the thread that created it and keeps
working there from any thread: ``netns.run_in(path, nl.Socket)`` gives a socket into a
container's namespace.
"""

from __future__ import annotations

import sys

import _socket

AF_NETLINK = 16
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

_RECV_SIZE = 1 << 18

_classes: dict | None = None


def _stand_in(name: str, path: str, attrs: dict, init: str = ""):
    """A module object for package ``name`` at ``path`` that knows only ``attrs`` until
    something asks it for more; then it runs the real package ``__init__`` (``init``,
    default ``path/__init__.py``) in place."""
    mod = type(sys)(name)
    mod.__path__ = [path]
    mod.__file__ = init or path + "/__init__.py"
    mod.__dict__.update(attrs)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        d = mod.__dict__
        d.pop("__getattr__", None)
        code = _package_code(d["__file__"])
        exec(code, d)  # noqa: S102 - the package's own __init__, as import would run it
        try:
            return d[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    mod.__getattr__ = __getattr__
    return mod


_FROZEN_ROOT = "<frozen>/pyroute2"


def _pyroute2_dir() -> tuple[str, str]:
    """pyroute2's package directory and its ``__init__`` file: from a normal install, or
    a ``<frozen>/pyroute2`` pseudo-path when the package is frozen into the executable
    (the standalone build: no file to find, its modules are served from memory)."""
    import _imp

    if _imp.is_frozen("pyroute2"):
        return _FROZEN_ROOT, _FROZEN_ROOT + "/__init__.py"
    import posix

    for entry in sys.path:
        d = (entry or ".") + "/pyroute2"
        try:
            posix.stat(d + "/__init__.py")
        except OSError:
            continue
        return d, d + "/__init__.py"
    raise ImportError("pyroute2 is not installed (it is a dependency of cni-py)")


def _package_code(path: str):
    """The code object of a package ``__init__`` at ``path``: the frozen module's code for
    a ``<frozen>/pyroute2/...`` path, else compiled from the source file."""
    if path.startswith(_FROZEN_ROOT):
        import _imp

        # "<frozen>/pyroute2/config/__init__.py" -> "pyroute2.config"
        rel = path[len(_FROZEN_ROOT):].rsplit("/", 1)[0]
        return _imp.get_frozen_object("pyroute2" + rel.replace("/", "."))
    with open(path, "rb") as f:
        return compile(f.read(), path, "exec")


class _LazyLogger:
    """``logging.getLogger(name)`` that imports logging only when something is logged."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module("logging").getLogger(self._name), attr)


class _Inert:
    """Stands for typing constructs in annotations evaluated at import (``Optional[x]``,
    ``TypeVar("F", bound=...)``, ``X | Y``): accepts anything, means nothing."""

    def __getitem__(self, _key):
        return self

    def __call__(self, *_args, **_kwargs):
        return self

    def __or__(self, _other):
        return self

    __ror__ = __or__


def _deferred(name: str, eager: dict):
    """A stand-in for standard module ``name``: ``eager`` now, the rest from the real module
    (imported on first use)."""
    mod = type(sys)(name)
    mod.__dict__.update(eager)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        import importlib

        if sys.modules.get(name) is mod:
            del sys.modules[name]  # asked during the import: let the real module in now
        return getattr(importlib.import_module(name), attr)

    mod.__getattr__ = __getattr__
    return mod


def _std_stand_ins() -> dict:
    import _thread

    inert = _Inert()
    return {
        "logging": {"getLogger": _LazyLogger},
        "traceback": {},
        "pkgutil": {},
        "threading": {"Lock": _thread.allocate_lock, "RLock": _thread.RLock, "local": _thread._local},
        "socket": {"AF_INET": _socket.AF_INET, "AF_INET6": _socket.AF_INET6, "AF_UNSPEC": _socket.AF_UNSPEC,
                   "inet_ntop": _socket.inet_ntop, "inet_pton": _socket.inet_pton, "AddressFamily": int},
        "typing": {k: inert for k in ("Any", "Callable", "Dict", "Literal", "Optional", "TypeVar", "Union")},
    }


def load() -> dict:
    """Import pyroute2's rtnetlink message classes without its package root; returns
    ``{"ifinfmsg", "ifaddrmsg", "rtmsg"}``. Idempotent."""
    global _classes
    if _classes is not None:
        return _classes
    if "pyroute2" not in sys.modules:
        root, init = _pyroute2_dir()
        sys.modules["pyroute2"] = _stand_in("pyroute2", root, {}, init)
        if "pyroute2.config" not in sys.modules:
            # What the message modules read from pyroute2.config (its AF_* constants and
            # the data-plugin lists, empty unless a user configured them).
            cfg = _stand_in("pyroute2.config", root + "/config", {
                "AF_BRIDGE": 7, "AF_NETLINK": AF_NETLINK, "data_plugins_pkgs": [], "data_plugins_path": [],
            })
            sys.modules["pyroute2.config"] = cfg
            sys.modules["pyroute2"].__dict__["config"] = cfg
    placed = {}
    if "pyroute2.netlink" not in sys.modules:
        for name, eager in _std_stand_ins().items():
            if name not in sys.modules:
                placed[name] = sys.modules[name] = _deferred(name, eager)
    try:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
    finally:
        for name, mod in placed.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]

    _extend_macvlan_map(ifinfmsg)
    _classes = {"ifinfmsg": ifinfmsg, "ifaddrmsg": ifaddrmsg, "rtmsg": rtmsg}
    return _classes


def _extend_macvlan_map(ifinfmsg) -> None:
    """Teach pyroute2 IFLA_MACVLAN_BC_QUEUE_LEN and _USED (attributes 7 and 8, kernel >=
    5.11; pyroute2 0.9 knows macvlan attributes up to 6) through its public link-kind
    registry, so requests carry macvlan's ``bcqueuelen`` and answers decode it. Done here,
    before any message exists: pyroute2 keeps the class it first encoded or decoded a
    kind's data with."""
    base = ifinfmsg.ifinfo.data_map.get("macvlan")
    if base is None:
        return
    names = [entry[0] for entry in base.nla_map]
    # Positions are attribute numbers: extend only the map we know (7 entries, 0-6).
    if "IFLA_MACVLAN_BC_QUEUE_LEN" in names or len(names) != 7 or isinstance(base.nla_map[0][0], int):
        return
    data = type("macvlan_data", (base,), {"nla_map": tuple(base.nla_map) + (
        ("IFLA_MACVLAN_BC_QUEUE_LEN", "uint32"), ("IFLA_MACVLAN_BC_QUEUE_LEN_USED", "uint32"))})
    ifinfmsg.ifinfo.register_link_kind(module={"macvlan": data})


def msg(kind: str, fields: dict | None = None, attrs: list | None = None):
    """A new ``ifinfmsg``/``ifaddrmsg``/``rtmsg`` with these fields and attributes."""
    m = load()[kind]()
    if fields:
        for k, v in fields.items():
            m[k] = v
    m["attrs"] = list(attrs or [])
    return m


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` plus the extended-ack message, if any."""

    def __init__(self, errno: int, message: str = "") -> None:
        import posix

        text = posix.strerror(errno)
        if message:
            text = f"{text} ({message})"
        super().__init__(errno, text)
        self.kernel_message = message


def encode(m, msg_type: int, flags: int, seq: int = 0) -> bytes:
    """The message as the bytes sent to the kernel."""
    m["header"]["type"] = msg_type
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = seq
    m["header"]["pid"] = 0
    m.reset()
    m.encode()
    return bytes(m.data)


def _u32(b, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "little")


def _u16(b, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "little")


def parse_error(data, off: int, length: int) -> tuple[int, str]:
    """(errno, extack message) of an NLMSG_ERROR message at ``off`` (errno 0 = ack)."""
    err = -int.from_bytes(data[off + 16:off + 20], "little", signed=True)
    if err == 0:
        return 0, ""
    flags = _u16(data, off + 6)
    # The original request follows: its header only with NETLINK_CAP_ACK (flag 0x100),
    # else the whole message; then the extended-ack attributes (flag 0x200).
    orig_len = 16 if flags & 0x100 else _u32(data, off + 20)
    pos = off + 20 + ((orig_len + 3) & ~3)
    end = off + length
    text = ""
    while flags & 0x200 and pos + 4 <= end:
        alen, atype = _u16(data, pos), _u16(data, pos + 2)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            text = bytes(data[pos + 4:pos + alen]).rstrip(b"\0").decode(errors="replace")
        pos += (alen + 3) & ~3
    return err, text


class Socket:
    """One NETLINK_ROUTE socket, in the network namespace of the creating thread."""

    def __init__(self) -> None:
        s = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1 << 20)
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    s.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # older kernels: plain errors
            s.bind((0, 0))
        except BaseException:
            s.close()
            raise
        self._sock = s
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, m, msg_type: int, flags: int) -> int:
        self._seq += 1
        self._sock.send(encode(m, msg_type, flags, self._seq))
        return self._seq

    def _replies(self, seq: int):
        """Yield (type, data, offset, length) of each reply to ``seq`` until the ack,
        NLMSG_DONE or an error (raised)."""
        while True:
            data = self._sock.recv(_RECV_SIZE)
            off = 0
            while off + 16 <= len(data):
                length = _u32(data, off)
                if length < 16:
                    break
                mtype = _u16(data, off + 4)
                if _u32(data, off + 8) != seq:
                    off += (length + 3) & ~3
                    continue  # a late reply to an earlier request
                if mtype == NLMSG_ERROR:
                    err, text = parse_error(data, off, length)
                    if err:
                        raise NetlinkError(err, text)
                    return
                if mtype == NLMSG_DONE:
                    return
                yield mtype, data, off, length
                if not _u16(data, off + 6) & NLM_F_MULTI:
                    # A single answer (a GET without DUMP) carries no ack of its own.
                    return
                off += (length + 3) & ~3

    def request(self, m, msg_type: int, flags: int = 0) -> None:
        """Send a change (NEW*/DEL*/SET*) and wait for the kernel's ack."""
        seq = self._send(m, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
        for _ in self._replies(seq):
            pass

    def get(self, m, msg_type: int, kind: str):
        """A single GET (no dump): the decoded answer."""
        seq = self._send(m, msg_type, NLM_F_REQUEST)
        for _mtype, data, off, length in self._replies(seq):
            return _decode(kind, data, off, length)
        return None

    def dump(self, m, msg_type: int, kind: str, raw: bool = False) -> list:
        """A dump: every answer, decoded (or, with ``raw``, as bytes to scan cheaply)."""
        seq = self._send(m, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
        out = []
        for _mtype, data, off, length in self._replies(seq):
            out.append(bytes(data[off:off + length]) if raw else _decode(kind, data, off, length))
        return out


def _decode(kind: str, data, off: int, length: int):
    m = load()[kind](bytearray(data[off:off + length]))
    m.decode()
    return m


def raw_attrs(buf: bytes, start: int):
    """Yield (type, payload) of the attributes of a raw message from ``start`` (no decode:
    for scanning large dumps cheaply)."""
    end = _u32(buf, 0)
    pos = start
    while pos + 4 <= end:
        alen, atype = _u16(buf, pos), _u16(buf, pos + 2)
        if alen < 4:
            return
        yield atype & 0x3FFF, buf[pos + 4:pos + alen]
        pos += (alen + 3) & ~3
