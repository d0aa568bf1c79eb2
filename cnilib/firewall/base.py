"""The firewall interface: what a backend is and the features it offers, each with the
same four verbs.

A *backend* (``nftables.NftBackend``, ``iptables.IptablesBackend``)
declares its name, the tools it runs and the features it offers, and hands out one
object per feature. A *feature* is one kind of host state kept for owners (attachments,
``cnilib.owner.Owner``): masquerading (bridge ``ipMasq``), host ports (portmap), the spoof
check (bridge ``macspoofchk``). Every feature has the same verbs:

    add(owner, spec)            install ``spec`` for ``owner``, replacing what it had
    delete(owner, spec=None)    remove everything of ``owner`` (``spec``: what ADD was
                                given, if known; it may save a read, never changes the result)
    check(owner, spec)          CNIError 102 naming what is missing
    gc(network, keep)           remove the state of ``network``'s owners not in ``keep``

Each verb raises CNIError on failure and needs neither the container's namespace nor its
interface. Below this module: ``cnilib.owner`` (tags), ``tools`` (finding and running the
commands) and the backend-independent specs (``rules``, ``hostport``, ``spoof``). Above it:
per backend a runner, a reader of the backend's state, the features, the backend class;
on top the public API, ``cnilib.firewall``.
"""

from __future__ import annotations

from cnilib.errors import IO_FAILURE, NOT_AVAILABLE, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type-only imports: keep the runtime import cost nil
    from cnilib.firewall.forward import ForwardSpec
    from cnilib.firewall.hostport import HostPortSpec
    from cnilib.firewall.rules import MasqRule
    from cnilib.firewall.spoof import SpoofSpec
    from cnilib.owner import Owner

# The machine-wide firewall locks live here: created 0700 by root and refused if it is
# anyone else's, open to others, or a symlink (cnilib.lock.open_private_dir). Never in a
# world-writable directory such as /run/lock, where any local user could take the lock
# first and keep it, or plant a FIFO under its name, and so block every ipMasq and
# portmap change of the machine.
LOCK_DIR = "/run/cni-py"


class Lock:
    """Exclusive flock held across one read-modify-write of the ruleset.

    Transactions are atomic, but DEL, CHECK and the slow ADD path read the ruleset first and
    write a batch computed from it; without the lock a parallel change between the two could
    make the batch delete another owner's element. One lock per backend and table,
    machine-wide (a lock per network namespace would do, but the cost is a microsecond and
    contention is only between firewall changes, which take milliseconds):
    ``LOCK_DIR/<name>``, a regular file opened without following links or blocking. A
    holder that keeps it longer than ``cnilib.lock.wait_bound()`` (``CNIPY_LOCK_TIMEOUT``,
    default 30 s) makes us fail with code 11 ("try again later") naming the lock and its
    holder.
    """

    __slots__ = ("name", "_lk")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lk = None

    def __enter__(self) -> "Lock":
        import posix

        from cnilib.lock import FileLock, open_private_dir

        path = f"{LOCK_DIR}/{self.name}"
        try:
            dfd = open_private_dir(LOCK_DIR)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot use the firewall lock directory {LOCK_DIR}: "
                           f"{e.strerror or e}") from None
        try:
            self._lk = FileLock(self.name, dir_fd=dfd, path=path)
        except OSError as e:
            raise CNIError(IO_FAILURE, f"cannot open the firewall lock {path}: {e.strerror or e}") from None
        finally:
            posix.close(dfd)
        try:
            self._lk.acquire()
        except BaseException:
            self._lk.close()
            self._lk = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lk is not None:
            self._lk.close()
            self._lk = None


# ---- the features ----

class Masquerade:
    """Masquerading of owners' sources (the bridge's ``ipMasq``): ``spec`` is a list of
    ``MasqRule``."""

    def add(self, owner: "Owner", rules: "list[MasqRule]") -> None:
        """Install masquerading for ``owner`` exactly as ``rules`` say, replacing whatever the
        owner had; a source address held by another owner passes to this one."""
        raise NotImplementedError

    def delete(self, owner: "Owner", rules: "list[MasqRule] | None" = None) -> None:
        """Remove everything of ``owner``; nothing there is fine. ``rules``, the ones ADD was
        given if the caller knows them (prevResult), may save a backend its read first;
        the result is the same without them, or with rules no ADD was given."""
        raise NotImplementedError

    def check(self, owner: "Owner", rules: "list[MasqRule]") -> None:
        """CNIError 102 naming what is missing unless ``rules`` are all in place."""
        raise NotImplementedError

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the masquerading of every owner of ``network`` whose (container ID, ifname)
        is not in ``keep``."""
        raise NotImplementedError


class HostPorts:
    """Host-port mappings of owners (the portmap plugin's firewall state): ``spec`` is a
    ``HostPortSpec``."""

    def add(self, owner: "Owner", spec: "HostPortSpec") -> None:
        """Install ``spec`` for ``owner``, replacing whatever the owner had. A key another
        owner holds is a conflict: CNIError 101 naming the holder, nothing changed."""
        raise NotImplementedError

    def delete(self, owner: "Owner", spec: "HostPortSpec | None" = None) -> None:
        """Remove everything of ``owner``; nothing there is fine. ``spec``, what ADD was
        given if the caller knows it (runtimeConfig and prevResult), may save a backend
        its read first; the result is the same without it."""
        raise NotImplementedError

    def check(self, owner: "Owner", spec: "HostPortSpec") -> None:
        """CNIError 102 naming what is missing unless ``spec`` is fully in place."""
        raise NotImplementedError

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the mappings of every owner of ``network`` not in ``keep``."""
        raise NotImplementedError


class SpoofCheck:
    """Frames entering the bridge from an owner's host veth with a source MAC other than
    the container's are dropped (the bridge's ``macspoofchk``): ``spec`` is a
    ``SpoofSpec``."""

    def require(self) -> None:
        """CNIError 50 unless the check can be installed here (ADD and STATUS ask before
        anything is made)."""
        raise NotImplementedError

    def add(self, owner: "Owner", spec: "SpoofSpec") -> None:
        """Install the check for ``owner``, replacing whatever the owner had."""
        raise NotImplementedError

    def delete(self, owner: "Owner", spec: "SpoofSpec | None" = None) -> None:
        """Remove the owner's check; nothing there is fine."""
        raise NotImplementedError

    def check(self, owner: "Owner", spec: "SpoofSpec") -> None:
        """CNIError 102 naming what is missing unless the check is in place as ``spec`` says."""
        raise NotImplementedError

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the checks of ``network``'s owners not in ``keep``."""
        raise NotImplementedError


class Forward:
    """Forwarded traffic of owners accepted after the administrator's chain, and the ingress
    policy of their bridge (the ``firewall`` plugin): ``spec`` is a ``ForwardSpec``."""

    def add(self, owner: "Owner", spec: "ForwardSpec") -> None:
        """Install ``spec`` for ``owner``, replacing whatever the owner had (the shared
        chains and the bridge's isolation are made when missing, never rewritten)."""
        raise NotImplementedError

    def delete(self, owner: "Owner", spec: "ForwardSpec | None" = None) -> None:
        """Remove the owner's accept rules; nothing there is fine. ``spec`` (prevResult's
        addresses, if known) also removes the reference plugin's untagged rules for them."""
        raise NotImplementedError

    def check(self, owner: "Owner", spec: "ForwardSpec") -> None:
        """CNIError 102 naming what is missing unless ``spec`` is fully in place. Reads only."""
        raise NotImplementedError

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the accept rules of every owner of ``network`` not in ``keep``."""
        raise NotImplementedError


# ---- the backend ----

class Backend:
    """A firewall driver: its name, the tools it runs, its features.

    ``name`` is what configs call it (``ipMasqBackend``, portmap's ``backend``); ``tools``
    every command it runs (all must be installed for it to be usable); ``state_tool`` the
    one whose presence means state of ours may be there (DEL and GC visit such backends,
    whatever the config said at ADD); ``features`` the names of the feature methods it
    implements (a feature it lacks raises CNIError 50 saying so)."""

    name = ""
    tools: tuple[str, ...] = ()
    state_tool = ""
    features: tuple[str, ...] = ()

    def missing_tools(self) -> str | None:
        """None when every tool this backend runs is installed, else which are missing.
        No exec: the hot path (ADD, CHECK) judges by the tools' presence alone."""
        from cnilib.firewall import tools

        gone = tools.missing(self.tools)
        return f"{' and '.join(gone)} {tools.NOT_FOUND_WHERE}" if gone else None

    def holds_state(self) -> bool:
        """Whether state of ours may be here: ``state_tool`` is installed."""
        from cnilib.firewall import tools

        return tools.find_tool(self.state_tool) is not None

    def available(self) -> str | None:
        """None when this backend can be used here, else the reason (tool missing, kernel or
        permission problem). Runs the tool once (a few ms); the answer is memoized."""
        raise NotImplementedError

    def masquerade(self) -> Masquerade:
        """The backend's masquerading."""
        raise self.lacks("masquerading")

    def hostports(self) -> HostPorts:
        """The backend's host-port (portmap) mappings."""
        raise self.lacks("host ports")

    def spoofcheck(self) -> SpoofCheck:
        """The backend's spoof check (macspoofchk)."""
        raise self.lacks("macspoofchk")

    def forward(self) -> Forward:
        """The backend's forwarding rules (the firewall plugin)."""
        raise self.lacks("forwarding rules")

    def lacks(self, what: str) -> CNIError:
        """CNIError 50: this backend cannot do ``what``."""
        return CNIError(NOT_AVAILABLE, f"the {self.name} backend cannot do {what}")

    def __repr__(self) -> str:
        return f"<firewall backend {self.name}>"
