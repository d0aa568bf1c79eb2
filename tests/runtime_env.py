"""Real container runtimes for the end-to-end tests (tests/test_runtimes.py).

podman and containerd run with private configurations, private storage and a private
mount namespace each, so the machine's own configuration, storage and directories are
never written to:

- ``PrivateMounts`` keeps a mount namespace alive with one process (podman: a sleeper;
  containerd: the daemon itself) and runs commands inside it through ``nsenter``. In it,
  ``/run`` and ``/var/lib`` are shadowed by tmpfs copies that show the machine's entries
  except those a runtime writes to (``netns``, ``runc``, ``containers``, ``cni``...), which
  start empty there; ``/opt/cni/bin`` and ``/etc/cni/net.d`` (containerd's fixed paths)
  are our directories. Propagation is private: nothing mounted there reaches the machine.
- ``Podman``: CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files under a temp directory
  (CNI backend, our plugin directory, our network config directory, runc, cgroupfs,
  file locks, vfs storage); it runs in the machine's network namespace, the one allowed
  exception (unique bridge name and subnet, removed afterwards).
- ``Containerd``: a private daemon (own root, state, socket, config) in a throwaway named
  network namespace, driven with ``ctr --cni``.

The image is made offline from Debian's busybox-static (``rootfs_tar``) and imported.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid

from tests.helpers import PLAIN_PATH, ip_json

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
APPLETS = ("sh", "httpd", "nc", "ip", "ping", "sleep", "cat", "ls", "mkdir", "echo", "printf",
           "wget", "hostname", "true", "env", "ps", "kill")
# Entries of the machine's /run and /var/lib that runtimes write to: private (empty) in ours.
RUN_PRIVATE = ("netns", "runc", "crun", "containers", "libpod", "containerd", "mount", "cni")
VAR_LIB_PRIVATE = ("containers", "containerd", "cni")


class Unavailable(Exception):
    """The runtime cannot work on this machine, for a reason outside the project."""


def short_id() -> str:
    return uuid.uuid4().hex[:8]


def tool(name: str) -> str:
    """Absolute path of a command, or None."""
    return shutil.which(name, path=PLAIN_PATH)


def run(argv: list[str], *, env: dict | None = None, timeout: float = 60, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, env=env if env is not None else {"PATH": PLAIN_PATH}, input=input,
                       capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {p.returncode}:\n"
                             f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
    return p


# ---------------------------------------------------------------- the image

def rootfs_tar(path: str) -> None:
    """A root filesystem tarball: Debian's static busybox and its applets as symlinks."""
    if not os.path.isfile(BUSYBOX):
        raise AssertionError(f"{BUSYBOX} missing: install busybox-static (build/setup.sh)")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for a in APPLETS:
            info = tarfile.TarInfo(f"bin/{a}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(passwd), 0o644
        tar.addfile(info, io.BytesIO(passwd))


# A web server answering with the container's name; then a tiny HTTP client for inside.
def httpd_command(text: str) -> list[str]:
    return ["sh", "-c", f"echo {shlex.quote(text)} > /www/index.html && exec httpd -f -p 80 -h /www"]


def nc_get(ip: str, port: int = 80) -> list[str]:
    """An HTTP GET with busybox nc (busybox-static 1.35's wget dies of SIGSEGV in ctr's
    containers here; nc works under both runtimes)."""
    return ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}"]


# ---------------------------------------------------------------- addresses and ports

def pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no route or address of the machine overlaps."""
    taken = []
    for r in ip_json("-4", "route", "show", "table", "all"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                taken.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
            except ValueError:
                pass
    for a in ip_json("-4", "addr", "show"):
        for i in a.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{i['local']}/{i['prefixlen']}", strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(128, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise AssertionError("no free 10.x.y.0/24 on this machine")


def pick_port() -> int:
    """A TCP port nothing listens on (IPv4 and IPv6), outside the ephemeral range."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        try:
            for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.bind((addr, port))
            return port
        except OSError:
            continue
    raise AssertionError("no free TCP port")


def conflist(name: str, bridge: str, subnet: ipaddress.IPv4Network, data_dir: str, *,
             loopback: bool = False) -> dict:
    """bridge (gateway, masquerade, hairpin, static IP and MAC capabilities, as podman's own
    networks) + host-local -> portmap, CNI 1.0.0; optionally loopback last."""
    plugins = [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "capabilities": {"ips": True, "mac": True},
         "ipam": {"type": "host-local", "ranges": [[{"subnet": str(subnet)}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]
    if loopback:
        plugins.append({"type": "loopback"})
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


# ---------------------------------------------------------------- what the kernel holds

def bridge_ports(bridge: str, ns: str | None = None) -> list[dict]:
    return [l for l in ip_json("-d", "link", "show", ns=ns) if l.get("master") == bridge]


def link_exists(name: str, ns: str | None = None) -> bool:
    return any(l["ifname"] == name for l in ip_json("link", "show", ns=ns))


def firewall_lines(needles: list[str], ns: str | None = None) -> list[str]:
    """Lines of the nftables ruleset and of iptables-save/ip6tables-save holding a needle."""
    out = []
    prefix = ["ip", "netns", "exec", ns] if ns else []
    for argv in (["nft", "list", "ruleset"], ["iptables-save"], ["ip6tables-save"]):
        if not tool(argv[0]):
            continue
        p = run(prefix + argv, check=False)
        out += [f"{argv[0]}: {line.strip()}" for line in p.stdout.decode(errors="replace").splitlines()
                if any(n in line for n in needles)]
    return out


def nft_tables(ns: str | None = None) -> set[str]:
    if not tool("nft"):
        return set()
    prefix = ["ip", "netns", "exec", ns] if ns else []
    p = run(prefix + ["nft", "list", "tables"], check=False)
    return {l.strip() for l in p.stdout.decode().splitlines() if l.startswith("table ")}


def drop_idle_tables(before: set[str]) -> None:
    """Delete the ``cnipy_*`` nftables tables (in the machine's namespace) that were not there
    before and hold no attachment any more (our plugins keep their empty skeleton tables)."""
    for t in sorted(nft_tables() - before):
        if "cnipy" not in t:
            continue
        p = run(["nft", "list"] + t.split(), check=False)
        if p.returncode == 0 and b'comment "cnipy:' not in p.stdout:
            run(["nft", "delete"] + t.split(), check=False)


def leases(data_dir: str, network: str) -> dict[str, str]:
    """host-local's leases of ``network``: address -> file content."""
    d = os.path.join(data_dir, network)
    out = {}
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f == "lock" or f.startswith("last_reserved_ip"):
                continue
            with open(os.path.join(d, f), newline="") as fh:
                out[f] = fh.read()
    return out


def sysctl_read(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctl_write(key: str, value: str) -> None:
    try:
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    except OSError:
        pass


HTTP_GET = ("import sys, urllib.request\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')\n")


def http_get(url: str, *, netns: str | None = None, deadline: float = 10) -> str:
    """GET ``url`` from the machine (or from named netns ``netns``), retrying until
    ``deadline`` seconds have passed (the server in the container may still be starting)."""
    argv = [sys.executable, "-I", "-c", HTTP_GET, url]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    end = time.monotonic() + deadline
    while True:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env={"PATH": PLAIN_PATH, "no_proxy": "*", "NO_PROXY": "*"})
        if p.returncode == 0 or time.monotonic() > end:
            break
        time.sleep(0.2)
    if p.returncode != 0:
        raise AssertionError(f"GET {url}{' in ' + netns if netns else ''} failed: {p.stderr.strip()[-500:]}")
    return p.stdout


def cleanup(*steps) -> None:
    """Run every step (callables), even when some fail; then raise the first failure."""
    first = None
    for step in steps:
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - every step runs; the first error is raised
            first = first or e
    if first:
        raise first


def retry(fn, *, deadline: float = 10, interval: float = 0.2):
    """``fn()`` until it returns without an AssertionError (its last one is raised)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > end:
                raise
            time.sleep(interval)


# ---------------------------------------------------------------- cgroups

def cgroup_dirs(name: str) -> list[str]:
    """``/sys/fs/cgroup/<hierarchy>/<name>`` (v1) and ``/sys/fs/cgroup/<name>`` (v2)."""
    base = "/sys/fs/cgroup"
    cands = [os.path.join(base, name)]
    if os.path.isdir(base):
        cands += [os.path.join(base, h, name) for h in os.listdir(base)]
    return [c for c in cands if os.path.isdir(c)]


def remove_cgroups(name: str) -> None:
    """Remove the (empty) cgroup trees named ``name`` that a runtime left behind."""
    for top in cgroup_dirs(name):
        for d, _, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ---------------------------------------------------------------- the private mount namespace

SHADOW_SH = r'''
m() { mount -n "$@"; }
# shadow DIR NAME...: DIR becomes a tmpfs showing DIR's entries except NAME..., which are
# left out (a runtime creating them creates them in the tmpfs, in this namespace only).
shadow() {
  d=$1; shift
  [ -d "$d" ] || return 0
  h="$R/shadow$d"; mkdir -p "$h"
  m --rbind "$d" "$h"
  for k in "$@"; do umount -n -R -l "$h/$k" 2>/dev/null || true; done
  m -t tmpfs -o mode=$(stat -c %a "$h") cnipy-shadow "$d"
  for e in "$h"/* "$h"/.[!.]* "$h"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/}
    for k in "$@"; do [ "$n" = "$k" ] && continue 2; done
    if [ -L "$e" ]; then cp -P "$e" "$d/$n"
    elif [ -d "$e" ]; then mkdir "$d/$n"; m --rbind "$e" "$d/$n"
    else : > "$d/$n"; m --bind "$e" "$d/$n"; fi
  done
}
# over SRC DIR: SRC is seen at DIR; a missing DIR is made in a shadow of its deepest
# existing ancestor.
over() {
  if [ ! -d "$2" ]; then
    c=$2
    while [ ! -d "$(dirname "$c")" ]; do c=$(dirname "$c"); done
    p=$(dirname "$c")
    [ "$p" != / ] || { echo "cannot place $2 without shadowing /" >&2; exit 97; }
    shadow "$p" "$(basename "$c")"; mkdir -p "$2"
  fi
  m --bind "$1" "$2"
}
'''


class PrivateMounts:
    """A private mount namespace (optionally inside network namespace ``netns``), set up by
    ``plan`` (shell lines using ``m``, ``shadow``, ``over``; ``$R`` is ``root``) and kept
    alive by ``argv`` (exec'd last: a daemon, or a sleeper)."""

    def __init__(self, root: str, plan: list[str], argv: list[str], *, netns: str | None = None,
                 env: dict | None = None, log: str = "ns.log") -> None:
        self.root = root
        self.log = os.path.join(root, log)
        ready = os.path.join(root, "ns.ready")
        script = ("set -e\n" + SHADOW_SH + "\n".join(plan) + f'\n: > {shlex.quote(ready)}\nexec "$@"\n')
        cmd = []
        if netns:
            cmd += ["nsenter", f"--net=/run/netns/{netns}"]
        cmd += ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "cnipy-ns"] + argv
        e = {"PATH": PLAIN_PATH, "R": root}
        e.update(env or {})
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(cmd, env=e, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise Unavailable(f"cannot set up a private mount namespace: {self.log_text()}")
            time.sleep(0.02)
        self.mntns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        self.netns = netns
        if self.mntns == os.readlink("/proc/self/ns/mnt"):  # stop() ends every member
            del self.mntns
            self.stop()
            raise AssertionError("unshare --mount left the keeper in our own mount namespace")

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:].strip()
        except OSError:
            return ""

    def cmd(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace (and its network namespace, if any)."""
        return ["nsenter", "-t", str(self.proc.pid), "-m"] + (["-n"] if self.netns else []) + ["--"] + argv

    def members(self) -> list[int]:
        """Processes in this mount namespace (all started by us, through it)."""
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != os.getpid():
                try:
                    if os.readlink(f"/proc/{p}/ns/mnt") == self.mntns:
                        pids.append(int(p))
                except OSError:
                    pass
        return pids

    def stop(self, grace: float = 10) -> None:
        """End the keeper (SIGTERM, then SIGKILL) and every process left in the namespace."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not hasattr(self, "mntns"):
            return
        end = time.monotonic() + 10
        while True:
            left = self.members()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > end:
                raise AssertionError(f"processes of the private namespace survive SIGKILL: {left}")
            time.sleep(0.05)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_tree(root: str) -> None:
    """rm -rf ``root`` unless something is still mounted under it in our own namespace."""
    real = os.path.realpath(root)
    with open("/proc/self/mountinfo") as f:
        mounted = [l.split()[4] for l in f if l.split()[4].startswith(real + "/") or l.split()[4] == real]
    if mounted:
        raise AssertionError(f"still mounted under {root}, not removing it: {mounted}")
    shutil.rmtree(root, ignore_errors=True)


def ulimits() -> list[str]:
    """nofile/nproc limits a container may have here: at most 1024, at most the hard limit
    (runtimes' defaults exceed this machine's hard limits)."""
    out = []
    for name, res in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(res)[1]
        v = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        out.append(f"{name}={v}:{v}")
    return out


# ---------------------------------------------------------------- podman

class Podman:
    """podman with a private configuration, storage and mount namespace; CNI backend on
    ``cni_bin``, networks from ``self.net_dir``."""

    def __init__(self, root: str, cni_bin: str) -> None:
        self.root = root
        self.net_dir = os.path.join(root, "cni-net.d")
        self.storage = os.path.join(root, "storage")
        for d in ("cni-net.d", "storage", "runroot", "tmp", "imgtmp", "home", "ipam"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        q = json.dumps
        conf = "\n".join([
            "[containers]",
            f"default_ulimits = {q(ulimits())}",
            "[network]",
            'network_backend = "cni"',
            f"cni_plugin_dirs = {q([cni_bin])}",
            f"network_config_dir = {q(self.net_dir)}",
            'default_network = "cnipy-none"',
            "[engine]",
            'runtime = "runc"',
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {q(os.path.join(root, 'events.log'))}",
            'lock_type = "file"',
            f"tmp_dir = {q(os.path.join(root, 'tmp'))}",
            f"static_dir = {q(os.path.join(self.storage, 'libpod'))}",
            f"volume_path = {q(os.path.join(self.storage, 'volumes'))}",
            f"image_copy_tmp_dir = {q(os.path.join(root, 'imgtmp'))}",
            "",
        ])
        storage = "\n".join([
            "[storage]",
            'driver = "vfs"',
            f"graphroot = {q(self.storage)}",
            f"runroot = {q(os.path.join(root, 'runroot'))}",
            "",
        ])
        with open(os.path.join(root, "containers.conf"), "w") as f:
            f.write(conf)
        with open(os.path.join(root, "storage.conf"), "w") as f:
            f.write(storage)
        with open(os.path.join(root, "registries.conf"), "w") as f:
            f.write("unqualified-search-registries = []\n")
        self.env = {"PATH": PLAIN_PATH, "HOME": os.path.join(root, "home"),
                    "CONTAINERS_CONF": os.path.join(root, "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": os.path.join(root, "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": os.path.join(root, "registries.conf")}
        self.ns = PrivateMounts(root, [f"shadow /run {' '.join(RUN_PRIVATE)}",
                                       f"shadow /var/lib {' '.join(VAR_LIB_PRIVATE)}"],
                                ["sleep", "infinity"])
        try:
            info = json.loads(self.podman("info", "--format", "json").stdout)
            store = info.get("store", {})
            if store.get("graphRoot") != self.storage or info["host"].get("networkBackend") != "cni":
                raise AssertionError(f"podman ignores the private configuration: {json.dumps(store)[:500]}")
        except BaseException:
            self.ns.stop()
            raise

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(self.ns.cmd(["podman"] + list(args)), env=self.env, check=check, timeout=timeout)

    def text(self, *args: str, check: bool = True) -> str:
        return self.podman(*args, check=check).stdout.decode()

    def ns_text(self, *argv: str) -> str:
        """stdout of a command run in podman's mount namespace (exit status ignored)."""
        return run(self.ns.cmd(list(argv)), check=False).stdout.decode()

    def import_image(self, tarball: str, name: str) -> None:
        self.podman("import", "--change", 'CMD ["/bin/sh"]', tarball, name)

    def remove_all(self) -> None:
        """Every container and image of this private storage."""
        self.podman("rm", "--all", "--force", "--time", "0", check=False)
        self.podman("rmi", "--all", "--force", check=False)

    def close(self) -> None:
        cleanup(self.remove_all, self.ns.stop)


# ---------------------------------------------------------------- containerd

CONTAINERD_CONF = """\
version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = {sock}
[ttrpc]
  address = {ttrpc}
[debug]
  address = ""
[metrics]
  address = ""
"""


class Containerd:
    """A private containerd in named network namespace ``netns``, in a private mount
    namespace where /opt/cni/bin is ``cni_bin``, /etc/cni/net.d is ``self.net_dir``,
    /usr/lib/cni (the reference plugins) is empty and /var/lib/cni is private."""

    def __init__(self, root: str, cni_bin: str, netns: str) -> None:
        self.root = root
        self.sock = os.path.join(root, "c.sock")
        self.net_dir = os.path.join(root, "net.d")
        self.namespace = f"cnipy-{short_id()}"
        for d in ("net.d", "stage", "empty", "cg", "ipam"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        q = json.dumps
        with open(os.path.join(root, "config.toml"), "w") as f:
            f.write(CONTAINERD_CONF.format(root=q(os.path.join(root, "root")), state=q(os.path.join(root, "state")),
                                           sock=q(self.sock), ttrpc=q(self.sock + ".ttrpc")))
        bins = shlex.quote(os.path.realpath(cni_bin))
        plan = [
            f'm --bind {bins} "$R/stage"',
            # A sysfs of this network namespace, keeping the machine's cgroup mounts (runc).
            'm --rbind /sys/fs/cgroup "$R/cg"', "m -t sysfs cnipy-sysfs /sys", 'm --move "$R/cg" /sys/fs/cgroup',
            f"shadow /run {' '.join(RUN_PRIVATE)}",
            f"shadow /var/lib {' '.join(VAR_LIB_PRIVATE)}",
            'over "$R/stage" /opt/cni/bin',
            'over "$R/net.d" /etc/cni/net.d',
            'if [ -d /usr/lib/cni ]; then m --bind "$R/empty" /usr/lib/cni; fi',
        ]
        self.ns = PrivateMounts(root, plan, ["containerd", "--config", os.path.join(root, "config.toml")],
                                netns=netns, log="containerd.log")
        self.runs: dict[str, subprocess.Popen] = {}
        try:
            retry(lambda: self.ctr("version"), deadline=15)
        except BaseException:
            self.ns.stop()
            raise

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(self.ns.cmd(["ctr", "-a", self.sock, "-n", self.namespace] + list(args)),
                   check=check, timeout=timeout)

    def text(self, *args: str, check: bool = True) -> str:
        return self.ctr(*args, check=check).stdout.decode()

    def in_ns(self, *argv: str, check: bool = True) -> str:
        """stdout of a command run in containerd's mount and network namespaces."""
        return run(self.ns.cmd(list(argv)), check=check).stdout.decode()

    def full_id(self, cid: str) -> str:
        """The CNI_CONTAINERID ``ctr`` uses: ``<namespace>-<id>``."""
        return f"{self.namespace}-{cid}"

    def start(self, image: str, cid: str, argv: list[str], *, cni: bool = True) -> subprocess.Popen:
        """``ctr run [--cni] --rm`` in the foreground (as ctr needs, to remove the network
        when the task ends); returns once the task runs (after the CNI ADD)."""
        out = open(os.path.join(self.root, f"ctr-{cid}.log"), "wb")
        cmd = self.ns.cmd(["ctr", "-a", self.sock, "-n", self.namespace, "run", "--rm",
                           "--snapshotter", "native"] + (["--cni"] if cni else []) + [image, cid] + argv)
        p = subprocess.Popen(cmd, env={"PATH": PLAIN_PATH}, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        out.close()
        self.runs[cid] = p

        def running():
            if p.poll() is not None:
                raise RuntimeError(f"ctr run {cid} exited {p.returncode}: {self.run_log(cid)}")
            tasks = self.text("task", "ls")
            assert any(l.split()[:1] == [cid] and "RUNNING" in l for l in tasks.splitlines()), tasks
        retry(running, deadline=30, interval=0.1)
        return p

    def run_log(self, cid: str) -> str:
        try:
            with open(os.path.join(self.root, f"ctr-{cid}.log"), errors="replace") as f:
                return f.read()[-3000:].strip()
        except OSError:
            return ""

    def exec(self, cid: str, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        return self.ctr("task", "exec", "--exec-id", f"x{short_id()}", cid, *argv, check=check)

    def stop(self, cid: str, timeout: float = 20) -> int:
        """Kill the task; the foreground ``ctr run`` then runs the CNI DEL and exits."""
        p = self.runs[cid]
        if p.poll() is None:
            self.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
        try:
            return p.wait(timeout)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)

    def close(self) -> None:
        # Shims live in the private mount namespace (they end with it); the containers under
        # them have their own: any left is ended by the pid its shim recorded.
        inits: list[int] = []
        cleanup(*[lambda c=cid: self.stop(c) for cid in list(self.runs)],
                self._remove_leftovers,
                lambda: inits.extend(self._init_pids()),
                self.ns.stop,
                lambda: [_kill(pid) for pid in inits],
                lambda: remove_cgroups(self.namespace))

    def _remove_leftovers(self) -> None:
        if self.ns.proc.poll() is None:
            for cid in self.text("task", "ls", "-q", check=False).split():
                self.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
                self.ctr("task", "delete", "--force", cid, check=False)
            for cid in self.text("container", "ls", "-q", check=False).split():
                self.ctr("container", "delete", cid, check=False)

    def _init_pids(self) -> list[int]:
        state = os.path.join(self.root, "state", "io.containerd.runtime.v2.task", self.namespace)
        pids = []
        if os.path.isdir(state):
            for cid in os.listdir(state):
                try:
                    with open(os.path.join(state, cid, "init.pid")) as f:
                        pids.append(int(f.read().strip()))
                except (OSError, ValueError):
                    pass
        return pids
