"""The machine-wide firewall locks against local users and stuck holders (issue 12, item 3).

Older versions kept the locks of the nftables and iptables backends in world-writable
/run/lock and waited for them without a bound: any local user could create
/run/lock/cnipy-nft.lock as a FIFO, or create it and keep a flock on it, and every ipMasq and
portmap change of the machine hung. Now they live in /run/cni-py (0700, root's), are opened
without following links or blocking, and a holder that keeps one longer than
CNIPY_LOCK_TIMEOUT makes the plugin fail with code 11 naming the lock and the holder.

Attackers here are real processes running as ``nobody``; plugins run as real processes in
throwaway host namespaces, with a timeout (a hang is a failure, not a stuck test run).
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
import uuid

import pytest

from tests.helpers import OUR_BIN, run_plugin
from tests.test_bridge_common import NET, Host, host  # noqa: F401 - host is a fixture
from tests.test_hostile_store import TIMEOUT, Holder

LOCK_DIR = "/run/cni-py"
LOCKS = {"nft": "cnipy-nft.lock", "hostport": "cnipy-nft-hostport.lock", "iptables": "cnipy-iptables.lock"}
OLD_DIR = "/run/lock"  # where versions before this fix kept them: world-writable, sticky
NOBODY = {"user": "nobody", "group": "nogroup", "extra_groups": []}


def run(host: Host, plugin: str, verb: str, conf: dict, ctr=None, env: dict | None = None, cid: str = "c1"):
    """``plugin`` in the host namespace, failing the test if it hangs."""
    try:
        return run_plugin(os.path.join(OUR_BIN, plugin), verb, conf, containerid=cid,
                          netns=ctr.path if ctr is not None else "/var/run/netns/x", ifname="eth0",
                          path=OUR_BIN, in_netns=host.name, extra_env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{plugin} {verb} hung for {TIMEOUT} s", pytrace=False)


def portmap_conf(backend: str = "nftables") -> dict:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/x"}],
            "ips": [{"address": "10.88.0.5/24", "gateway": "10.88.0.1", "interface": 0}], "dns": {}}
    return {"cniVersion": "1.0.0", "name": "pm-lock", "type": "portmap", "backend": backend,
            "capabilities": {"portMappings": True}, "prevResult": prev,
            "runtimeConfig": {"portMappings": [{"hostPort": 18123, "containerPort": 80, "protocol": "tcp"}]}}


@pytest.fixture
def old_lock_names():
    """The old lock names in /run/lock, free for an unprivileged user to take: root's files
    from earlier runs of old versions are moved aside, and put back afterwards."""
    moved = []
    for name in LOCKS.values():
        path = f"{OLD_DIR}/{name}"
        if os.path.lexists(path):
            aside = f"{path}.aside-{uuid.uuid4().hex[:8]}"
            os.rename(path, aside)
            moved.append((path, aside))
    try:
        yield {k: f"{OLD_DIR}/{v}" for k, v in LOCKS.items()}
    finally:
        for name in LOCKS.values():
            path = f"{OLD_DIR}/{name}"
            if os.path.lexists(path):
                os.unlink(path)
        for path, aside in moved:
            os.rename(aside, path)


def test_an_unprivileged_user_cannot_block_firewall_changes(host, old_lock_names):
    old = old_lock_names
    # nobody plants a FIFO under one lock's name and holds flocks on files under the others.
    subprocess.run(["mkfifo", old["nft"]], check=True, **NOBODY)
    holders = [Holder(old["hostport"], **NOBODY), Holder(old["iptables"], **NOBODY)]
    try:
        assert os.stat(old["nft"]).st_uid == os.stat(old["iptables"]).st_uid != 0
        for backend in ("nftables", "iptables"):
            c = host.container()
            conf = host.conf(isGateway=True, ipMasq=True, ipMasqBackend=backend)
            add = run(host, "bridge", "ADD", conf, c)
            assert add.ok, add
            assert f"cnipy:{NET}:c1:eth0" in (host.ruleset() if backend == "nftables" else host.iptables_save())
            assert run(host, "bridge", "CHECK", dict(conf, prevResult=add.doc), c).ok
            assert run(host, "bridge", "DEL", conf, c).ok
        for backend in ("nftables", "iptables"):
            assert run(host, "portmap", "ADD", portmap_conf(backend)).ok
            assert run(host, "portmap", "DEL", portmap_conf(backend)).ok
        assert f"cnipy:{NET}" not in host.ruleset() + host.iptables_save()
        # The attacker's files were left alone, and the locks' directory is out of reach.
        assert stat.S_ISFIFO(os.lstat(old["nft"]).st_mode)
        st = os.lstat(LOCK_DIR)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
        for name in LOCKS.values():
            p = subprocess.run(["touch", f"{LOCK_DIR}/{name}.x"], capture_output=True, **NOBODY)
            assert p.returncode != 0 and not os.path.lexists(f"{LOCK_DIR}/{name}.x")
    finally:
        for h in holders:
            h.release()


@pytest.mark.parametrize("plugin,lock", [("bridge", "nft"), ("bridge", "iptables"), ("portmap", "hostport")])
def test_a_stuck_holder_makes_firewall_changes_fail_with_code_11(host, plugin, lock):
    """A (root) process keeping our lock past CNIPY_LOCK_TIMEOUT: code 11 "try again later"
    within the bound, naming the lock file and the holder's PID, and nothing left behind."""
    path = f"{LOCK_DIR}/{LOCKS[lock]}"
    c = host.container()
    if plugin == "bridge":
        conf = host.conf(isGateway=True, ipMasq=True, ipMasqBackend="iptables" if lock == "iptables" else "nftables")
    else:
        conf = portmap_conf()
    before = host.state([c])
    if not os.path.isdir(LOCK_DIR):
        os.mkdir(LOCK_DIR, 0o700)  # as the plugin makes it
    holder = Holder(path)
    try:
        t0 = time.monotonic()
        out = run(host, plugin, "ADD", conf, c, env={"CNIPY_LOCK_TIMEOUT": "1"})
        took = time.monotonic() - t0
    finally:
        holder.release()
    assert out.code == 11, out
    msg = out.doc["msg"]
    assert path in msg and f"PID {holder.pid}" in msg and "try again later" in msg, msg
    assert took < 1 + 5, f"took {took:.1f} s"
    # What the failed ADD made was undone (its undo waits for the lock too, within the bound).
    assert host.state([c]) == before
    assert run(host, plugin, "DEL", conf, c).ok  # and with the holder gone, all is well


def _in_private_mount_ns(host: Host, mount_opts: str, conf: dict, ctr) -> object:
    """bridge ADD in a mount namespace where LOCK_DIR is a fresh tmpfs with ``mount_opts``."""
    script = (f"mount -t tmpfs -o {mount_opts} cnipy-lockdir-test {LOCK_DIR} && "
              f"exec ip netns exec {host.name} {os.path.join(OUR_BIN, 'bridge')}")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
           "CNI_NETNS": ctr.path, "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": OUR_BIN}
    from conformance.proc import Outcome, parse_doc, stdin_bytes

    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       input=stdin_bytes(conf), env=env, capture_output=True, timeout=TIMEOUT)
    return Outcome(p.returncode, p.stdout, p.stderr, parse_doc(p.stdout))


@pytest.mark.parametrize("opts", ["mode=1777", "mode=0755", "mode=0700,uid=65534"])
def test_a_lock_directory_others_can_write_or_own_is_refused(host, opts):
    if not os.path.isdir(LOCK_DIR):
        os.mkdir(LOCK_DIR, 0o700)  # the mount point; as the plugin makes it
    c = host.container()
    conf = host.conf(isGateway=True, ipMasq=True)
    before = host.state([c])
    out = _in_private_mount_ns(host, opts, conf, c)
    assert out.code == 5 and LOCK_DIR in out.doc["msg"] and "not a private directory" in out.doc["msg"], out
    assert host.state([c]) == before


# -- the lock helpers themselves (cnilib.lock), on files under tmp_path ---------------------

def test_open_private_dir_refuses_links_and_shared_directories(tmp_path):
    from cnilib.lock import open_private_dir

    fresh = tmp_path / "fresh"
    os.close(open_private_dir(str(fresh)))
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    os.symlink(str(fresh), tmp_path / "link")
    with pytest.raises(OSError):  # ELOOP: never followed
        open_private_dir(str(tmp_path / "link"))
    for mode in (0o1777, 0o755, 0o710):
        d = tmp_path / f"m{mode:o}"
        d.mkdir()
        os.chmod(d, mode)
        with pytest.raises(PermissionError):
            open_private_dir(str(d))
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(PermissionError):
        open_private_dir(str(other))


def test_file_lock_refuses_special_files_and_names_its_holder(tmp_path):
    from cnilib.errors import CNIError
    from cnilib.lock import FileLock, NotRegularFile

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile):
        FileLock(str(tmp_path / "fifo"))  # would block in open(2) without O_NONBLOCK
    os.symlink(str(tmp_path / "target"), tmp_path / "link")
    with pytest.raises(OSError):
        FileLock(str(tmp_path / "link"))
    assert not (tmp_path / "target").exists()
    path = str(tmp_path / "lock")
    holder = Holder(path)
    try:
        lk = FileLock(path, path="the-lock")
        t0 = time.monotonic()
        with pytest.raises(CNIError) as e:
            lk.acquire(timeout=0.3)
        assert 0.3 <= time.monotonic() - t0 < 2
        assert e.value.code == 11 and "the-lock" in e.value.msg and f"PID {holder.pid} (python3)" in e.value.msg
    finally:
        holder.release()
    lk.acquire(timeout=0)  # free now: taken at once
    lk.close()
