"""The module payload appended to a standalone plugin executable (build/standalone_main.c).

Layout, from the payload's first byte (all integers little-endian)::

    module data        marshalled code objects, one after another
    names              module names, each NUL-terminated
    index              one entry per module: name_off, data_off, data_len, flags (u32 each;
                       flags: PACKAGE, BOOTSTRAP = importlib's bootstrap modules)
    trailer (88 bytes) build_id[16], payload_len u64, index_off u64, index_len u32,
                       index_crc u32 (zlib crc32 of the index), count u32, format u32,
                       plugin[32] (NUL-padded), magic "CNIPYPL1"

The trailer is the file's last bytes, so the executable finds the payload from its own
size; a truncated copy has no magic at its end and says so (a code-999 error document).
The build id ties a payload to the executable it was made for.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"CNIPYPL1"
FORMAT = 1
PACKAGE = 1
BOOTSTRAP = 2
_ENTRY = struct.Struct("<IIII")
TRAILER = struct.Struct("<16sQQIIII32s8s")


def build(modules: list[tuple[str, bytes, int]], build_id: bytes, plugin: str) -> bytes:
    """The payload for ``modules`` (name, marshalled code, flags), in that order."""
    if len(build_id) != 16:
        raise ValueError("build id: 16 bytes")
    name_bytes = plugin.encode()
    if len(name_bytes) > 32:
        raise ValueError(f"plugin name too long for the trailer: {plugin!r}")
    data = bytearray()
    offsets = []
    for _name, code, _flags in modules:
        offsets.append((len(data), len(code)))
        data += code
    names_off = []
    for name, _code, _flags in modules:
        names_off.append(len(data))
        data += name.encode() + b"\0"
    while len(data) % 4:
        data += b"\0"
    index_off = len(data)
    index = b"".join(_ENTRY.pack(n, off, size, flags)
                     for n, (off, size), (_name, _code, flags) in zip(names_off, offsets, modules))
    data += index
    total = len(data) + TRAILER.size
    data += TRAILER.pack(build_id, total, index_off, len(index), zlib.crc32(index), len(modules), FORMAT,
                         name_bytes, MAGIC)
    return bytes(data)


def read(blob: bytes) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """(plugin, {module: (marshalled code, flags)}) of a file ending in a payload:
    for tests and for inspecting a built file."""
    (_bid, total, index_off, index_len, crc, count, fmt, plugin, magic) = TRAILER.unpack(blob[-TRAILER.size:])
    if magic != MAGIC or fmt != FORMAT:
        raise ValueError("no cni-py payload")
    p = blob[len(blob) - total:]
    index = p[index_off:index_off + index_len]
    if zlib.crc32(index) != crc:
        raise ValueError("index checksum mismatch")
    mods = {}
    for i in range(count):
        n, off, size, flags = _ENTRY.unpack_from(index, i * _ENTRY.size)
        name = p[n:p.index(b"\0", n)].decode()
        mods[name] = (p[off:off + size], flags)
    return plugin.rstrip(b"\0").decode(), mods
