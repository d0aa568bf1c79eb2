"""The firewalld backend (``FirewalldBackend``): firewalld's D-Bus API, one feature
(``forward``, the firewall plugin's rules as zone sources).

Not one of the names ``ipMasqBackend``/portmap's ``backend`` take (firewalld offers no
masquerading or host-port feature here): the firewall plugin asks for it through
``cnilib.firewall.firewalld_backend``. Imports run down this list; the D-Bus client is
imported only when a call is made, so a DEL finding no record (every nftables or iptables
attachment) loads neither it nor ``cnilib.dbus``:

    forward     zone sources, their records, the isolation through another backend
    client      the D-Bus calls (``cnilib.dbus``), with CNI errors
    records     what ADD added per attachment, on disk
"""

from __future__ import annotations

from cnilib.firewall.base import Backend, Forward

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from cnilib.firewall.firewalld.client import Firewalld

NAME = "firewalld"


class FirewalldBackend(Backend):
    """firewalld through its D-Bus API on the system bus, for zone ``zone``; the bridge
    isolation of an ingress policy through ``isolation()`` (another backend's Forward)."""

    name = NAME
    tools = ()
    state_tool = ""
    features = ("forward",)

    def __init__(self, zone: str, isolation: "Callable[[], Forward]", address: str | None = None) -> None:
        self.zone = zone
        self.address = address  # None: the system bus (DBUS_SYSTEM_BUS_ADDRESS or the default)
        self._isolation = isolation
        self._fw: Firewalld | None = None
        self._why = ""  # why firewalld cannot be reached, once asked

    def connection(self, required: bool = True) -> "Firewalld | None":
        """firewalld (one connection per process, made when first needed); None when it
        is not running and not ``required`` (else CNIError 50 naming the bus and the name;
        11 when the bus does not answer in time)."""
        if self._fw is None and not self._why:
            from cnilib.dbusaddr import describe, socket_present

            if not socket_present(self.address):  # no bus: no D-Bus client imported, no connection
                self._why = f"no D-Bus system bus socket at {describe(self.address)}"
            else:
                from cnilib.firewall.firewalld import client

                self._fw, self._why = client.reach(self.address)
        if self._fw is None and required:
            from cnilib.firewall.firewalld.client import not_running

            raise not_running(self._why)
        return self._fw

    def running(self) -> bool:
        """Whether firewalld owns its name on the bus (no connection at all when the bus
        socket does not exist)."""
        return self.connection(required=False) is not None

    def holds_state(self) -> bool:
        from cnilib.firewall.firewalld import records

        return bool(records.read_all())

    def available(self) -> str | None:
        """None when firewalld answers and has the zone; else why not. A bus that does not
        answer in time raises CNIError 11."""
        fw = self.connection(required=False)
        if fw is None:
            return f"firewalld is not running: {self._why}"
        state = fw.state()
        if state != "RUNNING":
            return f"firewalld is not ready (state {state})"
        if self.zone not in fw.zones():
            return f"firewalld has no zone {self.zone!r} (firewalldZone)"
        return None

    def forward(self) -> Forward:
        from cnilib.firewall.firewalld.forward import FirewalldForward

        return FirewalldForward(self.zone, self.connection, self._isolation)
