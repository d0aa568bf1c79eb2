"""portmap's configuration: every key of the reference with its meaning and default, the
``portMappings`` capability validated up front (code 7 naming the entry and the key), and
the container addresses taken from prevResult as the reference takes them.

``load(cmd, strict=False)`` (DEL, GC, STATUS) falls back to defaults for keys it cannot
read: a broken config never blocks releasing an attachment.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader
from cnilib.errors import INVALID_CONFIG, CNIError, invalid_config
from cnilib.firewall import DEFAULT_MARK_BIT, PROTOCOLS, HostPortSpec, PortMapping, check_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.ip import IP, Net
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

# The reference portmap's own keys and its PortMapEntry, matched as Go matches them:
# containerd's CRI sends the capability as {"HostPort", "ContainerPort", "Protocol", "HostIP"}.
FIELDS = gokeys.Struct("snat", "masqAll", "markMasqBit", "externalSetMarkChain", "conditionsV4",
                       "conditionsV6", "backend")
ENTRY = gokeys.Struct("hostPort", "containerPort", "protocol", "hostIP")


class PortMapEntry:
    """One ``runtimeConfig.portMappings`` entry as given (validated)."""

    __slots__ = ("host_port", "container_port", "protocol", "host_ip")

    def __init__(self, host_port: int, container_port: int, protocol: str, host_ip: "IP | None") -> None:
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol
        self.host_ip = host_ip  # None: any address of either family


class PortMapConf:
    __slots__ = ("name", "snat", "masq_all", "mark_bit", "set_mark_chain", "conditions", "backend", "entries")

    def __init__(self) -> None:
        self.name = ""
        self.snat = True
        self.masq_all = False
        self.mark_bit = DEFAULT_MARK_BIT
        self.set_mark_chain: str | None = None
        self.conditions: dict[int, list[str]] = {}
        self.backend: str | None = None
        self.entries: list[PortMapEntry] = []

    def firewall_backend(self) -> str | None:
        """The backend to use: the configured one; iptables when ``externalSetMarkChain``
        is set (it names an iptables chain); else None (the firewall layer's default)."""
        if self.backend:
            return self.backend
        return "iptables" if self.set_mark_chain else None


def parse_entries(raw: object) -> list[PortMapEntry]:
    """``runtimeConfig.portMappings``: a list of {hostPort, containerPort, protocol, hostIP}.
    ``protocol`` is tcp, udp or sctp in any case (absent: tcp, as podman and Docker mean);
    ``hostIP`` absent or "" means every address, 0.0.0.0 / :: every address of that family."""
    from cnilib.ip import parse_ip

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_config("runtimeConfig.portMappings", raw, "must be a list")
    out = []
    for i, e in enumerate(raw):
        where = f"runtimeConfig.portMappings[{i}]"
        if not isinstance(e, dict):
            raise invalid_config(where, e, "must be an object")
        rd = Reader(e, ENTRY, where)
        host_port = rd.int("hostPort", 0, 1, 65535, why="must be a port number 1-65535")
        container_port = rd.int("containerPort", 0, 1, 65535, why="must be a port number 1-65535")
        if not (host_port and container_port):  # absent
            rd.bad("hostPort" if not host_port else "containerPort", None, "must be a port number 1-65535")
        proto = rd.raw("protocol")
        if proto is None or proto == "":
            proto = "tcp"
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise invalid_config(f"{where}.protocol", proto, "must be tcp, udp or sctp")
        host_ip = rd.raw("hostIP")
        ip = None
        if host_ip not in (None, ""):
            try:
                ip = parse_ip(host_ip)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                raise invalid_config(f"{where}.hostIP", host_ip, "must be an IPv4 or IPv6 address") from None
        out.append(PortMapEntry(host_port, container_port, proto.lower(), ip))
    return out


def load(cmd: "CmdArgs", strict: bool = True) -> PortMapConf:
    """The parsed config; code 7 naming the key for any bad value (strict), defaults for
    unreadable keys otherwise."""
    rd, cfg = Reader(cmd.conf.data, FIELDS, strict=strict), PortMapConf()
    cfg.name = cmd.conf.name or ""
    cfg.snat = rd.bool("snat", True)
    cfg.masq_all = rd.bool("masqAll", False)
    if rd.has("markMasqBit") and rd.has("externalSetMarkChain"):
        rd.bad("externalSetMarkChain", rd.raw("externalSetMarkChain"), "cannot be set together with markMasqBit")
    else:
        cfg.mark_bit = rd.int("markMasqBit", DEFAULT_MARK_BIT, 0, 31)
        chain = rd.raw("externalSetMarkChain")
        if chain is not None:
            if isinstance(chain, str) and chain and len(chain) <= 28 and not any(c in chain for c in ' "\'\\\n\t'):
                cfg.set_mark_chain = chain
            else:
                rd.bad("externalSetMarkChain", chain, "must be an iptables chain name")
    cfg.conditions = {4: rd.strings("conditionsV4"), 6: rd.strings("conditionsV6")}
    backend = rd.raw("backend")
    if backend is not None:
        try:
            check_name(backend, "backend")
            if backend == "nftables" and cfg.set_mark_chain:
                raise CNIError(INVALID_CONFIG, "externalSetMarkChain names an iptables chain: it needs backend iptables")
            cfg.backend = backend
        except CNIError:
            if strict:
                raise
    try:
        cfg.entries = parse_entries(cmd.conf.runtime("portMappings"))
    except CNIError:
        if strict:
            raise
    return cfg


def container_addresses(result: "Result", ifname: str) -> "dict[int, Net]":
    """The first IPv4 and first IPv6 address of the container's ``ifname``, as the
    reference picks them: an IP whose ``interface`` index names another interface or one
    outside the sandbox is skipped; an IP without an index counts."""
    out: dict[int, "Net"] = {}
    for ipc in result.ips:
        v = ipc.address.ip.version
        if v in out:
            continue
        idx = ipc.interface
        if idx is not None and 0 <= idx < len(result.interfaces):
            itf = result.interfaces[idx]
            if itf.name != ifname or not itf.sandbox:
                continue
        out[v] = ipc.address
    return out


def spec(cfg: PortMapConf, addresses: "dict[int, Net]") -> HostPortSpec:
    """The firewall request: each entry for each container family its hostIP allows
    (0.0.0.0 and :: mean every address of their family, as in the reference)."""
    mappings = []
    for v, net in sorted(addresses.items()):
        for e in cfg.entries:
            host = e.host_ip
            if host is not None:
                if host.version != v:
                    continue
                if host.value == 0:  # 0.0.0.0 or ::
                    host = None
            mappings.append(PortMapping(e.protocol, host, e.host_port, net.ip, e.container_port))
    return HostPortSpec(mappings, snat=cfg.snat, masq_all=cfg.masq_all, mark_bit=cfg.mark_bit,
                        set_mark_chain=cfg.set_mark_chain, conditions=cfg.conditions, subnets=addresses)
