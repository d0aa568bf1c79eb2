"""The firewall, for plugins: pick a backend, then use its features.

    from cnilib import firewall
    fw = firewall.select(cfg.ipmasq_backend)             # CNIError 7 / 50 when unusable
    fw.masquerade().add(firewall.Owner(net, cid, ifname), [firewall.MasqRule.for_address(ipc.address)])
    fw.hostports().delete(owner, spec)                   # portmap
    firewall.spoof_check().add(owner, firewall.SpoofSpec(host_veth, mac))   # macspoofchk (nftables)
    fw.forward().add(owner, firewall.ForwardSpec(addresses, "CNI-ADMIN"))   # the firewall plugin

This module is the public API: plugins import nothing else of the firewall. Below it, with
imports running one way (each layer uses only the ones under it):

    base                    the interfaces: Backend and the features (Masquerade, HostPorts,
                            SpoofCheck, Forward), each with the verbs add, delete, check, gc; the lock
    nftables/, iptables/    per backend: the backend class (its package: name, tools,
                            features), the features, a runner and a listing (one
                            reader of the backend's state)
    firewalld/              the firewall plugin's firewalld backend (zone sources over
                            D-Bus, per-attachment records); not a name ipMasqBackend or
                            portmap take: ``firewalld_backend(zone)``
    tools                   finding and running the commands, their errors
    rules, hostport, spoof, forward
                            what masquerading, host ports, a spoof check and forwarding rules mean
    cnilib.owner            owners and their tags (shared with the interface plugins)

Backends are imported only when a plugin asks for one: a plugin that never touches the
firewall pays nothing; one that masquerades loads its backend's class, runner and
masquerade module, nothing of host ports or the spoof check (a DEL or GC, which visits
every backend that may hold state, loads each backend's class and runner).
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError, Teardown, invalid_config
from cnilib.owner import Owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.firewall.base import Backend, Forward, SpoofCheck

__all__ = ["DEFAULT_ADMIN_CHAIN", "DEFAULT_MARK_BIT", "INGRESS_POLICIES", "NAMES", "PROTOCOLS", "Backend",
           "Forward", "ForwardSpec", "HostPortSpec", "HostPorts", "MasqRule", "Masquerade", "Owner",
           "PortMapping", "SpoofCheck", "SpoofSpec", "admin_chain_problem", "available_backends",
           "backend_classes", "bridge_problem", "check_name", "firewalld_backend", "firewalld_recorded",
           "make", "on_every_backend", "select", "select_forward", "spoof_check"]


def __getattr__(name: str) -> object:
    """The interfaces and specs, imported when first used (PEP 562): portmap never loads
    the masquerade rules, the bridge never the host-port spec."""
    if name == "MasqRule":
        from cnilib.firewall.rules import MasqRule as value
    elif name == "SpoofSpec":
        from cnilib.firewall.spoof import SpoofSpec as value
    elif name in ("HostPortSpec", "PortMapping", "DEFAULT_MARK_BIT", "PROTOCOLS"):
        from cnilib.firewall import hostport

        value = getattr(hostport, name)
    elif name in ("ForwardSpec", "DEFAULT_ADMIN_CHAIN", "admin_chain_problem", "bridge_problem"):
        from cnilib.firewall import forward

        value = getattr(forward, name)
    elif name == "INGRESS_POLICIES":
        from cnilib.firewall.forward import POLICIES as value
    elif name in ("Backend", "Masquerade", "HostPorts", "SpoofCheck", "Forward"):
        from cnilib.firewall import base

        value = getattr(base, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


# ---- the backends ----
# Each backend class declares its name, tools and features; this registry only says where
# each lives, in order of preference, so that choosing one imports that one alone.

def _nftables() -> "type[Backend]":
    from cnilib.firewall.nftables import NftBackend

    return NftBackend


def _iptables() -> "type[Backend]":
    from cnilib.firewall.iptables import IptablesBackend

    return IptablesBackend


_REGISTRY = {"nftables": _nftables, "iptables": _iptables}
# What configs may name (``ipMasqBackend``, portmap's ``backend``), in order of preference,
# known without importing a backend (a unit test checks each class declares the same name).
NAMES = tuple(_REGISTRY)


def backend_classes() -> "tuple[type[Backend], ...]":
    """Every backend class, in order of preference (their modules are imported now)."""
    return tuple(load() for load in _REGISTRY.values())


def make(name: str) -> "Backend":
    """A backend object by name, not probed (``available()`` says whether it works)."""
    load = _REGISTRY.get(name)
    if load is None:
        raise ValueError(name)
    return load()()


def check_name(name: object, key: str) -> None:
    """Code 7 naming ``key`` (the config key it came from) and the value unless ``name``
    is one of NAMES. Imports no backend: configs are validated before any is chosen."""
    if name not in NAMES:
        raise invalid_config(key, name, "must be " + " or ".join(f'"{n}"' for n in NAMES))


def select(name: str | None, key: str = "ipMasqBackend", probe: bool = True) -> "Backend":
    """The backend to use: ``None`` means the first of NAMES that works here (nftables when
    ``nft`` does, else iptables); a name is honoured or fails with code 50 naming the tool
    and the reason; anything else is code 7 naming ``key`` (the config key it came from)
    and the value.

    ``probe=False`` (the ADD/CHECK hot path) judges by the tools' presence alone: the
    probe is one more exec (~5 ms) per call, and the change that follows reports a kernel
    that refuses it as clearly. STATUS probes."""
    if name is not None:
        check_name(name, key)
    reasons = []
    for cand in [name] if name is not None else NAMES:  # a backend is imported only when tried
        backend = make(cand)
        why = backend.available() if probe else backend.missing_tools()
        if why is None:
            return backend
        reasons.append((cand, why))
    if name is not None:
        raise CNIError(NOT_AVAILABLE, f"{key} {name!r} is not usable: {reasons[0][1]}")
    raise CNIError(NOT_AVAILABLE, f"no usable firewall backend: {'; '.join(f'{n}: {w}' for n, w in reasons)}")


def firewalld_backend(zone: str, address: str | None = None) -> "Backend":
    """The firewalld backend for ``zone`` (not probed: its ``running()`` says whether
    firewalld owns its D-Bus name). An ingress policy's bridge isolation goes to the
    forwarding backend ``select_forward`` would choose automatically without firewalld."""
    from cnilib.firewall.firewalld import FirewalldBackend

    return FirewalldBackend(zone, _isolation_forward, address)


def firewalld_recorded(owner: Owner) -> bool:
    """Whether the firewalld backend's ADD recorded ``owner`` (so that backend is the one
    ADD used). Reads one file: no D-Bus, nothing of the D-Bus client imported."""
    from cnilib.firewall.firewalld import records

    return records.read(owner.tag) is not None


def _isolation_forward() -> "Forward":
    return select_forward(None)[0].forward()


def select_forward(name: str | None, key: str = "backend", zone: str | None = None) -> "tuple[Backend, str]":
    """The backend for forwarding rules (the firewall plugin) and why it was chosen.

    With a ``zone`` (the firewall plugin's ``firewalldZone``), ``"firewalld"`` may be
    named, and automatic (``None``) means firewalld when it owns its name on the D-Bus
    system bus (the reference's rule; no connection at all when the bus socket does not
    exist). Otherwise automatic is ``select``'s choice, except iptables when forwarding on
    this host is decided inside iptables' FORWARD chain (its policy is DROP, or it already
    jumps to CNI-FORWARD): an nftables accept elsewhere would not let the traffic through."""
    if zone is not None and name == "firewalld":
        return firewalld_backend(zone), "configured"
    if zone is not None and name is None:
        from cnilib.dbusaddr import socket_present

        if socket_present():  # no bus socket: no firewalld, and nothing of it imported
            fwd = firewalld_backend(zone)
            if fwd.running():
                return fwd, "firewalld is running"
    if name is None and make("iptables").missing_tools() is None:
        from cnilib.firewall.iptables.forward import forward_needs_iptables

        why = forward_needs_iptables()
        if why:
            return make("iptables"), why
    backend = select(name, key=key, probe=False)
    return backend, "configured" if name is not None else "automatic"


def available_backends() -> "list[Backend]":
    """Every backend usable here (probed)."""
    return [b for b in (cls() for cls in backend_classes()) if b.available() is None]


def on_every_backend(configured: str | None, fn, who: str) -> None:
    """``fn(backend)`` (a teardown: DEL or GC) on every backend that may hold state of ours,
    the ``configured`` one first: state from an ADD made with another config may be there,
    and DEL/GC must release it. No ``available()`` probe: a backend without its state tool
    cannot hold state, and every teardown reads before it writes.

    Every backend is tried. The configured backend's error is the caller's error; another
    backend's is a warning on stderr naming ``who``, unless no backend worked at all (then
    the first error is raised)."""
    import sys

    backends = sorted((cls() for cls in backend_classes()), key=lambda b: b.name != configured)
    td = Teardown(who)
    failed: list[str] = []
    worked = False
    for b in backends:
        if not b.holds_state():
            continue
        if td.attempt(f"{b.name} teardown", _run, fn, b):
            worked = True
        else:
            failed.append(b.name)
    if failed and configured not in failed and worked:
        for name, e in zip(failed, td.errors, strict=True):  # best effort on the others: warnings only
            sys.stderr.write(f"{who}: {name}: {e.msg}\n")
        return
    td.finish()


def _run(fn, backend: "Backend") -> bool:
    fn(backend)
    return True


def spoof_check(require: bool = True) -> "SpoofCheck":
    """The spoof check (``macspoofchk``) of the first backend offering it: nftables, whose
    table ``bridge nat`` is the reference's layout. With ``require`` (ADD, CHECK, STATUS),
    CNIError 50 unless it can be installed here (``nft`` missing); DEL passes False: its
    delete finds nothing where nothing could have been installed."""
    for load in _REGISTRY.values():  # in order of preference, imported one by one
        cls = load()
        if "spoofcheck" in cls.features:
            check = cls().spoofcheck()
            if require:
                check.require()
            return check
    raise CNIError(NOT_AVAILABLE, "no firewall backend offers macspoofchk")
