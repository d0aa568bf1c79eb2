"""TAP (and TUN) devices, which the kernel creates through /dev/net/tun, not netlink.

``create`` opens /dev/net/tun, sets the device up with TUNSETIFF (IFF_TAP or IFF_TUN, no
packet info, optionally multi-queue), makes it persistent and, when asked, owned by a user
and group, then closes it: the device stays, in the network namespace of the calling
thread (run it through ``netns.run_in`` for a container). Delete it like any link
(``link.delete``). Standard library only (fcntl, struct).
"""

from __future__ import annotations

import posix

from cnilib.errors import NOT_AVAILABLE, CNIError

TUN_PATH = "/dev/net/tun"
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFNAMSIZ = 16


def create(name: str, *, tap: bool = True, multi_queue: bool = False, owner: int | None = None,
           group: int | None = None) -> None:
    """Create persistent device ``name`` (a TAP unless ``tap`` is False). FileExistsError
    when the name is taken, OSError from the kernel otherwise; code 50 when the kernel has
    no TUN/TAP."""
    import fcntl
    import struct

    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} must be 1-{IFNAMSIZ - 1} bytes")
    # TUNSETIFF on the name of an existing persistent device attaches to it instead of
    # failing: refuse a taken name first (in the calling thread's namespace).
    import _socket

    try:
        _socket.if_nametoindex(name)
    except OSError:
        pass
    else:
        import errno

        raise FileExistsError(errno.EEXIST, f"interface {name!r} exists")
    try:
        fd = posix.open(TUN_PATH, posix.O_RDWR | posix.O_CLOEXEC)
    except FileNotFoundError:
        raise CNIError(NOT_AVAILABLE, f"this machine has no {TUN_PATH} (kernel without TUN/TAP)") from None
    try:
        flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", raw, flags))
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        posix.close(fd)
