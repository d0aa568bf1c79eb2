"""The ``nft`` command: batches (one atomic transaction each) and listings.

Every nftables feature runs ``nft`` through one ``Nft`` object, its backend's. A batch is
fed on stdin, as nft's JSON or its text syntax; a listing is ``nft -j list``, parsed (and
read by ``listing.Listing``). Outcomes the features act on are recognised in nft's
(LC_ALL=C) stderr: ``ENOENT``, ``EEXIST``, ``EBUSY`` below.
"""

from __future__ import annotations

from cnilib.errors import NOT_AVAILABLE, TOOL_FAILED, CNIError
from cnilib.firewall import tools

ENOENT = b"No such file or directory"
EEXIST = b"File exists"
EBUSY = b"Device or resource busy"
# The probe lists a table nobody uses (listing ours would cost O(rules)): ENOENT means nft
# and nf_tables work.
_PROBE_TABLE = ("inet", "cnipy_probe")


class Nft:
    """Runs ``nft``; every method raises CNIError 50 when it is not installed."""

    __slots__ = ()

    @staticmethod
    def path() -> str | None:
        """Where ``nft`` is, or None."""
        return tools.find_tool("nft")

    def _path(self) -> str:
        path = self.path()
        if path is None:
            raise CNIError(NOT_AVAILABLE, f"nftables backend: nft {tools.NOT_FOUND_WHERE}")
        return path

    def probe(self) -> str | None:
        """None when a request reaches nf_tables, else nft's complaint. One exec."""
        rc, _, err = tools.run([self._path(), "list", "table", *_PROBE_TABLE])
        if rc == 0 or ENOENT in err:
            return None
        return f"nft does not work here: {err.decode(errors='replace').strip()}"

    def _batch_argv(self, json: bool) -> list[str]:
        # "-f /proc/self/fd/0" rather than "-f -": nft opens /dev/stdin for "-", a symlink
        # that minimal systems (a bare devtmpfs, some initramfs and VM setups) lack.
        return [self._path()] + (["-j"] if json else []) + ["-f", "/proc/self/fd/0"]

    def run_batch(self, data: bytes, json: bool = True) -> tuple[int, bytes, str]:
        """Feed one batch (JSON, or nft's text syntax) to ``nft -f``: (status, stderr, the
        request as text for error details). One batch is one atomic transaction."""
        rc, _, err = tools.run(self._batch_argv(json), data)
        return rc, err, data.decode()

    def batch_error(self, rc: int, err: bytes, request: str, json: bool = True) -> CNIError:
        """The CNIError for a failed ``run_batch``."""
        return tools.tool_error(self._batch_argv(json), rc, err, request)

    def list_json(self, *what: str, handles: bool = False) -> object | None:
        """``nft -j [-a] list <what>`` parsed; None when it does not exist (ENOENT).

        Only slow paths list (re-ADD, a conflict, DEL without its spec, CHECK, GC): our
        element-only tables hold no rule per owner, so a listing is the elements of the
        maps and sets, ~25 ms per 1,000 elements here."""
        from cnilib.jsonio import JSONError, loads

        argv = [self._path(), "-j"] + (["-a"] if handles else []) + ["list", *what]
        rc, out, err = tools.run(argv)
        if rc != 0:
            if ENOENT in err:
                return None
            raise tools.tool_error(argv, rc, err)
        try:
            return loads(out)
        except JSONError as e:
            raise CNIError(TOOL_FAILED,
                           f"nft -j list {' '.join(what)}: unreadable output: {e}") from None
