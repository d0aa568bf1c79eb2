"""The iptables tools of both families: ``iptables -t nat -S`` (one chain), ``iptables-save
-t nat`` (the whole table) and ``iptables-restore --noflush`` (one atomic commit: with
iptables-nft one nftables transaction, with legacy one table replace). ``-w`` waits for
the xtables lock that legacy iptables takes.

Every iptables feature runs them through one ``Iptables`` object, its backend's, and
under its one lock (masquerading and host ports share the nat table).
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, CNIError
from cnilib.firewall import tools
from cnilib.firewall.iptables.listing import Table, parse_save

TOOLS = {4: ("iptables-restore", "iptables-save", "iptables"),
         6: ("ip6tables-restore", "ip6tables-save", "ip6tables")}
RESTORE, SAVE, CMD = 0, 1, 2
LOCK_NAME = "cnipy-iptables.lock"
WAIT_SECONDS = "10"
# nat's built-in chains always exist: failing to list one is an error, not "no such chain".
BUILTIN = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")


def nat_batch(lines: list[str]) -> str:
    """A restore batch of ``lines`` for the nat table."""
    return "*nat\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"


def filter_batch(lines: list[str]) -> str:
    """A restore batch of ``lines`` for the filter table."""
    return "*filter\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"


class Iptables:
    """Runs the iptables tools; every method raises CNIError 50 for a missing tool."""

    __slots__ = ()

    @staticmethod
    def tool(version: int, which: int) -> str:
        """Path of tool ``which`` (RESTORE, SAVE, CMD) of IP ``version``."""
        name = TOOLS[version][which]
        path = tools.find_tool(name)
        if path is None:
            raise CNIError(NOT_AVAILABLE, f"iptables backend: {name} {tools.NOT_FOUND_WHERE}")
        return path

    def probe(self) -> str | None:
        """None when the IPv4 nat table answers, else iptables' complaint. One exec."""
        rc, _, err = tools.run([self.tool(4, CMD), "-w", WAIT_SECONDS, "-t", "nat", "-S", "POSTROUTING"])
        if rc == 0:
            return None
        return f"iptables -t nat does not work here: {err.decode(errors='replace').strip()}"

    @staticmethod
    def versions(wanted: set[int]) -> list[int]:
        """Families to look at: IPv4 always; IPv6 when ``wanted`` or when its tools exist
        (state from an earlier dual-stack ADD may be there)."""
        return [4] + ([6] if 6 in wanted or tools.find_tool(TOOLS[6][CMD]) else [])

    def list_chain(self, version: int, chain: str, only: str = "") -> Table | None:
        """``iptables -t nat -S chain``: ~9 ms at 500 owners where iptables-save takes ~37
        (iptables-nft fetches only that chain). None when the chain does not exist; ``only``
        as for parse_save."""
        argv = [self.tool(version, CMD), "-w", WAIT_SECONDS, "-t", "nat", "-S", chain]
        rc, out, err = tools.run(argv)
        if rc != 0:
            if chain not in BUILTIN:  # iptables-nft words "no such chain" in several ways
                return None
            raise tools.tool_error(argv, rc, err)
        return parse_save(out.decode(errors="replace"), only)

    def list_table(self, version: int, table: str) -> Table:
        """``iptables -t table -S``: every chain and rule of ``table`` in one exec (built-in
        chains appear only through their rules)."""
        argv = [self.tool(version, CMD), "-w", WAIT_SECONDS, "-t", table, "-S"]
        rc, out, err = tools.run(argv)
        if rc != 0:
            raise tools.tool_error(argv, rc, err)
        return parse_save(out.decode(errors="replace"))

    def save(self, version: int) -> Table:
        """``iptables-save -t nat``: the whole nat table."""
        argv = [self.tool(version, SAVE), "-t", "nat"]
        rc, out, err = tools.run(argv)
        if rc != 0:
            raise tools.tool_error(argv, rc, err)
        return parse_save(out.decode(errors="replace"))

    def restore(self, version: int, text: str) -> None:
        """Commit ``text`` (a restore batch) with ``--noflush``: everyone else's rules stay."""
        argv = [self.tool(version, RESTORE), "--noflush", "-w", WAIT_SECONDS]
        rc, _, err = tools.run(argv, text.encode())
        if rc != 0:
            raise tools.tool_error(argv, rc, err, text)
