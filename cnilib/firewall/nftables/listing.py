"""One reader of ``nft -j list table`` output, whatever the table: its chains with their
rules, its maps and its sets, element keys and data in one text form.

Every nftables feature reads its table through ``Listing``; what the parts mean is the
feature's business. Keys and data are read as nft lists them:

- a key is an address (normalized as ``cnilib.ip`` prints it), any other scalar as text,
  or a concatenation as a tuple of those: ``("192.0.2.1", "tcp", "8080")``;
- a map element's data is a jump's target, or a concatenation of two as
  ``"address port"`` (dnat maps), else None;
- a comment is the element's comment, "" when it has none.
"""

from __future__ import annotations

from cnilib.firewall.nftables.elements import OWNED, OWNERS
from cnilib.ip import parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall.nftables.runner import Nft


def _text(p: object) -> str:
    """A listed scalar as text; an address in our text form."""
    s = str(p)
    try:
        return str(parse_ip(s))
    except ValueError:
        return s


def _key(k: object) -> object | None:
    """A listed element key: text, or a tuple of texts for a concatenation; None for
    anything else (ranges, prefixes: none of our tables has them)."""
    if isinstance(k, dict):
        parts = k.get("concat")
        return tuple(_text(p) for p in parts) if isinstance(parts, list) else None
    return _text(k)


def _data(d: object) -> str | None:
    """A listed map element's data: a jump's target, or ``"address port"``."""
    if not isinstance(d, dict):
        return None
    jump = d.get("jump")
    if isinstance(jump, dict):
        return jump.get("target")
    parts = d.get("concat")
    if isinstance(parts, list) and len(parts) == 2:
        return f"{_text(parts[0])} {parts[1]}"
    return None


def _unwrap(e: object) -> tuple[object, str]:
    """(key, comment) of a listed element key: nft wraps a key with a comment in ``elem``."""
    if isinstance(e, dict) and isinstance(e.get("elem"), dict):
        return e["elem"].get("val"), e["elem"].get("comment", "")
    return e, ""


class Listing:
    """One table as nft listed it.

    ``chains``: name -> its rule objects, in order; ``chain_info``: name -> the chain object
    (type, hook, priority of a base chain); ``maps``: name -> key -> (data, comment);
    ``sets``: name -> key -> comment. Objects of other tables are ignored."""

    __slots__ = ("family", "table", "chains", "chain_info", "maps", "sets")

    def __init__(self, family: str, table: str) -> None:
        self.family = family
        self.table = table
        self.chains: dict[str, list[dict]] = {}
        self.chain_info: dict[str, dict] = {}
        self.maps: dict[str, dict[object, tuple[str | None, str]]] = {}
        self.sets: dict[str, dict[object, str]] = {}

    def merge(self, doc: object) -> "Listing":
        """Add what ``doc`` (nft's parsed JSON) lists of our table; returns self."""
        items = doc.get("nftables", []) if isinstance(doc, dict) else []
        for item in items:
            if not isinstance(item, dict):
                continue
            kind, obj = next(iter(item.items()), (None, None))
            if not isinstance(obj, dict) or obj.get("table") != self.table:
                continue
            if obj.get("family") != self.family:
                continue
            name = obj.get("name", "")
            if kind == "chain":
                self.chains[name] = []  # a chain object precedes its rules: re-read = reset
                self.chain_info[name] = obj
            elif kind == "rule":
                self.chains.setdefault(obj.get("chain", ""), []).append(obj)
            elif kind == "map":
                elems = self.maps.setdefault(name, {})
                for pair in obj.get("elem", []) or []:
                    if isinstance(pair, list) and len(pair) == 2:
                        k, comment = _unwrap(pair[0])
                        key = _key(k)
                        if key is not None:
                            elems[key] = (_data(pair[1]), comment)
            elif kind == "set":
                elems = self.sets.setdefault(name, {})
                for e in obj.get("elem", []) or []:
                    k, comment = _unwrap(e)
                    key = _key(k)
                    if key is not None:
                        elems[key] = comment
        return self

    @property
    def owners(self) -> dict[str, str]:
        """The ``owners`` set: H -> comment (the owner's tag)."""
        return {k: c for k, c in self.sets.get(OWNERS, {}).items() if isinstance(k, str)}

    @property
    def owned(self) -> dict[tuple[str, str], str]:
        """The ``owned`` set: (H, F) -> comment (the owner's tag)."""
        return {k: c for k, c in self.sets.get(OWNED, {}).items() if isinstance(k, tuple) and len(k) == 2}


def read_table(nft: "Nft", family: str, table: str, handles: bool = False) -> Listing | None:
    """Table ``family table`` as nft lists it now (with rule handles if asked); None when
    it does not exist. Only slow paths read (see ``Nft.list_json``)."""
    doc = nft.list_json("table", family, table, handles=handles)
    return None if doc is None else Listing(family, table).merge(doc)
