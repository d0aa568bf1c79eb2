"""The CRI API (``runtime.v1``) read from containerd's own binary, as protobuf message classes.

No Debian package ships the CRI's .proto files, and copying the schema by hand would drift
from the runtime under test. Debian's containerd is built with gogo/protobuf, which embeds a
gzip-compressed ``FileDescriptorProto`` of every .proto it was compiled with; the CRI's is
``api.proto`` of package ``runtime.v1``. It imports ``gogo.proto`` only for Go code generation
options, so the dependency and every option (but ``map_entry``, which makes map fields) are
dropped before the descriptor goes into a private descriptor pool.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

GZIP_MAGIC = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"  # gzip, deflate, no flags, no mtime: Go's gzip.Writer
CRI_PACKAGE = "runtime.v1"
CRI_FILE = "api.proto"
MAX_DESCRIPTOR = 1 << 20  # inflate at most this much per candidate


class SchemaNotFound(Exception):
    """The binary holds no CRI descriptor (not containerd, or not built with gogo/protobuf)."""


def find_descriptor(binary: str, package: str = CRI_PACKAGE, name: str = CRI_FILE) -> descriptor_pb2.FileDescriptorProto:
    """The embedded ``FileDescriptorProto`` named ``name`` of ``package`` in ``binary``
    (every gzip stream is tried; ~0.1 s for containerd's 48 MB)."""
    with open(binary, "rb") as f:
        data = f.read()
    at = data.find(GZIP_MAGIC)
    while at >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[at:at + MAX_DESCRIPTOR])
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        except (zlib.error, DecodeError):  # another gzip stream, or not a descriptor
            fd = None
        if fd is not None and fd.name == name and fd.package == package:
            return fd
        at = data.find(GZIP_MAGIC, at + 1)
    raise SchemaNotFound(f"{binary} embeds no {name} of package {package}")


def _strip_message(m: descriptor_pb2.DescriptorProto) -> None:
    map_entry = m.options.map_entry
    m.ClearField("options")
    if map_entry:
        m.options.map_entry = True
    for f in m.field:
        f.ClearField("options")
    for n in m.nested_type:
        _strip_message(n)
    for e in m.enum_type:
        _strip_enum(e)


def _strip_enum(e: descriptor_pb2.EnumDescriptorProto) -> None:
    e.ClearField("options")
    for v in e.value:
        v.ClearField("options")


def without_gogo(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """A copy of ``fd`` without imports and options (gogo's code generation hints)."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(fd)
    del out.dependency[:]
    out.ClearField("options")
    for m in out.message_type:
        _strip_message(m)
    for e in out.enum_type:
        _strip_enum(e)
    for s in out.service:
        s.ClearField("options")
        for meth in s.method:
            meth.ClearField("options")
    return out


@dataclass(frozen=True)
class Schema:
    """The CRI's message classes by short name (``schema.msg("RunPodSandboxRequest")``),
    and its services' methods (``/runtime.v1.RuntimeService/Version`` ...)."""

    package: str
    classes: dict
    methods: dict  # "RuntimeService/Version" -> (request class, response class)

    def msg(self, name: str):
        """The message class ``name`` (nested ones as ``Outer.Inner``)."""
        return self.classes[f"{self.package}.{name}"]


@lru_cache(maxsize=4)
def load(binary: str = "/usr/bin/containerd") -> Schema:
    """The CRI schema embedded in ``binary``, as message classes in a private pool."""
    fd = without_gogo(find_descriptor(binary))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    classes = message_factory.GetMessages([fd], pool=pool)
    methods = {}
    for s in fd.service:
        for m in s.method:
            methods[f"{s.name}/{m.name}"] = (classes[m.input_type.lstrip(".")], classes[m.output_type.lstrip(".")])
    return Schema(fd.package, classes, methods)
