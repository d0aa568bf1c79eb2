"""CNI spec versions: the supported list, comparison and per-verb gating."""

from __future__ import annotations

from cnilib.errors import INCOMPATIBLE_VERSION, CNIError

# This suite's own release (pyproject.toml's version), shown by plugins run without a command.
SUITE = "0.1.0"
CURRENT = "1.1.0"
SUPPORTED = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# The version a config without "cniVersion" is read as (libcni's ConfigDecoder does this).
IMPLICIT = "0.1.0"

# Lowest config version that may carry each verb (SPEC "Version considerations"; the Go
# skel refuses these the same way).
MIN_VERSION_FOR_VERB = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def key(version: str) -> tuple[int, int, int]:
    """``"0.3.1"`` -> ``(0, 3, 1)``; raise ValueError unless it is ``X.Y.Z`` of integers."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"bad version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def at_least(version: str, minimum: str) -> bool:
    """True when ``version`` >= ``minimum``."""
    return key(version) >= key(minimum)


def family(version: str) -> str:
    """Result schema family: ``"02"`` (0.1/0.2), ``"04"`` (0.3.x/0.4.0) or ``"1"`` (1.x)."""
    k = key(version)
    if k < (0, 3, 0):
        return "02"
    if k < (1, 0, 0):
        return "04"
    return "1"


def require_supported(version: object) -> str:
    """Return ``version`` if this suite speaks it, else raise code 1."""
    if not isinstance(version, str) or version not in SUPPORTED:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {list(SUPPORTED)}",
        )
    return version


def gate_verb(command: str, version: str) -> None:
    """Raise code 1 when ``command`` is not allowed by a config of ``version``."""
    minimum = MIN_VERSION_FOR_VERB.get(command)
    if minimum and not at_least(version, minimum):
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion {minimum} or later, config is {version}",
        )
