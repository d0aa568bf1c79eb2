"""firewalld's D-Bus API, the few calls the firewalld backend makes, with CNI errors.

Object ``/org/fedoraproject/FirewallD1`` of ``org.fedoraproject.FirewallD1``, interface
``org.fedoraproject.FirewallD1.zone`` (runtime configuration, as the reference plugin):

    addSource(zone, source) -> s        ZONE_ALREADY_SET: already there (tolerated);
                                        ZONE_CONFLICT: bound to another zone
    removeSource(zone, source) -> s     UNKNOWN_SOURCE: in no zone; ZONE_CONFLICT: in another
    querySource(zone, source) -> b
    getZoneOfSource(source) -> s        "" when in no zone
    getZones() -> as

firewalld reports its own errors as ``org.fedoraproject.FirewallD1.Exception`` whose
message starts with the error code (``"ZONE_ALREADY_SET: '10.88.0.5/32' already bound
to 'trusted'"``). A source is ``IP/32`` or ``IP/128`` (``records.source_of``).

Errors become CNI errors: no bus or no firewalld on it, code 50 naming the socket and the
name; a bus that does not answer in time (or a connection that breaks), code 11 naming
the socket; an unknown zone, code
7 naming ``firewalldZone``; a source bound to another zone, code 101; any other refusal,
code 110 with firewalld's message.
"""

from __future__ import annotations

from cnilib import dbus
from cnilib.errors import ALREADY_ALLOCATED, IO_FAILURE, NOT_AVAILABLE, TOOL_FAILED, TRY_AGAIN_LATER, CNIError

BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
ZONE = BUS_NAME + ".zone"
EXCEPTION = BUS_NAME + ".Exception"
PROPERTIES = "org.freedesktop.DBus.Properties"
# What the bus answers when the name lost its owner between our check and the call.
_GONE = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")


def firewalld_code(e: dbus.DBusError) -> str:
    """firewalld's error code (``ZONE_ALREADY_SET``...) of an error reply, "" for another."""
    if e.name != EXCEPTION:
        return ""
    return e.message.split(":", 1)[0].strip()


def _bus_error(e: dbus.BusError, where: str) -> CNIError:
    """A failure of the bus once connected: code 11 for a timeout or a broken connection
    (firewalld may still run and hold our sources: never read as "not running"), 5 for
    anything that is not D-Bus."""
    if isinstance(e, dbus.BusTimeout):
        return CNIError(TRY_AGAIN_LATER, f"firewalld backend: the D-Bus system bus does not answer: {e}")
    if isinstance(e, dbus.BusUnavailable):
        return CNIError(TRY_AGAIN_LATER, f"firewalld backend: the connection to the D-Bus system bus at "
                                         f"{where} broke: {e}")
    return CNIError(IO_FAILURE, f"firewalld backend: talking to the D-Bus system bus at {where}: {e}")


def not_running(why: str) -> CNIError:
    """Code 50: firewalld cannot be reached."""
    return CNIError(NOT_AVAILABLE, f"firewalld is not running: {why}")


class Firewalld:
    """A connection to the system bus on which firewalld owns its name."""

    __slots__ = ("conn",)

    def __init__(self, conn: dbus.Connection) -> None:
        self.conn = conn

    @property
    def where(self) -> str:
        return self.conn.where

    def _call(self, member: str, signature: str = "", args: tuple = (), interface: str = ZONE) -> tuple:
        try:
            return self.conn.call(BUS_NAME, PATH, interface, member, signature, args)
        except dbus.DBusError as e:
            if e.name in _GONE:
                raise not_running(f"{BUS_NAME} left the D-Bus system bus at {self.where}") from None
            raise
        except dbus.BusError as e:
            raise _bus_error(e, self.where) from None

    def _refused(self, what: str, e: dbus.DBusError, zone: str = "") -> CNIError:
        code = firewalld_code(e)
        if code == "INVALID_ZONE":
            from cnilib.errors import invalid_config

            return invalid_config("firewalldZone", zone, f"firewalld has no such zone ({e.message})")
        if code == "ZONE_CONFLICT":
            return CNIError(ALREADY_ALLOCATED, f"firewalld {what}: {e.message} (bound to another zone)")
        return CNIError(TOOL_FAILED, f"firewalld {what} failed: {e}")

    def add_source(self, zone: str, source: str) -> bool:
        """Add ``source`` to ``zone`` (runtime): True when added, False when it was already
        there (ZONE_ALREADY_SET)."""
        try:
            self._call("addSource", "ss", (zone, source))
        except dbus.DBusError as e:
            if firewalld_code(e) == "ZONE_ALREADY_SET":
                return False
            raise self._refused(f"addSource({zone}, {source})", e, zone) from None
        return True

    def remove_source(self, zone: str, source: str) -> bool:
        """Remove ``source`` from ``zone``: True when removed, False when it was not there
        (in no zone, or in another: not ours to remove)."""
        try:
            self._call("removeSource", "ss", (zone, source))
        except dbus.DBusError as e:
            if firewalld_code(e) in ("UNKNOWN_SOURCE", "ZONE_CONFLICT"):
                return False
            raise self._refused(f"removeSource({zone}, {source})", e, zone) from None
        return True

    def query_source(self, zone: str, source: str) -> bool:
        """Whether ``source`` is in ``zone`` (firewalld's answer, not just the call's success)."""
        try:
            return bool(self._call("querySource", "ss", (zone, source))[0])
        except dbus.DBusError as e:
            raise self._refused(f"querySource({zone}, {source})", e, zone) from None

    def zone_of_source(self, source: str) -> str:
        """The zone ``source`` is bound to, "" when none."""
        try:
            return str(self._call("getZoneOfSource", "s", (source,))[0])
        except dbus.DBusError as e:
            raise self._refused(f"getZoneOfSource({source})", e) from None

    def zones(self) -> list[str]:
        """The zones firewalld has."""
        try:
            return [str(z) for z in self._call("getZones")[0]]  # type: ignore[union-attr]
        except dbus.DBusError as e:
            raise self._refused("getZones", e) from None

    def state(self) -> str:
        """firewalld's ``state`` property: ``RUNNING`` once it serves requests."""
        try:
            return str(self._call("Get", "ss", (BUS_NAME, "state"), interface=PROPERTIES)[0])
        except dbus.DBusError as e:
            raise self._refused("state", e) from None

    def close(self) -> None:
        self.conn.close()


def connect(address: str | None = None) -> "Firewalld | None":
    """A connection to firewalld, or None when it is not running: no bus socket (checked
    without connecting), nobody listening on it, or no owner of its name. CNIError 11 when
    the bus does not answer in time, 5 when it speaks something else than D-Bus."""
    return reach(address)[0]


def require(address: str | None = None) -> Firewalld:
    """A connection to firewalld; CNIError 50 naming the bus socket and the name when it is
    not running (11 when the bus does not answer in time)."""
    fw, why = reach(address)
    if fw is None:
        raise not_running(why)
    return fw


def reach(address: str | None = None) -> "tuple[Firewalld | None, str]":
    """(the connection, "") or (None, why firewalld cannot be reached)."""
    from cnilib.dbusaddr import describe, socket_present

    where = describe(address)
    if not socket_present(address):
        return None, f"no D-Bus system bus socket at {where}"
    try:
        conn = dbus.Connection(address)
    except dbus.BusUnavailable as e:
        return None, f"no D-Bus system bus at {where} ({e})"
    except dbus.BusError as e:
        raise _bus_error(e, where) from None
    try:
        owned = conn.name_has_owner(BUS_NAME)
    except dbus.BusError as e:
        conn.close()
        raise _bus_error(e, where) from None
    if not owned:
        conn.close()
        return None, f"{BUS_NAME} has no owner on the D-Bus system bus at {where}"
    return Firewalld(conn), ""
