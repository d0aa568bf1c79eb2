"""bandwidth's configuration: the reference's four keys and the ``bandwidth`` capability,
read as Go reads them (containerd sends ``{"IngressRate": ..., "IngressBurst": 4294967295,
...}``), validated up front (code 7 naming the key and the value), merged per direction.

| key | unit | |
|---|---|---|
| ``ingressRate`` / ``ingressBurst`` | bits/s, bits | traffic into the container (TBF on the host veth) |
| ``egressRate`` / ``egressBurst`` | bits/s, bits | traffic out of the container (TBF on an IFB) |

Each of the four is an integer from 0 to 2^64-1 (0: unset); per direction a rate needs a
burst and a burst a rate (the reference's messages), and a burst is below 2^32-1 bytes
(the reference's "burst cannot be more than 4GB"). The same keys, in any case, under
``runtimeConfig.bandwidth``.

Precedence, per direction (the reference ignores the whole capability as soon as any of
the four keys is in the config, even as 0): a direction set in only one source takes
that source's rate and burst; set in both, the lower rate and the lower burst, i.e. both
limits hold (traffic through two token buckets in a row is held to the lower rate and
the smaller burst). So neither a pod annotation nor the network's config can lift the
other's limit, and a pod asking for less gets less.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader
from cnilib.errors import invalid_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import CmdArgs

FIELDS = gokeys.Struct("ingressRate", "ingressBurst", "egressRate", "egressBurst")
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
DIRECTIONS = ("ingress", "egress")


class Limit:
    """One direction's rate (bits/s) and burst (bits), and where they came from."""

    __slots__ = ("burst", "rate", "source")

    def __init__(self, rate: int, burst: int, source: str) -> None:
        self.rate = rate
        self.burst = burst
        self.source = source  # "" (config), "runtimeConfig.bandwidth", or both joined by " and "

    def __repr__(self) -> str:
        return f"Limit(rate={self.rate}, burst={self.burst}, source={self.source!r})"


class BandwidthConf:
    __slots__ = ("egress", "ingress", "name")

    def __init__(self, name: str, ingress: Limit | None, egress: Limit | None) -> None:
        self.name = name
        self.ingress = ingress
        self.egress = egress

    def shaped(self) -> bool:
        return self.ingress is not None or self.egress is not None


def _entry(rd: Reader, source: str) -> dict[str, Limit | None]:
    """The two directions of one source (config keys or the capability)."""
    out: dict[str, Limit | None] = {}
    for d in DIRECTIONS:
        rk, bk = f"{d}Rate", f"{d}Burst"
        rate = rd.int(rk, 0, 0, U64_MAX, why="must be an integer from 0 to 2^64-1 (bits per second)")
        burst = rd.int(bk, 0, 0, U64_MAX, why="must be an integer from 0 to 2^64-1 (bits)")
        if burst // 8 >= U32_MAX:
            rd.bad(bk, burst, "burst cannot be more than 4GB (at most 34359738359 bits)")
        if rate and not burst:
            rd.bad(bk, rd.raw(bk), f"if rate is set, burst must also be set ({rk} is {rate})")
        if burst and not rate:
            rd.bad(rk, rd.raw(rk), f"if burst is set, rate must also be set ({bk} is {burst})")
        out[d] = Limit(rate, burst, source) if rate and burst else None
    return out


def _merge(a: Limit | None, b: Limit | None) -> Limit | None:
    if a is None or b is None:
        return a or b
    return Limit(min(a.rate, b.rate), min(a.burst, b.burst), f"{a.source} and {b.source}")


def load(cmd: CmdArgs) -> BandwidthConf:
    """The limits to apply (strict: code 7 naming the key for any bad value)."""
    conf = _entry(Reader(cmd.conf.data, FIELDS), "config")
    raw = cmd.conf.runtime("bandwidth")
    if raw is not None:
        if not isinstance(raw, dict):
            raise invalid_config("runtimeConfig.bandwidth", raw, "must be an object")
        rt = _entry(Reader(raw, FIELDS, "runtimeConfig.bandwidth"), "runtimeConfig.bandwidth")
        conf = {d: _merge(conf[d], rt[d]) for d in DIRECTIONS}
    return BandwidthConf(cmd.conf.name or "", conf["ingress"], conf["egress"])
