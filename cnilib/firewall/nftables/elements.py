"""What the two element-only tables (``inet cnipy_nat``, ``inet cnipy_hostport``) share.

An attachment is elements only: its entries in the table's maps, its marker ``H`` in set
``owners`` and its proof ``H . F`` in set ``owned`` (H: 128 bits of a hash of the owner's
tag, F: of exactly what the owner's entries are), each commented with the owner's tag.
The proof lets a DEL that knows the owner's entries delete them without reading first:
the transaction fails (ENOENT) before anything changes unless they are exactly those.
"""

from __future__ import annotations

from cnilib.firewall.nftables.runner import EBUSY, ENOENT
from cnilib.ip import parse_ip
from cnilib.owner import sha256_hex

# The marker and proof sets, by name.
OWNERS = "owners"
OWNED = "owned"


def hash128(text: str) -> str:
    """128 bits of SHA-256 of ``text`` as an IPv6 address text (the sets' key type)."""
    h = sha256_hex(text)[:32]
    return str(parse_ip(":".join(h[i:i + 4] for i in range(0, 32, 4))))


def run_delete(apply, fail, fast, exact) -> None:
    """DEL of one owner: ``fast(drop_chains)`` (no read; None when the caller does not know
    the owner's state) first, the same without the shared chains if the kernel says another
    owner still uses one (EBUSY), else ``exact()`` (a read, then a plan; empty: nothing
    there), re-read once if the table changed in between. ``apply`` runs a request and
    returns (status, stderr, request text); ``fail`` makes the CNIError."""
    if fast is not None:
        rc, err, req = apply(fast(True))
        if rc != 0 and EBUSY in err and ENOENT not in err:
            rc, err, req = apply(fast(False))
        if rc == 0:
            return
        if ENOENT not in err:  # ENOENT: the proof failed, the owner's state is not what we were told
            raise fail(rc, err, req)
    for attempt in range(2):
        cmds = exact()
        if not cmds:
            return
        rc, err, req = apply(cmds)
        if rc == 0:
            return
        if not (ENOENT in err or EBUSY in err) or attempt:
            raise fail(rc, err, req)
