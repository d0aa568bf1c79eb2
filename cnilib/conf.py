"""The network configuration a plugin reads on stdin."""

from __future__ import annotations

from cnilib import gokeys, jsonio
from cnilib import version as _version
from cnilib.errors import DECODE_FAILURE, INVALID_CONFIG, CNIError, invalid_config

_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(s: object) -> bool:
    """libcni's ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` (network names and container IDs)."""
    return isinstance(s, str) and bool(s) and s[0] in _NAME_FIRST and all(c in _NAME_REST for c in s)


# The keys of libcni's types.NetConf and of the fields every plugin config shares. Each
# plugin reads its own keys with its own gokeys.Struct through ``NetConf.read``: no plugin
# key folds onto one of these, so reading them apart is what Go does with the whole struct.
BASE = gokeys.Struct("cniVersion", "name", "type", "capabilities", "ipam", "dns", "prevResult",
                     "runtimeConfig", "args", "cni.dev/valid-attachments", "cni.dev/attachments")
# GC's attachment entries (libcni's types.GCAttachment).
ATTACHMENT = gokeys.Struct("containerID", "ifname")


class NetConf:
    """A parsed plugin config. ``data`` keeps every key as received; the keys every
    plugin shares get attributes, matched as Go matches them (``cnilib.gokeys``), so
    ``"CNIVersion"`` or ``"RuntimeConfig"`` work as with the reference.

    ``raw`` is stdin as received: delegated plugins (IPAM) get these exact bytes.
    """

    __slots__ = ("raw", "data", "base", "cni_version", "name", "type", "ipam", "dns",
                 "runtime_config", "capabilities", "args", "raw_prev_result")

    def __init__(self, raw: bytes, data: dict) -> None:
        self.raw = raw
        self.data = data
        self.base = base = BASE.read(data)
        v = base.get("cniVersion")
        self.cni_version: str = v if v else _version.IMPLICIT
        self.name = base.get("name")
        self.type = base.get("type")
        # Filled in by validate(), after the version check, so that the error order
        # matches libcni's skel: decode (6), name (7), version (1), then other keys (7).
        self.ipam: dict | None = None
        self.dns: dict | None = None
        self.runtime_config: dict = {}
        self.capabilities: dict = {}
        self.args: dict = {}
        self.raw_prev_result: dict | None = None

    @classmethod
    def parse(cls, raw: bytes) -> "NetConf":
        """Decode stdin: code 6 if it is not a JSON object; no semantic checks yet."""
        try:
            data = jsonio.loads(raw)
        except jsonio.JSONError as e:
            raise CNIError(DECODE_FAILURE, "error decoding network config", str(e)) from None
        if not isinstance(data, dict):
            raise CNIError(DECODE_FAILURE, "error decoding network config", "stdin is not a JSON object")
        conf = cls(raw, data)
        v = conf.base.get("cniVersion")
        if v is not None and not isinstance(v, str):
            raise CNIError(DECODE_FAILURE, "error decoding network config", f"cniVersion {v!r} is not a string")
        return conf

    def validate_name(self) -> None:
        """Code 7 for a missing or malformed ``name`` (libcni's rule)."""
        if self.name is None or self.name == "":
            raise CNIError(INVALID_CONFIG, "missing network name")
        if not valid_name(self.name):
            raise invalid_config("name", self.name, "must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

    def validate(self) -> None:
        """Code 7 for a bad ``name`` or a well-known key (``ipam``, ``dns``,
        ``runtimeConfig``, ``capabilities``, ``args``, ``prevResult``) that is not an object."""
        self.validate_name()
        if self.type is not None and not isinstance(self.type, str):
            raise invalid_config("type", self.type, "must be a string")
        base = self.base
        self.ipam = _opt_obj(base, "ipam")
        self.dns = _opt_obj(base, "dns")
        self.runtime_config = _opt_obj(base, "runtimeConfig") or {}
        self.capabilities = _opt_obj(base, "capabilities") or {}
        self.args = _opt_obj(base, "args") or {}
        self.raw_prev_result = _opt_obj(base, "prevResult")

    def read(self, struct: gokeys.Struct) -> dict:
        """The plugin's own top-level keys (``struct``), under their canonical names."""
        return struct.read(self.data)

    def ipam_type(self) -> object:
        """``ipam.type`` as given (None when absent); not validated here."""
        return gokeys.get(self.ipam, "type")

    def prev_result(self) -> "Result | None":
        """``prevResult`` parsed (any supported version; none given means the config's)."""
        if self.raw_prev_result is None:
            return None
        from cnilib.types import Result

        return Result.parse(self.raw_prev_result, self.cni_version)

    def valid_attachments(self) -> "set[tuple[str, str]] | None":
        """GC's ``cni.dev/valid-attachments`` (or the legacy ``cni.dev/attachments``) as a
        set of (containerID, ifname); None when absent or null, which means: remove nothing.
        Code 7 naming the key for anything but a list of such objects."""
        key = "cni.dev/valid-attachments"
        obj = self.base.get(key)
        if obj is None:
            key = "cni.dev/attachments"
            obj = self.base.get(key)
        if obj is None:
            return None
        if not isinstance(obj, list):
            raise invalid_config(key, obj, "must be a list of {\"containerID\", \"ifname\"} objects")
        out = set()
        for i, a in enumerate(obj):
            f = ATTACHMENT.read(a) if isinstance(a, dict) else {}
            cid, ifn = f.get("containerID"), f.get("ifname")
            if not isinstance(cid, str) or not isinstance(ifn, str):
                raise invalid_config(f"{key}[{i}]", a, "needs string containerID and ifname")
            out.add((cid, ifn))
        return out

    def runtime(self, capability: str) -> object:
        """``runtimeConfig[capability]`` (Go's key matching: ``PortMappings`` too) or None.
        The value is as given: its own keys are read with the capability's Struct."""
        return gokeys.get(self.runtime_config, capability)

    def cni_args(self) -> dict:
        """``args.cni`` (CONVENTIONS.md) as a dict, {} when absent or malformed-empty; its
        keys as given (read them with a Struct or ``gokeys.get``)."""
        cni = gokeys.get(self.args, "cni")
        if cni is None:
            return {}
        if not isinstance(cni, dict):
            raise invalid_config("args.cni", cni, "must be an object")
        return cni


def _opt_obj(data: dict, key: str) -> dict | None:
    v = data.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise invalid_config(key, v, "must be a JSON object")
    return v


TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:  # keeps cnilib.types out of the import path
    from cnilib.types import Result  # noqa: F401
