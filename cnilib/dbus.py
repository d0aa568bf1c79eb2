"""A minimal D-Bus client on the standard library: enough to call a few methods of a
service on the system bus (the firewall plugin's firewalld backend).

No python3-dbus, no GLib: plugins are frozen into binaries and every millisecond of
start-up counts, so this module is imported only where a D-Bus call is made, and it uses
``_socket`` (not ``socket``, which pulls in ``enum``, ``selectors`` and ``os``).

What it does:

- the bus address (``cnilib.dbusaddr``): ``DBUS_SYSTEM_BUS_ADDRESS`` (its first
  ``unix:path=`` or ``unix:abstract=`` entry), else ``unix:path=/run/dbus/system_bus_socket``;
- ``Connection``: an ``AF_UNIX`` stream, SASL ``EXTERNAL`` authentication with our uid,
  ``Hello``; then ``call``: one method call and its reply, with the argument signatures
  the callers need (``s``, ``b``, ``u``, ``as``; any reply is decoded: basic types,
  arrays, structs, dict entries, variants);
- calls carry NO_AUTO_START: a call never starts (D-Bus-activates) a service that is
  not running;
- bounded time: setting up the connection (connect, authentication, ``Hello``) and each
  call afterwards must finish within ``timeout`` seconds (default ``TIMEOUT``) or
  ``BusTimeout`` names the socket and the step: an unresponsive bus (a socket that
  accepts and never answers) is an error, never a hang. After one timeout the connection
  fails every later call at once: a stuck bus or service costs one wait, not one per call;
- errors: an error reply is ``DBusError`` carrying the D-Bus error name and message; a
  bus that is not there (no socket, nobody listening) is ``BusUnavailable``; anything the
  bus sends that is not D-Bus is ``ProtocolError``. All are ``BusError``.
"""

from __future__ import annotations

import _socket
import posix
import struct
from time import monotonic

from cnilib.dbusaddr import system_bus_address, unix_socket

TIMEOUT = 5.0  # seconds: connection set-up, then each call
BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
# The largest message we accept (the spec's limit is 128 MiB; the replies we ask for are
# a few hundred bytes): a bigger one is a protocol error, not a reason to allocate.
MAX_MESSAGE = 8 << 20

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_AUTO_START = 0x2  # header flag: do not activate the destination if it is not running
# Header field codes (D-Bus specification, "Message Format").
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SENDER, _SIGNATURE = range(1, 9)
_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "s": 4, "o": 4, "g": 1,
          "h": 4, "a": 4, "(": 8, "{": 8, "v": 1}
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}


class BusError(Exception):
    """Any failure talking to the bus."""


class BusUnavailable(BusError):
    """There is no bus at the address: no socket, or nobody listening on it."""


def _target(address: str) -> tuple[str, str]:
    try:
        return unix_socket(address)
    except ValueError as e:
        raise BusUnavailable(str(e)) from None


class BusTimeout(BusError):
    """The bus did not answer in time."""


class ProtocolError(BusError):
    """The peer sent something that is not D-Bus (or more than we accept)."""


class DBusError(BusError):
    """An error reply: ``name`` is the D-Bus error name, ``message`` its text."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message


# ---- marshalling (little-endian out; either byte order in) ----

def _pad(buf: bytearray, n: int) -> None:
    buf.extend(b"\0" * (-len(buf) % n))


def _put_str(buf: bytearray, s: str, code: str = "s") -> None:
    raw = s.encode()
    if code == "g":
        buf.append(len(raw))
    else:
        _pad(buf, 4)
        buf.extend(struct.pack("<I", len(raw)))
    buf.extend(raw + b"\0")


def _put(buf: bytearray, code: str, value: object) -> None:
    """Append one value of the single complete type ``code`` (s, o, g, b, u, y, as)."""
    if code in ("s", "o", "g"):
        _put_str(buf, str(value), code)
    elif code == "b":
        _pad(buf, 4)
        buf.extend(struct.pack("<I", 1 if value else 0))
    elif code == "u":
        _pad(buf, 4)
        buf.extend(struct.pack("<I", int(value)))
    elif code == "y":
        buf.append(int(value) & 0xFF)
    elif code == "as":
        _pad(buf, 4)
        at = len(buf)
        buf.extend(b"\0\0\0\0")
        start = len(buf)  # strings are 4-aligned: no padding between length and first element
        for item in value:  # type: ignore[attr-defined]
            _put_str(buf, str(item))
        struct.pack_into("<I", buf, at, len(buf) - start)
    else:
        raise ValueError(f"cannot marshal D-Bus type {code!r}")


def split_signature(sig: str) -> list[str]:
    """The complete types of a signature: ``"sas(ub)"`` -> ``["s", "as", "(ub)"]``."""
    out, i = [], 0
    while i < len(sig):
        j = _type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _type_end(sig: str, i: int) -> int:
    """Index just after the complete type starting at ``sig[i]``."""
    c = sig[i]
    if c == "a":
        return _type_end(sig, i + 1)
    if c in "({":
        close, depth, j = ")" if c == "(" else "}", 0, i
        while j < len(sig):
            if sig[j] in "({":
                depth += 1
            elif sig[j] in ")}":
                depth -= 1
                if depth == 0:
                    if sig[j] != close:
                        break
                    return j + 1
            j += 1
        raise ProtocolError(f"bad signature {sig!r}")
    if c in _ALIGN:
        return i + 1
    raise ProtocolError(f"bad signature {sig!r}")


class _Reader:
    """Decodes values from one message (offsets are from the message start, where the
    alignment rules apply)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, little: bool) -> None:
        self.data = data
        self.pos = pos
        self.end = "<" if little else ">"

    def _align(self, n: int) -> None:
        self.pos += -self.pos % n
        if self.pos > len(self.data):
            raise ProtocolError("message truncated")

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError("message truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def _fixed(self, code: str) -> object:
        fmt = self.end + _FIXED[code]
        self._align(struct.calcsize(fmt))
        (v,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
        return bool(v) if code == "b" else v

    def _string(self, code: str) -> str:
        if code == "g":
            n = self._take(1)[0]
        else:
            n = self._fixed("u")  # type: ignore[assignment]
        raw = self._take(int(n) + 1)
        if raw[-1:] != b"\0":
            raise ProtocolError("string without its NUL")
        return raw[:-1].decode("utf-8", "replace")

    def value(self, sig: str) -> object:
        """One value of the complete type ``sig``."""
        c = sig[0]
        if c in _FIXED:
            return self._fixed(c)
        if c in "sog":
            return self._string(c)
        if c == "v":
            inner = self._string("g")
            if len(split_signature(inner)) != 1:
                raise ProtocolError(f"bad variant signature {inner!r}")
            return self.value(inner)
        if c == "(":
            self._align(8)
            fields = split_signature(sig[1:-1])
            if not fields:
                raise ProtocolError("empty struct")
            return tuple(self.value(t) for t in fields)
        if c == "a":
            n = int(self._fixed("u"))  # type: ignore[arg-type]
            elem = sig[1:]
            self._align(_ALIGN[elem[0]])
            stop = self.pos + n
            if n > MAX_MESSAGE or stop > len(self.data):
                raise ProtocolError("array beyond the message")
            if elem[0] == "{":
                k, v = split_signature(elem[1:-1])
                out_d: dict = {}
                while self.pos < stop:
                    self._align(8)
                    key = self.value(k)
                    out_d[key] = self.value(v)
                return out_d
            out: list = []
            while self.pos < stop:
                at = self.pos
                out.append(self.value(elem))
                if self.pos == at:  # cannot happen with valid types; never loop on a hostile peer
                    raise ProtocolError("array element of no size")
            return out
        raise ProtocolError(f"cannot read D-Bus type {sig!r}")

    def values(self, sig: str) -> tuple:
        return tuple(self.value(t) for t in split_signature(sig))


def encode_call(serial: int, destination: str, path: str, interface: str, member: str,
                signature: str = "", args: tuple = ()) -> bytes:
    """One METHOD_CALL message."""
    body = bytearray()
    types = split_signature(signature)
    if len(types) != len(args):
        raise ValueError(f"signature {signature!r} wants {len(types)} arguments, got {len(args)}")
    for code, value in zip(types, args, strict=True):
        _put(body, code, value)
    fields: list[tuple[int, str, object]] = [(_PATH, "o", path), (_MEMBER, "s", member)]
    if interface:
        fields.append((_INTERFACE, "s", interface))
    if destination:
        fields.append((_DESTINATION, "s", destination))
    if signature:
        fields.append((_SIGNATURE, "g", signature))
    msg = bytearray(b"l" + bytes([METHOD_CALL, NO_AUTO_START, 1]) + struct.pack("<II", len(body), serial))
    at = len(msg)
    msg.extend(b"\0\0\0\0")
    start = len(msg) + (-len(msg) % 8)
    for code, typ, value in fields:
        _pad(msg, 8)
        msg.append(code)
        _put_str(msg, typ, "g")
        _put(msg, typ, value)
    struct.pack_into("<I", msg, at, len(msg) - start)
    _pad(msg, 8)
    return bytes(msg + body)


class Message:
    """A received message: its type, header fields and decoded body."""

    __slots__ = ("type", "fields", "body")

    def __init__(self, typ: int, fields: dict[int, object], body: tuple) -> None:
        self.type = typ
        self.fields = fields
        self.body = body


def header_size(head: bytes) -> tuple[int, bool]:
    """(total size of the message whose first 16 bytes are ``head``, little-endian?)."""
    if head[:1] not in (b"l", b"B") or head[3] != 1:
        raise ProtocolError("not a D-Bus message")
    little = head[:1] == b"l"
    body_len, _, fields_len = struct.unpack(("<" if little else ">") + "III", head[4:16])
    header_end = 16 + fields_len + (-(16 + fields_len) % 8)
    total = header_end + body_len
    if total > MAX_MESSAGE:
        raise ProtocolError(f"message of {total} bytes is over our limit of {MAX_MESSAGE}")
    return total, little


def decode(data: bytes) -> Message:
    """A whole message (``header_size(data[:16])[0]`` bytes)."""
    _, little = header_size(data[:16])
    rd = _Reader(data, 12, little)
    fields = rd.value("a(yv)")
    fmap = {int(code): value for code, value in fields}  # type: ignore[union-attr]
    rd._align(8)
    sig = fmap.get(_SIGNATURE, "")
    body = rd.values(str(sig)) if sig else ()
    return Message(data[1], fmap, body)


# ---- the connection ----

def _deadline(timeout: float) -> float:
    return monotonic() + timeout


def _left(deadline: float) -> float:
    return deadline - monotonic()


class Connection:
    """One authenticated connection to a bus (``address``: default the system bus).

    Connecting, authenticating and ``Hello`` take at most ``timeout`` seconds together;
    each ``call`` at most ``timeout`` seconds (unless told otherwise)."""

    __slots__ = ("address", "target", "where", "timeout", "sock", "serial", "unique_name", "broken", "_buf")

    def __init__(self, address: str | None = None, timeout: float = TIMEOUT) -> None:
        self.address = address or system_bus_address()
        self.target, self.where = _target(self.address)
        self.timeout = timeout
        self.sock = None
        self.serial = 0
        self.unique_name = ""
        self.broken = ""  # set by a timeout: later calls fail at once instead of waiting again
        self._buf = b""
        deadline = _deadline(timeout)
        try:
            self._connect(deadline)
            self._authenticate(deadline)
            self.unique_name = str(self._call(deadline, BUS_NAME, BUS_PATH, BUS_NAME, "Hello")[0])
        except BaseException:
            self.close()
            raise

    def _connect(self, deadline: float) -> None:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock = s
        s.settimeout(max(_left(deadline), 0.001))
        try:
            s.connect(self.target)
        except TimeoutError:
            raise self._late("connect") from None
        except OSError as e:
            raise BusUnavailable(f"D-Bus socket {self.where}: {e.strerror or e}") from None

    def _late(self, what: str) -> BusTimeout:
        return BusTimeout(f"D-Bus socket {self.where}: no answer to {what} within {self.timeout:g} s")

    def _send(self, data: bytes, deadline: float, what: str) -> None:
        left = _left(deadline)
        if left <= 0:
            raise self._late(what)
        self.sock.settimeout(left)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise self._late(what) from None
        except OSError as e:
            raise BusUnavailable(f"D-Bus socket {self.where}: sending {what}: {e.strerror or e}") from None

    def _recv_until(self, n: int, deadline: float, what: str) -> bytes:
        """The next ``n`` bytes of the stream (``n`` = -1: up to and including CRLF)."""
        while True:
            if n < 0:
                i = self._buf.find(b"\r\n")
                if i >= 0:
                    out, self._buf = self._buf[:i + 2], self._buf[i + 2:]
                    return out
                if len(self._buf) > 16384:
                    raise ProtocolError(f"D-Bus socket {self.where}: authentication line too long")
            elif len(self._buf) >= n:
                out, self._buf = self._buf[:n], self._buf[n:]
                return out
            left = _left(deadline)
            if left <= 0:
                raise self._late(what)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise self._late(what) from None
            except OSError as e:
                raise BusUnavailable(f"D-Bus socket {self.where}: reading the answer to {what}: "
                                     f"{e.strerror or e}") from None
            if not chunk:
                raise BusUnavailable(f"D-Bus socket {self.where}: the bus closed the connection ({what})")
            self._buf += chunk

    def _authenticate(self, deadline: float) -> None:
        uid = str(posix.geteuid()).encode().hex()
        self._send(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n", deadline, "authentication")
        line = self._recv_until(-1, deadline, "authentication")
        if not line.startswith(b"OK "):
            text = line.decode("ascii", "replace").strip()
            raise ProtocolError(f"D-Bus socket {self.where}: authentication refused ({text})")
        self._send(b"BEGIN\r\n", deadline, "authentication")

    def _call(self, deadline: float, destination: str, path: str, interface: str, member: str,
              signature: str = "", args: tuple = ()) -> tuple:
        self.serial += 1
        serial = self.serial
        what = f"{interface}.{member}" if interface else member
        self._send(encode_call(serial, destination, path, interface, member, signature, args), deadline, what)
        while True:  # signals (NameAcquired...) and other traffic are skipped
            head = self._recv_until(16, deadline, what)
            total, _ = header_size(head)
            msg = decode(head + self._recv_until(total - 16, deadline, what))
            if msg.type not in (METHOD_RETURN, ERROR) or msg.fields.get(_REPLY_SERIAL) != serial:
                continue
            if msg.type == ERROR:
                text = msg.body[0] if msg.body and isinstance(msg.body[0], str) else ""
                raise DBusError(str(msg.fields.get(_ERROR_NAME, "")), text)
            return msg.body

    def call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
             args: tuple = (), timeout: float | None = None) -> tuple:
        """Call ``interface.member`` of ``path`` at ``destination`` with ``args`` (their
        types in ``signature``) and return the reply's values; DBusError for an error reply."""
        if self.broken:
            raise BusTimeout(self.broken)
        if self.sock is None:
            raise BusUnavailable(f"D-Bus socket {self.where}: connection closed")
        try:
            return self._call(_deadline(self.timeout if timeout is None else timeout), destination, path,
                              interface, member, signature, args)
        except BusTimeout as e:
            # The bus (or the service) is stuck: one bounded wait per connection, not one per call.
            self.broken = f"{e} (an earlier call timed out)"
            raise

    def name_has_owner(self, name: str) -> bool:
        """Whether a connection owns the well-known ``name`` on this bus."""
        return bool(self.call(BUS_NAME, BUS_PATH, BUS_NAME, "NameHasOwner", "s", (name,))[0])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
