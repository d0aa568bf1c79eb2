"""Config documents with their object keys re-cased, the way Go's ``encoding/json`` still reads them.

Go's decoder matches a JSON key to a struct field case-insensitively (an exact match first,
then a case-folded one), so every reference plugin reads ``"HostPort"`` or ``"HOSTPORT"``
as ``hostPort``. Runtimes rely on it: containerd's CRI (go-cni) marshals capability
arguments from Go structs without JSON tags, so ``runtimeConfig.portMappings`` arrives as
``[{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]``.

``recase(doc, variant)`` re-cases every object key at every depth (the top level, ``ipam``,
``runtimeConfig`` and each capability's entries, ``args``/``args.cni``, ``prevResult`` and
its interfaces/ips/routes/dns), except the keys of objects that are Go maps (see
``MAP_VALUED_KEYS``). Values are never changed. ``recase(doc, variant, within)`` re-cases
one part only and ``scopes``/``describe`` name the parts, so a check can tell a plugin's
author which keys it reads wrongly.
"""

from __future__ import annotations

import json
from typing import Callable

# Objects that the reference decodes into Go *maps*, not structs: their keys are data (names
# a user or runtime chose) matched exactly, so re-casing them would change the config's
# meaning rather than test key matching. The key naming such an object is still a struct
# field and is re-cased; only the object's own keys (and its values) are left alone.
MAP_VALUED_KEYS: frozenset[str] = frozenset({
    # types.NetConf.Capabilities map[string]bool: capability names libcni matches exactly.
    "capabilities",
    # containerd's runtimeConfig capability, map[string]string of pod annotations.
    "io.kubernetes.cri.pod-annotations",
    # tuning's SysCtl map[string]string (top level and args.cni.sysctl): sysctl names.
    "sysctl",
})
# Not listed, although the reference declares it map[string]interface{}:
# types.NetConf.RawPrevResult (``prevResult``). version.ParsePrevResult marshals that map
# back to JSON (keys as sent) and decodes it into the result structs, so its keys are
# field names again and Go matches them case-insensitively.


def go_field_case(key: str) -> str:
    """The Go field name a tag-less struct would marshal: first letter upper-cased
    (``hostPort`` -> ``HostPort``, ``cniVersion`` -> ``CniVersion``, ``ipMasq`` -> ``IpMasq``)."""
    return key[:1].upper() + key[1:]


def upper_case(key: str) -> str:
    """Every letter upper-cased (``hostPort`` -> ``HOSTPORT``)."""
    return key.upper()


VARIANTS: dict[str, Callable[[str], str]] = {
    "go-field-case": go_field_case,
    "upper-case": upper_case,
}


Path = tuple[str, ...]


def _walk(v: object, fn: Callable[[str], str], variant: str, deep: bool = True) -> object:
    if isinstance(v, dict):
        out: dict = {}
        for k, sub in v.items():
            new = fn(k)
            if new in out:
                # Two keys folding onto one would make the document mean something else.
                raise ValueError(f"re-casing {variant} makes key {k!r} collide with another")
            out[new] = sub if k in MAP_VALUED_KEYS or not deep else _walk(sub, fn, variant)
        return out
    if isinstance(v, list):
        return [_walk(x, fn, variant) for x in v]
    return v


def recase(doc: dict, variant: str, within: Path | None = None) -> dict:
    """``doc`` with its object keys re-cased by ``VARIANTS[variant]`` (maps excepted).

    ``within`` narrows it, to tell which keys a plugin reads wrongly: ``()`` re-cases only
    the top-level key names; ``("runtimeConfig", "portMappings")`` only the keys inside
    ``doc["runtimeConfig"]["portMappings"]`` (the keys on the way there stay as they are)."""
    fn = VARIANTS[variant]
    if within is None:
        return _walk(doc, fn, variant)  # type: ignore[return-value]
    if within == ():
        return _walk(doc, fn, variant, deep=False)  # type: ignore[return-value]
    out = json_copy(doc)
    parent = out
    for k in within[:-1]:
        parent = parent[k]
    parent[within[-1]] = _walk(parent[within[-1]], fn, variant)
    return out


def json_copy(doc: dict) -> dict:
    """A deep copy of a JSON document."""
    return json.loads(json.dumps(doc))


def scopes(doc: dict, within: Path = ()) -> list[Path]:
    """The sub-documents under ``within`` that hold object keys to re-case (not Go maps)."""
    node: object = doc
    for k in within:
        node = node[k]  # type: ignore[index]
    if not isinstance(node, dict):
        return []
    return [within + (k,) for k, v in node.items() if k not in MAP_VALUED_KEYS and _has_keys(v)]


def _has_keys(v: object) -> bool:
    if isinstance(v, dict):
        return bool(v)
    if isinstance(v, list):
        return any(_has_keys(x) for x in v)
    return False


def describe(doc: dict, variant: str, within: Path) -> str:
    """``within`` in words, with a few of the keys it re-cases."""
    if within == ():
        fn = VARIANTS[variant]
        pairs = [f"{k} -> {fn(k)}" for k in doc if fn(k) != k]
        return "the top-level key names (" + ", ".join(pairs[:4]) + (", ..." if len(pairs) > 4 else "") + ")"
    node: object = doc
    for k in within:
        node = node[k]  # type: ignore[index]
    return f"the keys inside {'.'.join(within)} ({example(node, variant, 4)})"


def example(doc: object, variant: str, limit: int = 6) -> str:
    """A few ``original -> re-cased`` key pairs of ``doc``, for messages."""
    fn = VARIANTS[variant]
    seen: list[str] = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                pair = f"{k} -> {fn(k)}"
                if fn(k) != k and pair not in seen:
                    seen.append(pair)
                if k not in MAP_VALUED_KEYS:
                    walk(sub)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    return ", ".join(seen[:limit]) + (", ..." if len(seen) > limit else "")
