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
# Plugin-specific codes (>= 100), one meaning each across the whole suite.
NO_ADDRESS_AVAILABLE = 100  # IPAM: a range set has no free address
ALREADY_ALLOCATED = 101  # an address, host port... another attachment holds
NOT_FOUND = 102  # CHECK: something ADD made is missing
NOT_AS_ADDED = 103  # CHECK: something ADD made is there but not as ADD left it (e.g. lo down)
NO_SUCH_INTERFACE = 104  # a chained plugin's CNI_IFNAME is not in the container
TOOL_FAILED = 110  # a firewall tool (nft, iptables-restore) refused a change or failed
DAD_FAILED = 120  # IPv6 duplicate address detection failed in the container


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


class Teardown:
    """Try every step of a teardown (DEL, GC, undo), keep going after a failure, and
    report the first error at the end (the others as warnings on stderr):

        td = Teardown("bridge: DEL")
        td.attempt("deleting the veth pair", delete_veth, cmd)
        td.attempt("IPAM DEL", ipam.delete, cmd)
        td.finish()  # raises the first error, if any

    A CNIError keeps its code; an OSError becomes ``os_code`` (999 unless told) naming the
    step. The first error is raised with the others in its details (and on stderr)."""

    __slots__ = ("who", "errors", "os_code")

    def __init__(self, who: str, os_code: int = INTERNAL) -> None:
        self.who = who
        self.errors: list[CNIError] = []
        self.os_code = os_code

    def attempt(self, what: str, fn, *args, **kwargs) -> object:
        """``fn(*args, **kwargs)``; its value, or None when it failed (the error is kept)."""
        try:
            return fn(*args, **kwargs)
        except CNIError as e:
            self.errors.append(e)
        except OSError as e:
            self.errors.append(CNIError(self.os_code, f"{what}: {e.strerror or e}"))
        return None

    def add(self, error: CNIError) -> None:
        """Record an error found without a step (the first one recorded is reported)."""
        self.errors.append(error)

    def finish(self) -> None:
        """Raise the first error (the others in its details); warn about them on stderr."""
        if not self.errors:
            return
        import sys

        first, rest = self.errors[0], self.errors[1:]
        for e in rest:
            sys.stderr.write(f"{self.who}: also failed: {e.msg}\n")
        if rest:
            also = "; ".join(f"also failed: {e.msg}" for e in rest)
            first.details = f"{first.details}; {also}" if first.details else also
        raise first
