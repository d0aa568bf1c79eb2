"""The firewall interface every backend implements, and the owner tag rules carry.

An *owner* is one attachment: (network name, container ID, ifname), the key CNI itself uses
for an attachment (and GC's ``cni.dev/valid-attachments``). Everything a backend installs
for an owner carries the owner's ``tag`` (rule and set-element comments), and the owner's
own chain is named from a hash of that tag: DEL and GC find an owner's state from the
owner alone, never from the container's addresses, namespace or interface (the reference
leaks its iptables chain when the interface is already gone, containernetworking/plugins#810).

Tag format: ``cnipy:<network>:<container id>:<ifname>``. A part that is longer than its
limit or holds a character outside ``[A-Za-z0-9_.-]`` is replaced by ``=`` and 16 hex digits
of its SHA-256 (``=`` never occurs in a literal part), so a tag is at most 127 bytes (nft
comments hold 128) and safe in iptables-restore input unquoted. A hashed part is not
decodable, but it is a pure function of the part: GC recomputes the tags of the attachments
it keeps and the network part of its network, so no hash->owner table is needed.
"""

from __future__ import annotations

from cnilib.errors import IO_FAILURE, CNIError

if False:  # type-only imports: keep the runtime import cost nil
    from cnilib.firewall.hostport import HostPortSpec
    from cnilib.firewall.rules import MasqRule

TAG_PREFIX = "cnipy"
# Literal length limits per part: 8 + 40 + 64 + 15 = 127 bytes, under nft's 128.
_LIMITS = (40, 64, 15)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
CHAIN_PREFIX = "CNIPY-"  # + 22 hex = 28 characters, the iptables chain name limit
# Host-port (portmap) chains of an owner: a name of their own, since one attachment may have
# both masquerading (bridge) and host ports (portmap) in the same iptables nat table.
HOSTPORT_CHAIN_PREFIX = "CNIPH-"
# The machine-wide firewall locks live here: created 0700 by root and refused if it is
# anyone else's, open to others, or a symlink (cnilib.lock.open_private_dir). Never in a
# world-writable directory such as /run/lock, where any local user could take the lock
# first and keep it, or plant a FIFO under its name, and so block every ipMasq and
# portmap change of the machine.
LOCK_DIR = "/run/cni-py"
# CHECK found something missing: the suite's "not found" code.
MISSING = 102


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` in hex, without importing hashlib (~6 ms: it loads OpenSSL)."""
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:  # pragma: no cover - 3.12 renamed it
        try:
            from _sha2 import sha256  # type: ignore[no-redef]
        except ImportError:
            from hashlib import sha256  # type: ignore[no-redef]
    return sha256(text.encode()).hexdigest()


def tag_part(text: str, limit: int) -> str:
    """``text`` itself when short and safe, else ``=`` + 16 hex digits of its SHA-256."""
    if text and len(text) <= limit and all(c in _SAFE for c in text):
        return text
    return "=" + sha256_hex(text)[:16]


class Owner:
    """One attachment whose rules a backend manages; ``tag`` marks all of them."""

    __slots__ = ("network", "container_id", "ifname", "tag", "chain")

    def __init__(self, network: str, container_id: str, ifname: str) -> None:
        self.network = network
        self.container_id = container_id
        self.ifname = ifname
        parts = (tag_part(network, _LIMITS[0]), tag_part(container_id, _LIMITS[1]), tag_part(ifname, _LIMITS[2]))
        self.tag = f"{TAG_PREFIX}:{parts[0]}:{parts[1]}:{parts[2]}"
        # The owner's own chain in both backends: 28 characters, iptables' limit.
        self.chain = CHAIN_PREFIX + sha256_hex(self.tag)[:22]

    @property
    def hostport_chain(self) -> str:
        """The owner's host-port chain (both backends), distinct from its masquerade chain."""
        return HOSTPORT_CHAIN_PREFIX + sha256_hex("hostport:" + self.tag)[:22]

    def __repr__(self) -> str:
        return f"Owner({self.network!r}, {self.container_id!r}, {self.ifname!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Owner) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)


def is_owner_chain(name: str, prefix: str = CHAIN_PREFIX) -> bool:
    """True for an owner's chain name (``prefix`` + 22 hex digits), never for the shared
    chains that happen to share the prefix (CNIPY-HOSTPORTS, CNIPY-HP-MASQ, ...)."""
    tail = name[len(prefix):]
    return name.startswith(prefix) and len(tail) == 22 and all(c in "0123456789abcdef" for c in tail)


def parse_tag(tag: str) -> tuple[str, str, str] | None:
    """(network, container id, ifname) parts of a tag (hashed parts stay ``=<hex>``), or
    None when ``tag`` is not one of ours."""
    parts = tag.split(":")
    if len(parts) != 4 or parts[0] != TAG_PREFIX or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3]


def network_part(network: str) -> str:
    """The network part of every tag of ``network`` (what GC selects by)."""
    return tag_part(network, _LIMITS[0])


def kept_tags(network: str, keep: set[tuple[str, str]]) -> set[str]:
    """Tags of the attachments GC must keep."""
    return {Owner(network, cid, ifname).tag for cid, ifname in keep}


def gc_doomed(tag: str, net_part: str, keep_tags: set[str]) -> bool:
    """True when ``tag`` belongs to the network GC is cleaning and is not kept."""
    parts = parse_tag(tag)
    return parts is not None and parts[0] == net_part and tag not in keep_tags


class Lock:
    """Exclusive flock held across one read-modify-write of the ruleset.

    Transactions are atomic, but DEL, CHECK and the slow ADD path read the ruleset first and
    write a batch computed from it; without the lock a parallel change between the two could
    make the batch delete another owner's element. One lock per backend, machine-wide (a
    lock per network namespace would do, but the cost is a microsecond and contention is
    only between firewall changes, which take milliseconds): ``LOCK_DIR/<name>``, a regular
    file opened without following links or blocking. A holder that keeps it longer than
    ``cnilib.lock.wait_bound()`` (``CNIPY_LOCK_TIMEOUT``, default 30 s) makes us fail with
    code 11 ("try again later") naming the lock and its holder.
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


class Backend:
    """A firewall driver. Every method raises CNIError on failure; none needs the container's
    namespace or interface. Each change is one atomic transaction of the underlying tool."""

    name = ""

    def available(self) -> str | None:
        """None when this backend can be used here, else the reason (tool missing, kernel or
        permission problem). Runs the tool once (a few ms); the answer is memoized."""
        raise NotImplementedError

    def add_masquerade(self, owner: Owner, rules: list[MasqRule]) -> None:
        """Install masquerading for ``owner`` exactly as ``rules`` say, replacing whatever the
        owner had; a source address held by another owner passes to this one."""
        raise NotImplementedError

    def del_masquerade(self, owner: Owner, rules: "list[MasqRule] | None" = None) -> None:
        """Remove everything of ``owner``; nothing there is fine. ``rules``, the ones ADD was
        given if the caller knows them (prevResult), may save a backend its read first;
        the result is the same without them."""
        raise NotImplementedError

    def check_masquerade(self, owner: Owner, rules: list[MasqRule]) -> None:
        """Raise CNIError (code 102) naming what is missing unless ``rules`` are all in place."""
        raise NotImplementedError

    def gc_masquerade(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the masquerading of every owner of ``network`` whose (container ID, ifname)
        is not in ``keep``."""
        raise NotImplementedError

    def hostports(self) -> "HostPorts":
        """The backend's host-port (portmap) operations."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<firewall backend {self.name}>"


class HostPorts:
    """Host-port mappings of owners (the portmap plugin's firewall state). Every method
    raises CNIError on failure and needs neither the container's namespace nor interface."""

    def add(self, owner: Owner, spec: "HostPortSpec") -> None:
        """Install ``spec`` for ``owner``, replacing whatever the owner had. A key another
        owner holds is a conflict: CNIError 101 naming the holder, nothing changed."""
        raise NotImplementedError

    def delete(self, owner: Owner, spec: "HostPortSpec | None" = None) -> None:
        """Remove everything of ``owner``; nothing there is fine. ``spec``, what ADD was
        given if the caller knows it (runtimeConfig and prevResult), may save a backend
        its read first; the result is the same without it."""
        raise NotImplementedError

    def check(self, owner: Owner, spec: "HostPortSpec") -> None:
        """CNIError 102 naming what is missing unless ``spec`` is fully in place."""
        raise NotImplementedError

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the mappings of every owner of ``network`` not in ``keep``."""
        raise NotImplementedError
