"""Real container runtimes for the end-to-end tests (tests/test_runtimes.py).

The private-runtime machinery lives in the conformance package (``conformance.runtimes``,
which the harness's CRI lane uses too) and is re-exported here: ``PrivateMounts`` (a private
mount namespace kept alive by one process), ``Containerd`` (a private daemon in a throwaway
network namespace, driven with ``ctr --cni``), the busybox image (``rootfs_tar``), and what
the kernel holds (``kernelstate``). What only these tests use stays here:

- ``Podman``: CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files under a temp directory
  (CNI backend, our plugin directory, our network config directory, runc, cgroupfs,
  file locks, vfs storage), in a ``PrivateMounts`` namespace; it runs in the machine's
  network namespace, the one allowed exception (unique bridge name and subnet, removed
  afterwards).
- ``conflist``: the chain both runtimes use here.
- ``copy_plugins``: the plugin directory a runtime gets: each plugin file copied alone into
  a fresh directory, as users install plugins (``cp``), never links into a build.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import subprocess

from conformance.runtimes.commands import (Unavailable, cleanup, ip_json, retry, run,
                                           short_id, tool)
from conformance.runtimes.containerd import Containerd
from conformance.runtimes.image import APPLETS, BUSYBOX, httpd_command, nc_get, rootfs_tar
from conformance.runtimes.kernelstate import (bridge_ports, drop_idle_tables, firewall_lines,
                                              firewall_mentions, http_get, leases, link_exists,
                                              nft_tables, pick_port, pick_subnet, sysctl_read,
                                              sysctl_write)
from conformance.runtimes.mounts import (RUN_PRIVATE, VAR_LIB_PRIVATE, PrivateMounts,
                                         cgroup_dirs, remove_cgroups, remove_tree)
from tests.helpers import PLAIN_PATH

# What tests/test_runtimes.py uses (``rt.<name>``): the moved machinery, re-exported, and ours.
__all__ = ["APPLETS", "BUSYBOX", "Containerd", "PLAIN_PATH", "Podman", "PrivateMounts", "RUN_PRIVATE",
           "Unavailable", "VAR_LIB_PRIVATE", "bridge_ports", "cgroup_dirs", "cleanup", "conflist",
           "copy_plugins", "drop_idle_tables", "firewall_lines", "firewall_mentions", "http_get", "httpd_command", "ip_json",
           "leases", "link_exists", "nc_get", "nft_tables", "pick_port", "pick_subnet", "remove_cgroups",
           "remove_tree", "retry", "rootfs_tar", "run", "short_id", "sysctl_read", "sysctl_write", "tool",
           "ulimits"]


def copy_plugins(src: str, dest: str) -> str:
    """Every plugin file of ``src`` copied one by one into the new directory ``dest`` (as
    ``cp -L``: a link is followed, the copy is the file itself); returns ``dest``. The
    runtimes then run plugins that stand alone, as after a user's ``cp`` into /opt/cni/bin."""
    os.makedirs(dest)
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        shutil.copyfile(path, os.path.join(dest, name))
        os.chmod(os.path.join(dest, name), 0o755)
    return dest


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
    ``cni_bin``, networks from ``self.net_dir``.

    ``netns``: a named network namespace (a throwaway "node") podman runs in, so the
    bridges, veths, firewall rules and host ports it makes are that namespace's; its mount
    namespace then also gets a sysfs of that network namespace (plugins and runc read
    ``/sys/class/net``), and ``/usr/lib/cni`` (the reference plugins) and ``/opt/cni/bin``
    are empty there: only ``cni_bin``'s plugins can run. Without it podman runs in the
    machine's network namespace (what tests/test_runtimes.py does)."""

    def __init__(self, root: str, cni_bin: str, *, netns: str | None = None) -> None:
        self.root = root
        self.netns = netns
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
        plan = [f"shadow /run {' '.join(RUN_PRIVATE)}", f"shadow /var/lib {' '.join(VAR_LIB_PRIVATE)}"]
        if netns:
            os.makedirs(os.path.join(root, "empty"), exist_ok=True)
            os.makedirs(os.path.join(root, "cg"), exist_ok=True)
            plan = [
                # A sysfs of this network namespace, keeping the machine's cgroup mounts (runc).
                'm --rbind /sys/fs/cgroup "$R/cg"', "m -t sysfs cnipy-sysfs /sys", 'm --move "$R/cg" /sys/fs/cgroup',
                *plan,
                'for d in /usr/lib/cni /opt/cni/bin; do if [ -d $d ]; then m --bind "$R/empty" $d; fi; done',
            ]
        # A later instance on the same root (storage and image kept) must wait for its own
        # namespace to be ready, not find the previous one's marker.
        if os.path.exists(os.path.join(root, "ns.ready")):
            os.unlink(os.path.join(root, "ns.ready"))
        self.ns = PrivateMounts(root, plan, ["sleep", "infinity"], netns=netns)
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
