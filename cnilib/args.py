"""CNI_ARGS (``K=V;K2=V2``) and the keys of the suite that may appear in it.

CONVENTIONS.md: CNI_ARGS is shared by every plugin of a chain, so a key one plugin uses
reaches all of them. The reference fails on any key it does not know unless
``IgnoreUnknown`` is true; we keep that rule for genuinely unknown keys but accept every
key a plugin of a standard chain legitimately sends (``IP``, ``MAC``, ``K8S_POD_*``) in
every plugin, so ``IP=...`` alone never breaks a bridge or portmap.
"""

from __future__ import annotations

from cnilib.errors import INVALID_ENVIRONMENT, UNSUPPORTED_FIELD, CNIError

# Keys any plugin of ours accepts without IgnoreUnknown.
WELL_KNOWN = frozenset({
    "IgnoreUnknown",
    "IP",
    "MAC",
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
})


def parse(raw: str | None) -> dict[str, str]:
    """Split CNI_ARGS into a dict; a pair without ``=`` is code 4. Later keys win."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw.split(";"):
        if pair == "":
            continue
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise CNIError(INVALID_ENVIRONMENT, f"ARGS: invalid pair {pair!r}")
        out[k] = v
    return out


def ignore_unknown(args: dict[str, str]) -> bool:
    """Go's ``UnmarshallableBool``: "1"/"true" (any case) are true, "0"/"false" false."""
    v = args.get("IgnoreUnknown", "").lower()
    if v in ("", "0", "false"):
        return False
    if v in ("1", "true"):
        return True
    raise CNIError(INVALID_ENVIRONMENT, f"ARGS: invalid IgnoreUnknown value {args.get('IgnoreUnknown')!r}")


def check_known(args: dict[str, str], extra: frozenset[str] | set[str] = frozenset()) -> None:
    """Raise code 2 for a key neither well known nor in ``extra``, unless IgnoreUnknown."""
    if ignore_unknown(args):
        return
    for k, v in args.items():
        if k not in WELL_KNOWN and k not in extra:
            raise CNIError(UNSUPPORTED_FIELD, f"ARGS: unknown key {k}={v!r} (set IgnoreUnknown=1 to allow)")
