"""host-local's lease store against hostile files and bad luck (issue 12, items 2, 6, 9).

* Special files (FIFO, character device, socket, directory) under the store's names: no verb
  ever hangs on one (the reference hangs on a FIFO while holding the store lock, and with it
  every other call on the network); a lease-named one keeps its address taken and is never
  removed; a lock that is not a regular file is refused at once (code 5).
* A store lock held by another process is waited for a bounded time (CNIPY_LOCK_TIMEOUT),
  then code 11 naming the lock and the holder's PID.
* Container IDs longer than 4 KB (libcni sets no limit; the kernel caps an environment
  string at 128 KiB): one lease per attachment, found again by ADD, CHECK, DEL and GC.
* A plugin killed while writing a lease leaves no lease (nor an empty one): the kill is
  done by the kernel (a seccomp filter that kills the process at its first write(2) to a
  file), exactly between "lease file exists" and "lease file is complete" in a
  create-then-write implementation.

Plugins run as real processes with a timeout: a hang is a failure, not a stuck test run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

from tests.helpers import OUR_BIN, run_plugin
from tests.test_host_local_common import NETNS, leases, make_conf, read, store_dir

TIMEOUT = 15  # seconds; every call here answers in well under one
DUAL = {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64", "rangeStart": "fd00:9::10"}]]}
FIRST = ["10.9.0.2/24", "fd00:9::10/64"]  # what an empty store hands out first
# The largest CNI_CONTAINERID execve(2) passes: MAX_ARG_STRLEN (128 KiB) with "CNI_CONTAINERID=" and the NUL.
MAX_ENV_ID = 131072 - len("CNI_CONTAINERID=") - 1


def call(verb: str, conf: dict, cid: str = "c1", ifname: str = "eth0", env: dict | None = None,
         bin_dir: str = OUR_BIN, timeout: float = TIMEOUT, args: str = ""):
    """One host-local call as a runtime makes it, failing the test if it hangs."""
    attach = verb in ("ADD", "DEL", "CHECK")
    try:
        return run_plugin(os.path.join(bin_dir, "host-local"), verb, conf, containerid=cid if attach else "",
                          ifname=ifname if attach else "", netns=NETNS if verb in ("ADD", "CHECK") else "",
                          args=args, path=bin_dir, extra_env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"host-local {verb} hung for {timeout} s", pytrace=False)


def ok(out) -> dict | None:
    assert out.ok, out
    return out.doc


def gc_conf(conf: dict, keep: list[tuple[str, str]]) -> dict:
    return dict(conf, cniVersion="1.1.0",
                **{"cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in keep]})


def store_entries(data_dir) -> list[str]:
    d = store_dir(data_dir)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def kind_of(path: str) -> str:
    mode = os.lstat(path).st_mode
    for test, name in ((stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"), (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "other"


def plant(path: str, kind: str) -> None:
    """Make a special file at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers: endless zeros
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "socket":
        # sun_path holds 108 bytes: bind at a short name, then move the socket file in place.
        short = os.path.join(tempfile.gettempdir(), f"s{uuid.uuid4().hex[:8]}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(short)
            os.rename(short, path)
        finally:
            s.close()
            if os.path.exists(short):
                os.unlink(short)
    else:
        raise ValueError(kind)


# -- item 2: special files under the store's names ---------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "chardev", "socket"])
@pytest.mark.parametrize("name", ["10.9.0.2", "fd00:9::10", "last_reserved_ip.0", "last_reserved_ip.1"])
def test_special_files_under_store_names_never_hang(tmp_path, kind, name):
    data = tmp_path / "data"
    os.makedirs(store_dir(data))
    planted = os.path.join(store_dir(data), name)
    plant(planted, kind)
    conf = make_conf(data, DUAL)
    a = ok(call("ADD", conf, cid="a"))
    b = ok(call("ADD", conf, cid="b"))
    got = [ip["address"].split("/")[0] for ip in a["ips"] + b["ips"]]
    assert name not in got, f"the address of a {kind} was handed out: {got}"
    assert len(set(got)) == 4
    ok(call("CHECK", dict(conf, prevResult=a), cid="a"))
    ok(call("DEL", conf, cid="a"))
    ok(call("GC", gc_conf(conf, [("b", "eth0")])))
    ok(call("STATUS", conf))
    ok(call("DEL", conf, cid="b"))
    # Never opened for I/O, never replaced, never removed (not ours to judge).
    assert kind_of(planted) == kind
    assert [n for n in leases_of(data) if n != name] == []


def leases_of(data_dir) -> list[str]:
    """Names of the lease-like entries (anything but lock, last_reserved_ip.* and dot files)."""
    return [n for n in store_entries(data_dir) if n != "lock" and not n.startswith(("last_reserved_ip.", "."))]


def test_a_fifo_lease_does_not_block_other_calls(tmp_path):
    """The original report: a FIFO under the next round-robin name (and one under the
    round-robin file) while parallel ADDs and DELs of other attachments go on."""
    data = tmp_path / "data"
    os.makedirs(store_dir(data))
    for name in ("last_reserved_ip.0", "10.9.0.5"):
        os.mkfifo(os.path.join(store_dir(data), name))
    conf = make_conf(data, {"subnet": "10.9.0.0/24"})
    results: list = [None] * 8

    def one(i: int) -> None:
        results[i] = call("ADD", conf, cid=f"p{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(ok(r)["ips"][0]["address"] for r in results)
    assert len(set(got)) == 8 and "10.9.0.5/24" not in got
    for i in range(8):
        ok(call("DEL", conf, cid=f"p{i}"))
    assert leases_of(data) == ["10.9.0.5"]


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev", "dir"])
def test_a_lock_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    data = tmp_path / "data"
    os.makedirs(store_dir(data))
    lock = os.path.join(store_dir(data), "lock")
    plant(lock, kind)
    conf = make_conf(data, DUAL)
    for verb, cfg, code in (("ADD", conf, 5), ("CHECK", conf, 5), ("DEL", conf, 5),
                            ("GC", gc_conf(conf, []), 5), ("STATUS", conf, 50)):
        t0 = time.monotonic()
        out = call(verb, cfg)
        assert out.code == code and lock in out.doc["msg"], (verb, out)
        if kind in ("fifo", "chardev"):  # a socket cannot even be opened (ENXIO), a dir is EISDIR
            assert "not a regular file" in out.doc["msg"], out
        assert time.monotonic() - t0 < 5, (verb, "took", time.monotonic() - t0)
    assert kind_of(lock) == kind and leases_of(data) == []


@pytest.mark.parametrize("kind", ["fifo", "dir", "chardev"])
def test_a_resolv_conf_that_is_not_a_regular_file_is_a_config_error(tmp_path, kind):
    path = str(tmp_path / "resolv")
    plant(path, kind)
    conf = make_conf(tmp_path / "data", dict(DUAL, resolvConf=path))
    out = call("ADD", conf)
    assert out.code == 7 and "ipam.resolvConf" in out.doc["msg"] and path in out.doc["msg"], out
    assert leases_of(tmp_path / "data") == []


# -- item 2/3: a busy store lock ---------------------------------------------------------

HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes our stdin (or dies)
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # one an unprivileged user may run (the project's venv is root's)


class Holder:
    """A separate process holding an exclusive flock on ``path`` (created if missing) until
    ``release()``; ``popen`` keywords such as ``user=`` run it as another user."""

    def __init__(self, path: str, **popen) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, "-c", HOLDER, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.release()
            raise AssertionError(f"lock holder failed: {self.proc.stderr.read()}")
        self.pid = self.proc.pid

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_busy_store_lock_is_waited_for_a_bounded_time(tmp_path):
    data = tmp_path / "data"
    conf = make_conf(data, DUAL)
    ok(call("ADD", conf, cid="first"))  # makes the store and its lock file
    lock = os.path.join(store_dir(data), "lock")
    short = {"CNIPY_LOCK_TIMEOUT": "1"}
    with Holder(lock) as holder:
        for verb, cfg, code in (("ADD", conf, 11), ("DEL", conf, 11), ("CHECK", conf, 11),
                                ("GC", gc_conf(conf, []), 11), ("STATUS", conf, 50)):
            t0 = time.monotonic()
            out = call(verb, cfg, cid="late", env=short)
            took = time.monotonic() - t0
            assert out.code == code, (verb, out)
            msg = out.doc["msg"]
            assert lock in msg and f"PID {holder.pid}" in msg and "try again later" in msg, (verb, msg)
            assert 1 <= took < 5, (verb, "took", took)
        assert leases_of(data) == ["10.9.0.2", "fd00:9::10"]  # nothing written meanwhile
        # A holder that lets go within the bound: the waiting call gets the lock and succeeds.
        waiting: dict = {}
        t = threading.Thread(target=lambda: waiting.update(out=call("ADD", conf, cid="late",
                                                                    env={"CNIPY_LOCK_TIMEOUT": "10"})))
        t.start()
        time.sleep(0.5)
        holder.release()
        t.join()
    assert [ip["address"] for ip in ok(waiting["out"])["ips"]] == ["10.9.0.3/24", "fd00:9::11/64"]


@pytest.mark.parametrize("value", ["x", "-1", "nan", "inf", ""])
def test_the_lock_timeout_variable_must_be_seconds(tmp_path, value):
    out = call("ADD", make_conf(tmp_path / "data", DUAL), env={"CNIPY_LOCK_TIMEOUT": value})
    assert out.code == 4 and "CNIPY_LOCK_TIMEOUT" in out.doc["msg"], out
    assert leases_of(tmp_path / "data") == []


# -- item 6: long container IDs --------------------------------------------------------

@pytest.mark.parametrize("length", [4095, 4096, 4097, 5000, MAX_ENV_ID])
def test_long_container_ids_keep_one_lease_per_attachment(tmp_path, length):
    data = tmp_path / "data"
    conf = make_conf(data, DUAL)
    cid = "a" * length
    prefix = "a" * 4096  # what a 4 KB read of the lease sees: another (legacy) container ID
    first = ok(call("ADD", conf, cid=cid))
    assert [ip["address"] for ip in first["ips"]] == FIRST
    again = call("ADD", conf, cid=cid)
    assert again.code == 101, f"second ADD of the attachment: {again.code}"
    assert call("ADD", conf, cid=cid, ifname="eth1").ok  # another attachment of the container
    ok(call("CHECK", dict(conf, prevResult=first), cid=cid))
    if length != 4096:
        assert call("CHECK", conf, cid=prefix).code == 102  # not the prefix's lease
        ok(call("DEL", conf, cid=prefix))
    ok(call("GC", gc_conf(conf, [(cid, "eth0"), (cid, "eth1")])))
    assert len(leases_of(data)) == 4
    ok(call("GC", gc_conf(conf, [(cid, "eth0")])))
    assert len(leases_of(data)) == 2
    ok(call("DEL", conf, cid=cid))
    assert leases_of(data) == []


def test_long_container_ids_are_shared_with_the_reference(tmp_path, ref_bin):
    cid = "r" * 5000
    for writer, other in ((ref_bin, OUR_BIN), (OUR_BIN, ref_bin)):
        data = tmp_path / os.path.basename(writer)
        conf = make_conf(data, DUAL, version="1.0.0")
        first = ok(call("ADD", conf, cid=cid, bin_dir=writer))
        assert not call("ADD", conf, cid=cid, bin_dir=other).ok  # duplicate for both
        ok(call("CHECK", dict(conf, prevResult=first), cid=cid, bin_dir=other))
        ok(call("DEL", conf, cid=cid, bin_dir=other))
        assert leases_of(data) == []
    # Same operations, byte-identical stores (lock aside: modes differ, both are empty).
    stores = []
    for bin_dir in (OUR_BIN, ref_bin):
        data = tmp_path / ("same-" + os.path.basename(bin_dir))
        conf = make_conf(data, DUAL, version="1.0.0")
        ok(call("ADD", conf, cid=cid, bin_dir=bin_dir))
        ok(call("ADD", conf, cid="short", bin_dir=bin_dir))
        stores.append({n: read(os.path.join(store_dir(data), n)) for n in store_entries(data) if n != "lock"})
    assert stores[0] == stores[1]
    assert stores[0]["10.9.0.2"] == cid.encode() + b"\r\neth0"


# -- item 9: a writer killed mid-lease ---------------------------------------------------

# A wrapper that installs a seccomp filter killing the process at its first write(2) to a
# descriptor >= 3 (stdin/stdout/stderr stay usable), then execs the plugin: host-local
# writes nothing else before its lease, so the kernel kills it right after the lease file
# was created (create-then-write) or the temporary file was (write-then-link).
KILL_AT_FIRST_FILE_WRITE = r"""
import ctypes, os, platform, struct, sys
ARCH = {"x86_64": (0xC000003E, 1), "aarch64": (0xC00000B7, 64)}[platform.machine()]
LD_W_ABS, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
KILL_PROCESS, ALLOW = 0x80000000, 0x7FFF0000
prog = [(LD_W_ABS, 0, 0, 4), (JEQ, 0, 5, ARCH[0]),      # arch; another one: allow
        (LD_W_ABS, 0, 0, 0), (JEQ, 0, 3, ARCH[1]),      # syscall nr == write?
        (LD_W_ABS, 0, 0, 16), (JGE, 0, 1, 3),           # fd (low 32 bits of args[0]) >= 3?
        (RET, 0, 0, KILL_PROCESS), (RET, 0, 0, ALLOW)]
raw = b"".join(struct.pack("HBBI", *i) for i in prog)
buf = ctypes.create_string_buffer(raw)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
fbuf = ctypes.create_string_buffer(fprog)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, fbuf, 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP filter
    sys.exit("seccomp: %s" % os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""


def crashed_add(conf: dict, cid: str, bin_dir: str = OUR_BIN) -> None:
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": NETNS,
           "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": bin_dir}
    p = subprocess.run([sys.executable, "-c", KILL_AT_FIRST_FILE_WRITE, os.path.join(bin_dir, "host-local")],
                       input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == -signal.SIGSYS, f"not killed at its first file write: {p}"


def test_a_writer_killed_mid_lease_leaves_no_lease(tmp_path):
    data = tmp_path / "data"
    conf = make_conf(data, DUAL)
    crashed_add(conf, "dead")
    assert leases_of(data) == [], f"a killed ADD left leases: {leases(data)}"
    # Its DEL finds nothing to free, and the next ADD gets the first address: none leaked.
    ok(call("DEL", conf, cid="dead"))
    assert [ip["address"] for ip in ok(call("ADD", conf, cid="next"))["ips"]] == FIRST
    assert leases(data) == {"10.9.0.2": b"next\r\neth0", "fd00:9::10": b"next\r\neth0"}
    # The killed writer's leftover (if any) went with that ADD.
    assert [n for n in store_entries(data) if n.startswith(".")] == []


def test_del_collects_what_a_killed_writer_left(tmp_path):
    """The DEL a runtime sends after a killed ADD removes the writer's temporary file: it
    may be the last call on the network (the harness's F28-del-after-killed-add)."""
    data = tmp_path / "data"
    conf = make_conf(data, DUAL)
    crashed_add(conf, "dead")
    assert ".lease.tmp" in store_entries(data), store_entries(data)
    ok(call("DEL", conf, cid="dead"))
    assert [n for n in store_entries(data) if n.startswith(".")] == []


def test_gc_collects_what_a_killed_writer_left(tmp_path):
    data = tmp_path / "data"
    conf = make_conf(data, DUAL)
    ok(call("ADD", conf, cid="live"))
    crashed_add(conf, "dead")
    assert sorted(leases(data).values()) == [b"live\r\neth0"] * 2
    ok(call("GC", gc_conf(conf, [("live", "eth0")])))
    assert store_entries(data) == ["10.9.0.2", "fd00:9::10", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]


def test_a_lease_name_taken_meanwhile_is_never_replaced(tmp_path):
    """link(2) fails on an existing name, whatever it is: a requested address whose name
    holds another lease, an empty file (the reference's killed writer) or a dangling
    symlink is refused, and the file is left as it was."""
    data = tmp_path / "data"
    d = store_dir(data)
    os.makedirs(d)
    with open(os.path.join(d, "10.9.0.7"), "wb"):
        pass
    os.symlink(str(tmp_path / "nowhere"), os.path.join(d, "10.9.0.8"))
    conf = make_conf(data, DUAL)
    for ip in ("10.9.0.7", "10.9.0.8"):
        out = call("ADD", conf, cid="want", args=f"IP={ip}")
        assert out.code == 101 and ip in out.doc["msg"], out
    assert read(os.path.join(d, "10.9.0.7")) == b""
    assert os.readlink(os.path.join(d, "10.9.0.8")) == str(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    assert [n for n in store_entries(data) if n.startswith(".")] == []
