"""tuning's configuration: every key of the reference tuning plugin, same meaning, default
and precedence, validated up front (code 7 naming the key and the value).

| key | default | |
|---|---|---|
| ``sysctl`` | none | ``{"net.ipv4.conf.IFNAME.arp_notify": "1"}``: string values, keys under ``net`` |
| ``mac`` | none | the interface's MAC |
| ``promisc`` | false | true: promiscuous on; false: no change |
| ``mtu`` | 0 (no change) | 68-65535 |
| ``txQLen`` | unset (no change) | 0 to 2^32-1 |
| ``allmulti`` | unset (no change) | all-multicast on or off |
| ``dataDir`` | ``/run/cni/tuning`` | where DEL finds what to restore (absolute path) |

Sources, later winning (the reference's order): the config; CNI_ARGS ``MAC``;
``runtimeConfig.mac`` (capability ``mac``); ``args.cni`` (``sysctl`` merged key by key
over the config's, ``mac``, ``promisc``, ``mtu``, ``allmulti``, ``txQLen`` replace).
``args.cni.sysctl`` without a top-level ``sysctl`` works (the reference panics).
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import MAX_MTU, MIN_MTU, Reader, check_mac, is_int
from cnilib.errors import INVALID_CONFIG, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

DEFAULT_DATA_DIR = "/run/cni/tuning"
MAX_TXQLEN = 0xFFFFFFFF
# The reference's TuningConf keys and its args.cni (IPAMArgs), matched as Go matches them.
FIELDS = gokeys.Struct("sysctl", "mac", "promisc", "mtu", "txQLen", "allmulti", "dataDir")
ARGS = gokeys.Struct("sysctl", "mac", "promisc", "mtu", "txQLen", "allmulti")


class TuningConf:
    """What one invocation asks for (after every source is merged)."""

    __slots__ = ("name", "sysctl", "mac", "mac_source", "promisc", "mtu", "txqlen", "allmulti", "data_dir")

    def __init__(self) -> None:
        self.name = ""
        self.sysctl: dict[str, str] = {}  # key as written -> value, in document order
        self.mac = ""
        self.mac_source = "mac"
        self.promisc = False
        self.mtu = 0
        self.txqlen: int | None = None
        self.allmulti: bool | None = None
        self.data_dir = DEFAULT_DATA_DIR

    def changes_link(self) -> bool:
        """Whether any link attribute is asked for (else only sysctls)."""
        return bool(self.mac or self.promisc or self.mtu or self.txqlen is not None or self.allmulti is not None)


def _sysctls(rd: Reader, key: str, out: dict[str, str]) -> None:
    """Merge the string map under ``key`` into ``out`` (later keys replace earlier ones)."""
    raw = rd.raw(key)
    if raw is None:
        return
    if not isinstance(raw, dict):
        rd.bad(key, raw, "must be an object of sysctl names to string values")
        return
    for k, v in raw.items():
        if not isinstance(v, str):
            rd.bad(f"{key}[{k!r}]", v, "must be a string (sysctl values are written as text)")
            continue
        if "\0" in v or "\0" in k:
            rd.bad(f"{key}[{k!r}]", v, "contains a NUL byte")
            continue
        out.pop(k, None)  # a merged key takes its new place, as a later write
        out[k] = v


def _mac(rd: Reader, where: str, value: object, c: TuningConf) -> None:
    if not isinstance(value, str):
        rd.bad(where, value, "must be a string")
        return
    if value == "":  # args.cni.mac "" clears it, as in the reference (a *string set to "")
        c.mac, c.mac_source = "", where
        return
    mac, why = check_mac(value)
    if why:
        rd.bad(where, value, why)
        return
    c.mac, c.mac_source = mac, where


def _read_link_keys(rd: Reader, c: TuningConf) -> None:
    """promisc, mtu, txQLen, allmulti of one source (config or args.cni), when given."""
    if rd.has("promisc"):
        c.promisc = rd.bool("promisc", c.promisc)
    if rd.has("mtu"):
        v = rd.raw("mtu")
        if is_int(v) and (v == 0 or MIN_MTU <= v <= MAX_MTU):  # type: ignore[operator]
            c.mtu = v  # type: ignore[assignment]
        else:
            rd.bad("mtu", v, f"must be 0 (no change) or between {MIN_MTU} and {MAX_MTU}")
    if rd.has("txQLen"):
        c.txqlen = rd.int("txQLen", c.txqlen if c.txqlen is not None else 0, 0, MAX_TXQLEN)
    if rd.has("allmulti"):
        v = rd.raw("allmulti")
        if isinstance(v, bool):
            c.allmulti = v
        else:
            rd.bad("allmulti", v, "must be true or false")


def load(cmd: "CmdArgs", strict: bool = True) -> TuningConf:
    """The merged config; strict: code 7 naming the key for any bad value (code 2 for an
    unknown CNI_ARGS key without IgnoreUnknown), lenient: defaults for what it cannot read."""
    from cnilib import args as _args

    c = TuningConf()
    c.name = cmd.conf.name or ""
    rd = Reader(cmd.conf.data, FIELDS, strict=strict)
    data_dir = rd.str("dataDir", DEFAULT_DATA_DIR)
    if not data_dir.startswith("/"):
        rd.bad("dataDir", data_dir, "must be an absolute path")
    else:
        c.data_dir = data_dir
    _sysctls(rd, "sysctl", c.sysctl)
    if rd.has("mac"):
        _mac(rd, "mac", rd.raw("mac"), c)
    _read_link_keys(rd, c)

    if strict:
        _args.check_known(cmd.args)
    env_mac = cmd.args.get("MAC")
    if env_mac:
        _mac(rd, "CNI_ARGS MAC", env_mac, c)
    rt_mac = cmd.conf.runtime("mac")
    if rt_mac is not None and rt_mac != "":
        _mac(rd, "runtimeConfig.mac", rt_mac, c)

    try:
        cni = cmd.conf.cni_args()
    except CNIError:
        if strict:
            raise
        cni = {}
    if cni:
        ard = Reader(cni, ARGS, "args.cni", strict=strict)
        _sysctls(ard, "sysctl", c.sysctl)
        if ard.fields.get("mac") is not None:
            _mac(ard, "args.cni.mac", ard.raw("mac"), c)
        _read_link_keys(ard, c)
    return c


def duplicate_sysctl_key(raw: bytes) -> str | None:
    """A key the top-level ``sysctl`` object repeats (the reference refuses those: the
    value that would win is not obvious), else None. Parses stdin again with a hook that
    sees every key: the config's own parse keeps only each key's last value."""
    import _json

    from cnilib.jsonio import JSONError

    marked: dict[int, tuple[dict, str]] = {}

    def pairs_hook(pairs: list) -> dict:
        d: dict = {}
        dup = ""
        for k, v in pairs:
            if k in d and not dup:
                dup = k
            d.pop(k, None)
            d[k] = v
        if dup:
            marked[id(d)] = (d, dup)  # the dict is kept alive, so its id stays unique
        return d

    class Ctx:
        strict = True
        object_hook = None
        object_pairs_hook = staticmethod(pairs_hook)
        parse_float = float
        parse_int = int
        parse_constant = None
        memo: dict = {}

    def bad_constant(name: str) -> object:
        raise JSONError(name)

    ctx = Ctx()
    ctx.parse_constant = bad_constant  # type: ignore[assignment]
    try:
        text = raw.decode("utf-8")
        top, _ = _json.make_scanner(ctx)(text, len(text) - len(text.lstrip(" \t\n\r")))
    except Exception:  # noqa: BLE001 - the config parsed once already; never fail here
        return None
    if not isinstance(top, dict):
        return None
    for k, v in top.items():
        if FIELDS.field(k) == "sysctl" and isinstance(v, dict) and id(v) in marked:
            return marked[id(v)][1]
    return None


def check_no_duplicates(cmd: "CmdArgs") -> None:
    """Code 7 when the top-level ``sysctl`` object names a key twice."""
    if not FIELDS.read(cmd.conf.data).get("sysctl"):
        return
    dup = duplicate_sysctl_key(cmd.conf.raw)
    if dup is not None:
        raise CNIError(INVALID_CONFIG, f"invalid sysctl: the key {dup!r} is given twice (duplicated sysctl keys "
                                       "are not allowed)")
