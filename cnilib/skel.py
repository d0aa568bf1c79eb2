"""The plugin process boundary: environment and stdin in, one JSON document out.

``run(plugin)`` reads CNI_COMMAND and the other CNI_* variables, validates them for the
verb (an empty variable counts as absent, as libcni exports all six), decodes and checks
the config, dispatches to the plugin's verb function and prints exactly one document on
stdout: the ADD result converted to the config's cniVersion, the VERSION answer, nothing
for DEL/CHECK/GC/STATUS, or ``{"cniVersion","code","msg","details"}`` on failure. This is
the only place exceptions become CNI errors: ``CNIError`` keeps its code, anything else is
code 999 with one log line on stderr, never a traceback.

Checks run in the Go skel's order so error codes match the reference plugins: required
variables (4), stdin (5), JSON (6), name (7), container ID (3/4), interface name (4),
cniVersion (1), verb gating (1), well-known keys (7), CNI_ARGS (4).
"""

from __future__ import annotations

import sys

from cnilib import version as _version
from cnilib.errors import (
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    UNKNOWN_CONTAINER,
    CNIError,
)

TYPE_CHECKING = False  # the typing module's constant, without importing typing
if TYPE_CHECKING:  # conf is imported when a verb needs it
    from cnilib.conf import NetConf

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# Required variables per verb (SPEC.md "Parameters"); CNI_PATH is optional where the spec
# says so (the Go skel insists on it; nothing here needs it except delegation).
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
IFNAMSIZ = 16


class CmdArgs:
    """What one invocation carries: the CNI_* variables, stdin and the parsed config."""

    __slots__ = ("command", "container_id", "netns", "ifname", "args_raw", "path", "stdin", "conf", "args")

    def __init__(self, command: str, container_id: str, netns: str, ifname: str, args_raw: str,
                 path: list[str], stdin: bytes) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args_raw = args_raw
        self.path = path
        self.stdin = stdin
        self.conf: NetConf = None  # type: ignore[assignment]  # set before any verb runs
        self.args: dict[str, str] = {}


# What a plugin is, for the tools around it (the conformance harness picks its checks by
# it): creates CNI_IFNAME in the container and delegates to IPAM; manages addresses only;
# needs a prevResult and passes it on (meta plugins such as portmap); configures lo.
KINDS = ("interface", "ipam", "chained", "loopback")


class Plugin:
    """A plugin: its CNI type name, its kind (KINDS) and its verbs. Each verb is
    ``fn(cmd: CmdArgs)``; ``add`` returns a Result. A verb left as None is a no-op success
    (GC/STATUS for plugins with nothing to do). Every ``plugins/<name>/main.py`` defines
    one as ``PLUGIN`` (see plugins/__init__.py)."""

    def __init__(self, name: str, kind: str, *, add=None, delete=None, check=None, gc=None, status=None,
                 about: str = "", versions: tuple[str, ...] = _version.SUPPORTED) -> None:
        if kind not in KINDS:
            raise ValueError(f"plugin {name}: kind {kind!r} is not one of {KINDS}")
        self.name = name
        self.kind = kind
        self.verbs = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}
        self.about = about or f"CNI {name} plugin (cni-py {_version.SUITE})"
        self.versions = versions


def verb(package: str, target: str):
    """The verb ``module:function`` of plugin package ``package`` (its ``__package__``),
    imported only when it runs: a verb's imports cost nothing to the other verbs'
    start-up. build/modules.py carries every module of a plugin's folder, so the string
    needs no import the static analysis could follow."""
    module, _, function = target.partition(":")

    def run_verb(cmd: CmdArgs):
        # __import__, not importlib.import_module: importlib's package would be one more import.
        return getattr(__import__(f"{package}.{module}", fromlist=[function]), function)(cmd)

    run_verb.__qualname__ = run_verb.__name__ = f"{module}.{function}"
    return run_verb


def valid_ifname(name: str) -> str:
    """Return "" if ``name`` is a usable interface name, else the reason: libcni's rules
    (the kernel's dev_valid_name) plus no ``%``, which the kernel expands as a name
    template (``br%d`` becomes ``br0``, ``br1``...) when it creates or renames a link, so
    the link would not be called what the config says."""
    if not name:
        return "interface name is empty"
    if name in (".", ".."):
        return "interface name cannot be . or .."
    if len(name.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
        return f"interface name is too long (max {IFNAMSIZ - 1} bytes)"
    for c in name:
        if c in "/:" or c.isspace() or c == "\0":
            return f"interface name contains an invalid character {c!r}"
        if c == "%":
            return "interface name contains '%', which the kernel expands as a name template"
    return ""


def run(plugin: Plugin) -> None:
    """Run one invocation against the real process environment and exit."""
    code = execute(plugin, process_env(), _read_stdin, sys.stdout, sys.stderr)
    # Exit without interpreter finalization (module teardown, GC): it costs ~3 ms per
    # call and there is nothing to finalize once our two streams are flushed.
    import posix

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    posix._exit(code)


def process_env() -> dict[str, str]:
    """The CNI_* variables of this process.

    Read from ``posix.environ`` rather than ``os.environ``: with the launchers' ``-S``,
    ``import os`` is not already paid for and costs ~2.7 ms, a fifth of a plugin call.
    Decoded as ``os.environ`` does (UTF-8, surrogateescape).
    """
    import posix

    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in posix.environ.items() if k.startswith(b"CNI_")}


def _read_stdin() -> bytes:
    return sys.stdin.buffer.read()


def execute(plugin: Plugin, env, read_stdin, out, err) -> int:
    """One invocation with explicit environment and streams; returns the exit status."""
    command = env.get("CNI_COMMAND", "")
    if command == "":
        # As the reference: with no command at all, describe ourselves on stderr.
        err.write(f"{plugin.about}\nCNI protocol versions supported: {', '.join(plugin.versions)}\n")
        return 0
    conf_version = _version.CURRENT
    try:
        cmd = _cmd_from_env(command, env)
        try:
            cmd.stdin = read_stdin()
        except (OSError, ValueError) as e:
            raise CNIError(IO_FAILURE, f"error reading from stdin: {e}") from None
        if command == "VERSION":
            _print(out, _version_answer(plugin, cmd.stdin))
            return 0
        from cnilib.conf import NetConf

        conf = NetConf.parse(cmd.stdin)
        cmd.conf = conf
        if conf.cni_version in plugin.versions:
            conf_version = conf.cni_version  # errors from here on speak the config's version
        # libcni's skel validates name, container ID and ifname before the version.
        conf.validate_name()
        _validate_attachment(cmd)
        if conf.cni_version not in plugin.versions:
            raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                           f"config is {conf.cni_version!r}, plugin supports {list(plugin.versions)}")
        _version.gate_verb(command, conf.cni_version)
        conf.validate()
        if cmd.args_raw:
            from cnilib import args as _args

            cmd.args = _args.parse(cmd.args_raw)
        fn = plugin.verbs[command]
        if fn is None:
            return 0
        result = fn(cmd)
        if command == "ADD":
            if result is None:
                raise CNIError(INTERNAL, f"{plugin.name}: ADD produced no result")
            _print(out, result.to_dict(conf.cni_version))
        return 0
    except CNIError as e:
        _print(out, e.to_dict(conf_version))
        return 1
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - the one error boundary
        where = ""
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        text = str(e).replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever the message
        err.write(f"{plugin.name}: internal error: {type(e).__name__}: {text}{where}\n")
        _print(out, CNIError(INTERNAL, f"{type(e).__name__}: {e}").to_dict(conf_version))
        return 1


def _cmd_from_env(command: str, env) -> CmdArgs:
    if command not in VERBS:
        raise CNIError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    missing = [k for k in REQUIRED[command] if not env.get(k)]
    if missing:
        raise CNIError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    path = [p for p in env.get("CNI_PATH", "").split(":") if p]
    return CmdArgs(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""),
                   env.get("CNI_IFNAME", ""), env.get("CNI_ARGS", ""), path, b"")


def _validate_attachment(cmd: CmdArgs) -> None:
    if cmd.command not in ("ADD", "DEL", "CHECK"):
        return
    from cnilib.conf import valid_name

    if not cmd.container_id:
        raise CNIError(UNKNOWN_CONTAINER, "missing containerID")
    if not valid_name(cmd.container_id):
        raise CNIError(INVALID_ENVIRONMENT, "invalid characters in containerID",
                       f"CNI_CONTAINERID {cmd.container_id!r} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    why = valid_ifname(cmd.ifname)
    if why:
        raise CNIError(INVALID_ENVIRONMENT, f"invalid CNI_IFNAME {cmd.ifname!r}: {why}")


def _version_answer(plugin: Plugin, stdin: bytes) -> dict:
    asked = plugin.versions[-1]
    if stdin.strip():
        from cnilib import gokeys, jsonio

        try:
            data = jsonio.loads(stdin)
        except jsonio.JSONError:
            data = None
        v = gokeys.get(data, "cniVersion") if isinstance(data, dict) else None
        if isinstance(v, str) and v in plugin.versions:
            asked = v
    return {"cniVersion": asked, "supportedVersions": list(plugin.versions)}


def _print(out, doc: dict) -> None:
    from cnilib import jsonio

    # Strings may hold surrogates: undecodable bytes from the environment (surrogateescape)
    # or lone \ud800-style escapes from JSON input. Replace them with U+FFFD, as Go does,
    # so stdout is always valid UTF-8 and printing can never fail half-way.
    text = jsonio.dumps(doc).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    try:
        out.write(text)
        out.write("\n")
        out.flush()
    except (BrokenPipeError, OSError):
        pass
