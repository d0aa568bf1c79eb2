"""Delegation to an IPAM plugin (SPEC "Delegated plugins"; libcni's invoke.Delegate*).

The IPAM plugin named by ``ipam.type`` is found in CNI_PATH and executed with the same
environment as ours (only CNI_COMMAND changed) and the whole network config on stdin.
Its error keeps its code; its ADD result is parsed in whatever version it declares.
"""

from __future__ import annotations

import posix

from cnilib import execplugin, gokeys
from cnilib.errors import DECODE_FAILURE, INTERNAL, INVALID_CONFIG, CNIError

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs
    from cnilib.types import Result


# Delegation depth, passed down in the environment (a delegated plugin gets ours, so the
# count survives plugins of other suites in between): ``"ipam": {"type": "bridge"}`` in a
# bridge config, or two plugins naming each other, would otherwise exec without end.
DEPTH_VAR = b"CNIPY_DELEGATION_DEPTH"
MAX_DEPTH = 4


def plugin_type(cmd: "CmdArgs") -> str:
    """``ipam.type`` of the config; code 7 when it is missing, not a plain name, the
    calling plugin's own type, or when delegation is already MAX_DEPTH plugins deep."""
    t = cmd.conf.ipam_type()
    if not isinstance(t, str) or not t:
        raise CNIError(INVALID_CONFIG, "missing ipam.type")
    if "/" in t or t in (".", ".."):
        raise CNIError(INVALID_CONFIG, f"invalid ipam.type {t!r}: must be a plugin name, not a path")
    if t == cmd.conf.type:
        raise CNIError(INVALID_CONFIG, f"invalid ipam.type {t!r}: a plugin cannot delegate to itself")
    if _depth() >= MAX_DEPTH:
        raise CNIError(INVALID_CONFIG, f"invalid ipam.type {t!r}: delegation is already {_depth()} plugins "
                       f"deep (a cycle of plugins delegating to each other?)")
    return t


def _depth() -> int:
    v = posix.environ.get(DEPTH_VAR, b"0")
    return int(v) if v.isdigit() and len(v) < 4 else MAX_DEPTH


# libcni's types.Error, read as Go reads it.
_ERROR = gokeys.Struct("code", "msg", "details")


def _exec(cmd: "CmdArgs", command: str, stdin: bytes | None = None) -> bytes:
    name = plugin_type(cmd)
    path = execplugin.find_in_path(name, cmd.path)
    if path is None:
        raise CNIError(INVALID_CONFIG, f"failed to find plugin {name!r} in path {cmd.path}")
    # Our whole environment, as received (bytes: posix.environ, not os, which the
    # launchers' -S leaves unimported), with only CNI_COMMAND changed.
    env = dict(posix.environ)
    env[b"CNI_COMMAND"] = command.encode()
    env[DEPTH_VAR] = str(_depth() + 1).encode()
    try:
        rc, out, err = execplugin.run(path, cmd.conf.raw if stdin is None else stdin, env)
    except OSError as e:
        raise CNIError(INTERNAL, f"failed to exec IPAM plugin {path}: {e.strerror}") from None
    if rc != 0:
        raise _plugin_error(name, out, err, rc)
    return out


def _plugin_error(name: str, out: bytes, err: bytes, rc: int) -> CNIError:
    # libcni's pluginErr: the error JSON on stdout; failing that, stderr as the message.
    from cnilib import jsonio

    text = out.strip()
    if text:
        try:
            doc = jsonio.loads(text)
        except jsonio.JSONError:
            doc = None
        if isinstance(doc, dict):
            doc = _ERROR.read(doc)
        if isinstance(doc, dict) and isinstance(doc.get("code"), int) and not isinstance(doc.get("code"), bool):
            details = doc.get("details")
            return CNIError(doc["code"], str(doc.get("msg", "")), details if isinstance(details, str) else "")
        return CNIError(INTERNAL, f"IPAM plugin {name} failed but its error is not CNI JSON: "
                        f"{text[:500].decode(errors='replace')!r}")
    msg = err.strip().decode(errors="replace")[:500]
    if msg:
        return CNIError(INTERNAL, f"IPAM plugin {name} failed: {msg}")
    return CNIError(INTERNAL, f"IPAM plugin {name} failed with exit status {rc} and no error message")


def add(cmd: "CmdArgs") -> "Result":
    """IPAM ADD: the plugin's result, parsed (any supported version)."""
    from cnilib import jsonio
    from cnilib.types import Result

    out = _exec(cmd, "ADD")
    try:
        doc = jsonio.loads(out)
    except jsonio.JSONError as e:
        raise CNIError(DECODE_FAILURE, f"IPAM plugin {plugin_type(cmd)} returned an unreadable result: {e}") from None
    return Result.parse(doc, cmd.conf.cni_version)


def delete(cmd: "CmdArgs") -> None:
    """IPAM DEL."""
    _exec(cmd, "DEL")


def check(cmd: "CmdArgs") -> None:
    """IPAM CHECK."""
    _exec(cmd, "CHECK")


def gc(cmd: "CmdArgs") -> None:
    """IPAM GC (same stdin: it carries cni.dev/valid-attachments)."""
    _exec(cmd, "GC")


def status(cmd: "CmdArgs") -> None:
    """IPAM STATUS."""
    _exec(cmd, "STATUS")
