"""`make install`'s installer, and the start-up budget of the standard-library plugins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

INSTALL = os.path.join(ROOT, "build", "install.py")


def _install(src, dest, force=False):
    env = dict(os.environ, FORCE="1" if force else "")
    return subprocess.run([sys.executable, INSTALL, str(src), str(dest)], capture_output=True, text=True, env=env)


def test_install_refuses_foreign_files_unless_forced(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "host-local").write_text("#!/bin/sh\necho ours\n")
    (dest / "host-local").write_text("someone else's plugin\n")
    p = _install(src, dest)
    assert p.returncode != 0 and "refusing" in p.stderr
    assert (dest / "host-local").read_text() == "someone else's plugin\n"
    p = _install(src, dest, force=True)
    assert p.returncode == 0, p.stderr
    assert (dest / "host-local").read_text() == "#!/bin/sh\necho ours\n"
    assert os.access(dest / "host-local", os.X_OK)


def test_install_updates_its_own_files_but_not_changed_ones(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "loopback").write_text("v1\n")
    assert _install(src, dest).returncode == 0
    (src / "loopback").write_text("v2\n")
    assert _install(src, dest).returncode == 0, "reinstalling over our own unchanged file must work"
    assert (dest / "loopback").read_text() == "v2\n"
    (dest / "loopback").write_text("edited by hand\n")
    assert _install(src, dest).returncode != 0, "a file changed since we installed it is not ours any more"


# Modules whose import would blow the start-up budget of host-local and loopback.
HEAVY = ("pyroute2", "json", "ipaddress", "re", "typing", "dataclasses", "subprocess", "threading",
         "ctypes", "socket", "enum", "os")


@pytest.mark.parametrize("plugin,verb", [("host-local", "ADD"), ("host-local", "DEL"), ("host-local", "GC"),
                                         ("loopback", "ADD"), ("loopback", "DEL"), ("loopback", "CHECK")])
def test_standard_library_plugins_stay_lean(src_bin, tmp_path, netns, plugin, verb):
    """host-local and loopback never import pyroute2, nor the heavy stdlib modules the
    README's start-up budget rules out (measured with -X importtime, not timed)."""
    conf = ('{"cniVersion":"1.1.0","name":"lean","type":"%s","ipam":{"type":"host-local","subnet":"10.9.9.0/24",'
            '"dataDir":"%s"}}' % (plugin, tmp_path))
    with open(os.path.join(src_bin, plugin)) as f:
        python = f.readline()[2:].split()[0]
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": "lean1", "CNI_NETNS": netns.path,
           "CNI_IFNAME": "lo" if plugin == "loopback" else "eth0", "CNI_PATH": src_bin}
    if verb == "CHECK":
        netns.run("ip", "link", "set", "lo", "up")
        conf = conf[:-1] + ',"prevResult":{"cniVersion":"1.1.0","dns":{}}}'
    if verb == "GC":
        conf = conf[:-1] + ',"cni.dev/valid-attachments":[]}'
    p = subprocess.run([python, "-X", "importtime", "-IS", os.path.join(src_bin, plugin)], input=conf.encode(),
                       env=env, capture_output=True)
    assert p.returncode == 0, p
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines() if line.startswith("import time:")}
    assert imported, "no import trace"
    assert not imported & set(HEAVY), f"{plugin} {verb} imported {sorted(imported & set(HEAVY))}"
    assert not any(m.startswith("pyroute2") for m in imported)


def test_install_copies_the_file_a_link_points_at(tmp_path):
    """A plugin given as a link is installed as the file itself: every installed plugin
    stands alone."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (tmp_path / "real-bridge").write_text("#!/bin/sh\necho bridge\n")
    os.symlink(tmp_path / "real-bridge", src / "bridge")
    assert _install(src, dest).returncode == 0
    assert not os.path.islink(dest / "bridge")
    assert (dest / "bridge").read_text() == "#!/bin/sh\necho bridge\n"
