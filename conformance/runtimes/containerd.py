"""A private containerd: own root, state, socket and config, in a private mount namespace
inside a throwaway named network namespace, so nothing of the machine changes.

In its mount namespace ``/opt/cni/bin`` is the plugin directory under test, ``/etc/cni/net.d``
is ``net_dir``, ``/usr/lib/cni`` (Debian's reference plugins) is empty, and ``/run``'s and
``/var/lib``'s runtime entries (``netns``, ``containerd``, ``cni``: libcni's cache and
host-local's default lease store...) are private. ``ctr`` drives it (``ctr run --cni``); with
``cri`` settings its CRI plugin is on too (the socket then speaks CRI, see ``cri_client``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass

from conformance.runtimes.commands import cleanup, kill_pid, retry, run, short_id
from conformance.runtimes.mounts import RUN_PRIVATE, VAR_LIB_PRIVATE, PrivateMounts, remove_cgroups
from conformance.proc import PLAIN_PATH

# Plugins of containerd we never use (and whose start-up would touch the machine).
UNUSED_PLUGINS = ["io.containerd.internal.v1.opt",
                  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
CRI_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_NAMESPACE = "k8s.io"  # the containerd namespace CRI keeps its pods and images in


CONTAINERD_CONF = """\
version = 2
root = {root}
state = {state}
disabled_plugins = {disabled}
[grpc]
  address = {sock}
[ttrpc]
  address = {ttrpc}
[debug]
  address = ""
[metrics]
  address = ""
"""

# The CRI plugin as a node runs it, on what this machine allows: no image is pulled (the
# sandbox image is imported), the native snapshotter (no overlayfs needed), runc with
# cgroupfs; root lacks CAP_SYS_RESOURCE here (restrict_oom_score_adj) and the kernel has no
# AppArmor (disable_apparmor); the network is the first conflist of /etc/cni/net.d with the
# plugins of /opt/cni/bin, as on a Kubernetes node.
CRI_CONF = """\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox_image}
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""


@dataclass
class CriSettings:
    """What the CRI plugin needs from us: the sandbox image (imported, never pulled)."""

    sandbox_image: str


class Containerd:
    """A private containerd in named network namespace ``netns``, in a private mount
    namespace where /opt/cni/bin is ``cni_bin``, /etc/cni/net.d is ``self.net_dir``,
    /usr/lib/cni (the reference plugins) is empty and /var/lib/cni is private; with ``cri``
    its CRI plugin serves the socket too (containerd namespace ``k8s.io``).

    ``extra_bin``: a directory of plugins added to ``cni_bin``'s there (a read-only overlay,
    so ``cni_bin`` is seen whole, its bundles and relative links included, and never
    written to); a plugin of both is ``extra_bin``'s."""

    def __init__(self, root: str, cni_bin: str, netns: str, *, cri: CriSettings | None = None,
                 extra_bin: str | None = None) -> None:
        self.root = root
        self.sock = os.path.join(root, "c.sock")
        self.net_dir = os.path.join(root, "net.d")
        self.namespace = CRI_NAMESPACE if cri else f"cnipy-{short_id()}"
        # cgroup trees (by name, under each hierarchy) that close() removes once empty: ctr's
        # containers go under /<namespace>; CRI's under the cgroup parent each pod names
        # (its owner adds it), never under a machine-wide name such as /k8s.io.
        self.cgroup_names = [] if cri else [self.namespace]
        for d in ("net.d", "stage", "merged", "empty", "cg", "ipam"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        q = json.dumps
        disabled = UNUSED_PLUGINS if cri else [CRI_PLUGIN] + UNUSED_PLUGINS
        conf = CONTAINERD_CONF.format(root=q(os.path.join(root, "root")), state=q(os.path.join(root, "state")),
                                      disabled=q(disabled), sock=q(self.sock), ttrpc=q(self.sock + ".ttrpc"))
        if cri:
            conf += CRI_CONF.format(sandbox_image=q(cri.sandbox_image))
        with open(os.path.join(root, "config.toml"), "w") as f:
            f.write(conf)
        bins = shlex.quote(os.path.realpath(cni_bin))
        if extra_bin:
            extra = os.path.realpath(extra_bin)
            if ":" in extra or "," in extra:
                raise ValueError(f"{extra}: an overlay's lower directory cannot hold ':' or ','")
            add_extra = [f'm -t overlay -o lowerdir={shlex.quote(extra)}:"$R/stage" cnipy-cni-bin "$R/merged"']
            bin_dir = "$R/merged"
        else:
            add_extra, bin_dir = [], "$R/stage"
        plan = [
            f'm --bind {bins} "$R/stage"', *add_extra,
            # A sysfs of this network namespace, keeping the machine's cgroup mounts (runc).
            'm --rbind /sys/fs/cgroup "$R/cg"', "m -t sysfs cnipy-sysfs /sys", 'm --move "$R/cg" /sys/fs/cgroup',
            f"shadow /run {' '.join(RUN_PRIVATE)}",
            f"shadow /var/lib {' '.join(VAR_LIB_PRIVATE)}",
            f'over "{bin_dir}" /opt/cni/bin',
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
        """``ctr`` on this daemon's socket and namespace, inside its namespaces."""
        return run(self.ns.cmd(["ctr", "-a", self.sock, "-n", self.namespace] + list(args)),
                   check=check, timeout=timeout)

    def text(self, *args: str, check: bool = True) -> str:
        """``ctr``'s stdout."""
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
        """End every container, the daemon and its mount namespace; remove its cgroups."""
        # Shims live in the private mount namespace (they end with it); the containers under
        # them have their own: any left is ended by the pid its shim recorded.
        inits: list[int] = []
        cleanup(*[lambda c=cid: self.stop(c) for cid in list(self.runs)],
                self._remove_leftovers,
                lambda: inits.extend(self._init_pids()),
                self.ns.stop,
                lambda: [kill_pid(pid) for pid in inits],
                *[lambda n=n: remove_cgroups(n) for n in self.cgroup_names])

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
