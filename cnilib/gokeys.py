"""JSON object keys matched to field names the way Go's ``encoding/json`` matches them.

The reference plugins decode their config, ``runtimeConfig``, ``args`` and ``prevResult``
into Go structs, and Go's decoder pairs a JSON key with a struct field like this: a key
equal to a field's name goes to that field; otherwise a key whose case-folded form equals
a field's goes to the first such field; any other key is ignored; when several keys land
on one field, the last one in the document wins. Runtimes depend on it: containerd's CRI
(go-cni) marshals its capability arguments from structs without JSON tags, so they arrive
as ``{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}`` and
``{"IngressRate": ..., "IngressBurst": ...}``, which the Go plugins read as ``hostPort``...

Every key any plugin of ours reads goes through this module: ``Struct(...).read(obj)``
gives an object's fields under their canonical names, ``get(obj, name)`` one field. Keys of
objects that are maps in Go (``capabilities``, sysctl names, annotations) are data, not
field names, and are read as they are.

"Last one wins" needs the document order of duplicate keys, which a dict loses
(``{"a":1,"A":2,"a":3}`` would keep ``a`` first): ``cnilib.jsonio.loads`` re-inserts a
repeated key, so dicts it builds iterate in the order of each key's last occurrence.

Standard library free (this runs in every plugin's start-up).
"""

from __future__ import annotations

# Non-ASCII letters whose simple case mapping (unicode.ToUpper(unicode.ToLower(r)), what
# Go's foldName does per rune) lands on ASCII, so they can match an ASCII field name:
# KELVIN SIGN -> K, LATIN SMALL LETTER LONG S -> S, DOTLESS I -> I, CAPITAL I WITH DOT -> I.
# Python's str.lower() maps U+0130 to two characters (full mapping), hence the table.
_SPECIAL = {"\u212a": "K", "\u017f": "S", "\u0131": "I", "\u0130": "I"}


def fold(name: str) -> str:
    """Go's ``foldName``: two names fold equal exactly when Go's decoder treats them as the
    same field name (ASCII letters case-insensitively; the non-ASCII runes that fold onto
    ASCII letters; other runes by their simple case mapping)."""
    if name.isascii():
        return name.upper()
    out = []
    for c in name:
        if c < "\x80":
            out.append(c.upper())
            continue
        s = _SPECIAL.get(c)
        if s is None:
            lo = c.lower()
            if len(lo) != 1:  # Go's simple mappings never expand a rune
                lo = c
            s = lo.upper()
            if len(s) != 1:
                s = lo
        out.append(s)
    return "".join(out)


class Struct:
    """The JSON field names of one Go struct, e.g. ``Struct("hostPort", "containerPort")``."""

    __slots__ = ("names", "_exact", "_folded")

    def __init__(self, *names: str) -> None:
        self.names = names
        self._exact = frozenset(names)
        folded: dict[str, str] = {}
        for n in names:
            folded.setdefault(fold(n), n)  # for historical reasons Go lets the first field win
        self._folded = folded

    def field(self, key: str) -> str | None:
        """The field a JSON key decodes into, or None when Go would ignore the key."""
        if key in self._exact:
            return key
        return self._folded.get(fold(key))

    def read(self, obj: dict) -> dict:
        """The fields ``obj`` sets, under their canonical names (the last matching key wins);
        keys of no field are left out."""
        out = {}
        exact, folded = self._exact, self._folded
        for k, v in obj.items():
            if k in exact:
                out[k] = v
            else:
                f = folded.get(fold(k))
                if f is not None:
                    out[f] = v
        return out


def get(obj: dict | None, name: str, default: object = None) -> object:
    """Field ``name`` of ``obj`` as Go would decode it (the last key matching ``name``
    exactly or case-folded), or ``default``. For structs in which no other field folds to
    the same name, which holds for every CNI struct; use ``Struct`` otherwise."""
    if not obj:
        return default
    target = fold(name)
    found = default
    for k, v in obj.items():
        if k == name or fold(k) == target:
            found = v
    return found
