"""CNI error codes and the one exception type every layer raises.

Codes follow SPEC.md section "Error" (1-11 reserved, 50/51 from 1.1.0, >=100 plugin
specific); 8 and 999 are the Go library's own and are used the same way here.
"""

from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_AFFECTED = 51
INTERNAL = 999
# Plugin-specific codes (>= 100) used across the suite.
NO_ADDRESS_AVAILABLE = 100
ALREADY_ALLOCATED = 101
NOT_FOUND = 102


class CNIError(Exception):
    """An error that becomes the CNI error document ``{cniVersion, code, msg, details}``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict:
        """The error as the spec's JSON object (``details`` only when set)."""
        out: dict = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r})"


def invalid_config(key: str, value: object, why: str = "") -> CNIError:
    """Code 7 for a bad config value; the message names the key and the value."""
    msg = f"invalid {key} {value!r}" if value is not None else f"missing {key}"
    return CNIError(INVALID_CONFIG, f"{msg}: {why}" if why else msg)


def invalid_env(msg: str) -> CNIError:
    """Code 4: a missing or malformed CNI_* environment variable."""
    return CNIError(INVALID_ENVIRONMENT, msg)
