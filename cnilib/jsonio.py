"""JSON in and out without importing the ``json`` package.

``import json`` is expensive because ``json.decoder`` compiles regular expressions (and
pulls in ``re`` and ``enum``) at import time: most of a plugin's budget (README, "What the
code avoids, measured"). The C
accelerator ``_json`` that ``json`` itself uses does the real work and needs none of it, so
we drive it directly. Output matches Go's ``json.MarshalIndent(v, "", "    ")`` layout
as the reference plugins print it. Falls back to ``json`` where ``_json`` is missing.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - non-CPython
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"


class JSONError(ValueError):
    """Input is not one valid JSON document."""


def _object(pairs: list) -> dict:
    # A repeated key goes to the end, so the dict iterates in the order of each key's
    # last occurrence: Go decodes keys in document order and the last one matching a
    # field wins, also when a re-cased key sits between two equal ones
    # ({"a":1,"A":2,"a":3} sets a to 3; see cnilib.gokeys).
    d = dict(pairs)
    if len(d) != len(pairs):
        d = {}
        for k, v in pairs:
            d.pop(k, None)
            d[k] = v
    return d


class _Ctx:
    # The attribute set _json.make_scanner reads from its context object.
    strict = True
    object_hook = None
    object_pairs_hook = staticmethod(_object)
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict = {}

    def __init__(self) -> None:
        self.memo = {}
        self.parse_constant = _parse_constant
        self.parse_float = _parse_float


def _parse_constant(name: str) -> object:
    # Go's encoding/json has no NaN/Infinity; reject them like it does.
    raise JSONError(f"invalid JSON constant {name}")


_INF = float("inf")


def _parse_float(text: str) -> float:
    # ... nor numbers beyond float64 (1e999 would otherwise become Infinity).
    value = float(text)
    if value == _INF or value == -_INF:
        raise JSONError(f"number {text} out of range")
    return value


def loads(data: bytes | str) -> object:
    """Parse one JSON document (bytes are decoded as UTF-8); raise JSONError otherwise."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONError(f"input is not UTF-8: {e}") from None
    if _json is None:  # pragma: no cover
        import json

        try:
            return json.loads(data)
        except ValueError as e:
            raise JSONError(str(e)) from None
    start = len(data) - len(data.lstrip(_WS))
    scan = _json.make_scanner(_Ctx())
    try:
        value, end = scan(data, start)
    except StopIteration as e:
        raise JSONError(f"Expecting value: char {e.value}") from None
    except JSONError:
        raise
    except RecursionError:
        raise JSONError("JSON nested too deeply") from None
    except Exception:
        # _json reports syntax errors through json.decoder.JSONDecodeError, which it
        # looks up in sys.modules; without it imported it fails with SystemError.
        # Only this slow path pays for the full json package, to get its message.
        _explain(data)
        raise JSONError("invalid JSON") from None
    if data[end:].strip(_WS):
        raise JSONError(f"Extra data: char {end}")
    return value


def _explain(data: str) -> None:
    import json

    try:
        json.loads(data, parse_constant=_parse_constant)
    except ValueError as e:
        raise JSONError(str(e)) from None


def _default(o: object) -> object:
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(value: object, indent: bool = True) -> str:
    """Serialize ``value``; with ``indent`` use Go's 4-space layout as the reference does.

    Go's MarshalIndent prints empty objects and arrays as ``{}`` and ``[]``.
    """
    if not indent:
        if _json is None:  # pragma: no cover
            import json

            return json.dumps(value, separators=(",", ":"))
        enc = _json.make_encoder({}, _default, _json.encode_basestring, None, ":", ",", False, False, False)
        return "".join(enc(value, 0))
    out: list[str] = []
    _pretty(value, "", out)
    return "".join(out)


def _pretty(v: object, pad: str, out: list[str]) -> None:
    # The C encoder cannot indent (CPython uses a pure-Python path for that), so this
    # small recursive printer does it; CNI documents are a few hundred bytes.
    if isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        inner = pad + "    "
        out.append("{\n")
        last = len(v) - 1
        for i, (k, item) in enumerate(v.items()):
            if not isinstance(k, str):
                raise TypeError(f"object key {k!r} is not a string")
            out.append(inner + _string(k) + ": ")
            _pretty(item, inner, out)
            out.append(",\n" if i < last else "\n")
        out.append(pad + "}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        inner = pad + "    "
        out.append("[\n")
        last = len(v) - 1
        for i, item in enumerate(v):
            out.append(inner)
            _pretty(item, inner, out)
            out.append(",\n" if i < last else "\n")
        out.append(pad + "]")
    elif isinstance(v, str):
        out.append(_string(v))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("NaN and Infinity are not JSON")
        out.append(float.__repr__(v))
    else:
        _default(v)


def _string(s: str) -> str:
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(s, ensure_ascii=False)
    return _json.encode_basestring(s)
