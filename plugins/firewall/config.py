"""firewall's configuration: every key of the reference firewall plugin, same meaning and
default, validated up front (code 7 naming the key and the value).

| key | default | |
|---|---|---|
| ``backend`` | automatic | ``iptables``, ``nftables``, ``firewalld``; absent or ``""`` (podman writes that) means firewalld when it owns its D-Bus name on the system bus (as the reference), else ours: nftables when ``nft`` is installed, else iptables; but iptables when iptables' FORWARD policy is DROP (Docker) or FORWARD already jumps to CNI-FORWARD, where nftables accepts could not let traffic through. Anything else is code 7 (the reference silently auto-detects on a typo) |
| ``iptablesAdminChainName`` | ``CNI-ADMIN`` | the administrator's chain, jumped to first and never written |
| ``firewalldZone`` | ``trusted`` | the firewalld zone (firewalld backend) |
| ``ingressPolicy`` | ``open`` | ``open`` (or ``""``), ``same-bridge``, ``isolated`` |

``load(cmd, strict=False)`` (DEL, GC, STATUS) falls back to defaults for keys it cannot
read: a broken config never blocks releasing an attachment.
"""

from __future__ import annotations

from cnilib import gokeys
from cnilib.confread import Reader
from cnilib.errors import INVALID_CONFIG, NOT_AVAILABLE, CNIError, invalid_config
from cnilib.firewall import (
    DEFAULT_ADMIN_CHAIN,
    INGRESS_POLICIES,
    ForwardSpec,
    admin_chain_problem,
    bridge_problem,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall import Backend
    from cnilib.owner import Owner
    from cnilib.skel import CmdArgs
    from cnilib.types import Result

# The reference's FirewallNetConf keys, matched as Go matches them.
FIELDS = gokeys.Struct("backend", "iptablesAdminChainName", "firewalldZone", "ingressPolicy")
BACKENDS = ("iptables", "nftables", "firewalld")
DEFAULT_ZONE = "trusted"


class FirewallConf:
    __slots__ = ("name", "backend", "admin_chain", "zone", "policy")

    def __init__(self) -> None:
        self.name = ""
        self.backend: str | None = None  # None: automatic
        self.admin_chain = DEFAULT_ADMIN_CHAIN
        self.zone = DEFAULT_ZONE
        self.policy = "open"


def load(cmd: "CmdArgs", strict: bool = True) -> FirewallConf:
    """The parsed config; strict: code 7 naming the key for any bad value."""
    rd, cfg = Reader(cmd.conf.data, FIELDS, strict=strict), FirewallConf()
    cfg.name = cmd.conf.name or ""
    backend = rd.raw("backend")
    if backend is not None and backend != "":
        if isinstance(backend, str) and backend in BACKENDS:
            cfg.backend = backend
        else:
            rd.bad("backend", backend, 'must be "iptables", "nftables", "firewalld" or "" (automatic)')
    admin = rd.str("iptablesAdminChainName", DEFAULT_ADMIN_CHAIN)
    why = admin_chain_problem(admin)
    if why:
        rd.bad("iptablesAdminChainName", admin, why)
    else:
        cfg.admin_chain = admin
    cfg.zone = rd.str("firewalldZone", DEFAULT_ZONE)
    policy = rd.raw("ingressPolicy")
    if policy is not None and policy != "":
        if isinstance(policy, str) and policy in INGRESS_POLICIES:
            cfg.policy = policy
        else:
            rd.bad("ingressPolicy", policy, "must be " + ", ".join(f'"{p}"' for p in INGRESS_POLICIES)
                   + ' or "" (open)')
    return cfg


def prev_result(cmd: "CmdArgs") -> "Result":
    """prevResult, required (ADD and CHECK)."""
    if cmd.conf.raw_prev_result is None:
        raise CNIError(INVALID_CONFIG, "firewall must be called as a chained plugin: prevResult is missing")
    return cmd.conf.prev_result()


def spec(cfg: FirewallConf, prev: "Result") -> ForwardSpec:
    """The firewall request: every address of prevResult (as the reference), the admin
    chain, and for an ingress policy the bridge, ``prevResult.interfaces[0]``."""
    bridge = None
    if cfg.policy != "open":
        if not prev.interfaces:
            raise invalid_config("ingressPolicy", cfg.policy, "needs prevResult.interfaces[0] to be the bridge: "
                                 'chain "firewall" after "bridge"')
        bridge = prev.interfaces[0].name
        why = bridge_problem(bridge)
        if why:
            raise invalid_config("prevResult.interfaces[0].name", bridge, why)
    return ForwardSpec([ipc.address.ip for ipc in prev.ips], cfg.admin_chain, bridge, cfg.policy)


def _firewalld_error(cfg: FirewallConf, why: str) -> CNIError:
    return CNIError(NOT_AVAILABLE, f"firewalld backend: {why} (network {cfg.name!r}, backend "
                                   f"{cfg.backend or 'automatic'}, firewalldZone {cfg.zone!r})")


def backend(cfg: FirewallConf, probe: bool = False) -> "Backend":
    """The backend ADD and STATUS use: as configured; automatic means firewalld when it owns
    its D-Bus name (as the reference; no connection at all without a bus socket), else
    nftables unless forwarding here is decided in iptables' FORWARD chain (policy DROP, as
    Docker sets it, or the reference's CNI-FORWARD already in use). Code 50 for a backend
    not usable here: ``firewalld`` not running names the bus socket and the D-Bus name."""
    from cnilib import firewall

    chosen = firewall.select_forward(cfg.backend, key="backend", zone=cfg.zone)[0]
    if chosen.name == "firewalld":
        try:
            chosen.connection()  # type: ignore[attr-defined]
            why = chosen.available() if probe else None
        except CNIError as e:
            if e.code != NOT_AVAILABLE:
                raise
            why = e.msg
        if why:
            raise _firewalld_error(cfg, why)
        if probe and cfg.policy != "open":
            firewall.select(None, key="backend", probe=True)  # where the bridge isolation goes
        return chosen
    if probe:
        return firewall.select(cfg.backend, key="backend", probe=True)
    return chosen


def backend_of_add(cfg: FirewallConf, owner: "Owner") -> "Backend":
    """The backend ADD used for ``owner`` (CHECK): as configured; automatic means firewalld
    when ADD recorded the attachment there, else the nftables/iptables choice (no D-Bus:
    firewalld starting or stopping since ADD does not change what CHECK looks at)."""
    from cnilib import firewall

    if cfg.backend == "firewalld":
        return firewall.firewalld_backend(cfg.zone)
    if cfg.backend is None and firewall.firewalld_recorded(owner):
        return firewall.firewalld_backend(cfg.zone)
    return firewall.select_forward(cfg.backend, key="backend")[0]
