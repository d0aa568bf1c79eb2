"""The drop-in binaries (build/freeze.py): what a user puts in /opt/cni/bin.

They answer VERSION and introduce themselves, run with no Python on the machine (a chroot
holding only the bundle and the system libraries it links), pass the conformance harness
with a stripped environment, and install next to other plugins without clobbering them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from plugins import names as plugin_names
from tests.helpers import PLAIN_PATH, ROOT, run_plugin

PLUGINS = tuple(plugin_names())  # the registry (plugins/__init__.py)
BUNDLE = "cni-py"


def _frozen(our_bin: str) -> str:
    bundle = os.path.join(our_bin, BUNDLE)
    if not os.path.isdir(bundle):
        pytest.fail(f"{our_bin} holds no PyInstaller bundle: run `make bin`", pytrace=False)
    return bundle


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_is_a_link_into_the_bundle_and_answers_version(our_bin, plugin):
    _frozen(our_bin)
    path = os.path.join(our_bin, plugin)
    assert os.readlink(path) == f"{BUNDLE}/cnipy"
    out = run_plugin(path, "VERSION", {"cniVersion": "1.1.0"})
    assert out.ok, out
    assert out.doc["cniVersion"] == "1.1.0"
    assert out.doc["supportedVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_without_cni_command_it_introduces_itself_on_stderr(our_bin, plugin):
    p = subprocess.run([os.path.join(our_bin, plugin)], env={"PATH": PLAIN_PATH}, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    text = p.stderr.decode()
    assert f"CNI {plugin} plugin" in text and "cni-py" in text, text
    assert "1.1.0" in text and "0.1.0" in text, text
    assert p.stdout == b""


def test_the_bundle_called_by_another_name_lists_its_plugins(our_bin):
    p = subprocess.run([os.path.join(_frozen(our_bin), "cnipy")], capture_output=True, timeout=30)
    assert p.returncode != 0 and b"host-local" in p.stderr and b"portmap" in p.stderr


def _libraries(paths: list[str]) -> set[str]:
    """System libraries (outside the bundle) the ELF files in ``paths`` load, per ldd."""
    libs: set[str] = set()
    for path in paths:
        p = subprocess.run(["ldd", path], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            for tok in parts:
                if tok.startswith("/") and os.path.exists(tok):
                    libs.add(tok)
    return libs


def test_runs_with_no_python_on_the_machine(our_bin, tmp_path):
    """A chroot with nothing but the bundle, the plugin links and the C libraries they
    load (glibc and friends): no interpreter, no standard library, no virtualenv."""
    bundle = _frozen(our_bin)
    root = tmp_path / "root"
    cni = root / "opt" / "cni" / "bin"
    cni.mkdir(parents=True)
    shutil.copytree(bundle, cni / BUNDLE, symlinks=True)
    for plugin in PLUGINS:
        os.symlink(f"{BUNDLE}/cnipy", cni / plugin)
    elfs = []
    for d, _, files in os.walk(cni / BUNDLE):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    elfs.append(p)
    for lib in _libraries(elfs):
        real = os.path.realpath(lib)
        for name in {lib, real}:  # the path ldd names, and what a symlink there points at
            dest = root / name.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(real, dest)
    (root / "tmp").mkdir()
    assert not any("python" in str(p.relative_to(root)).lower() for p in root.rglob("*")
               if not str(p.relative_to(root)).startswith("opt/cni")), \
        "the chroot must hold no Python"
    assert not (root / "usr" / "bin" / "python3").exists()
    env = {"PATH": "/opt/cni/bin", "CNI_CONTAINERID": "nopy", "CNI_NETNS": "/tmp", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin"}
    conf = json.dumps({"cniVersion": "1.1.0", "name": "nopy", "type": "host-local",
                       "ipam": {"type": "host-local", "subnet": "10.42.0.0/24", "dataDir": "/tmp/leases"}})

    def run(verb: str) -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/sbin/chroot", str(root), "/opt/cni/bin/host-local"], input=conf.encode(),
                              env=dict(env, CNI_COMMAND=verb), capture_output=True, timeout=60)

    add = run("ADD")
    assert add.returncode == 0, add
    assert json.loads(add.stdout)["ips"][0]["address"] == "10.42.0.2/24"
    assert (root / "tmp" / "leases" / "nopy" / "10.42.0.2").exists()
    dele = run("DEL")
    assert dele.returncode == 0 and dele.stdout == b"", dele
    assert not (root / "tmp" / "leases" / "nopy" / "10.42.0.2").exists()
    ver = subprocess.run(["/usr/sbin/chroot", str(root), "/opt/cni/bin/portmap"], input=b'{"cniVersion":"1.0.0"}',
                         env=dict(env, CNI_COMMAND="VERSION"), capture_output=True, timeout=60)
    assert ver.returncode == 0 and b"supportedVersions" in ver.stdout, ver


def test_conformance_harness_with_a_stripped_environment(our_bin, tmp_path):
    """The harness against the binaries, the harness itself started with nothing but a
    plain PATH in its environment (plugins get only CNI_* and that PATH)."""
    _frozen(our_bin)
    junit = tmp_path / "out.xml"
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", our_bin, "--junit", str(junit), "-q"],
                       cwd=ROOT, env={"PATH": PLAIN_PATH}, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and "failed" not in p.stdout, p.stdout[-2000:]


def _install(src: str, dest: str, force: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, FORCE="1" if force else "")
    return subprocess.run([sys.executable, os.path.join(ROOT, "build", "install.py"), src, dest],
                          capture_output=True, text=True, env=env)


def _dest_with(our_bin: str, tmp_path, name: str, text: str):
    """An install target (a fresh opt-cni-bin) already holding a foreign file ``name``."""
    _frozen(our_bin)
    dest = tmp_path / "opt-cni-bin"
    dest.mkdir()
    (dest / name).write_text(text)
    return dest


def _bundles(dest) -> list[str]:
    """The versioned bundles installed in ``dest``."""
    return [d for d in os.listdir(dest) if d.startswith(BUNDLE + "-")]


def test_install_puts_a_versioned_bundle_and_links_and_replaces_them_atomically(our_bin, tmp_path):
    dest = _dest_with(our_bin, tmp_path, "vendor-plugin", "someone else's plugin\n")
    p = _install(our_bin, str(dest))
    assert p.returncode == 0, p.stderr
    bundles = _bundles(dest)
    assert len(bundles) == 1
    for plugin in PLUGINS:
        assert os.readlink(dest / plugin) == f"{bundles[0]}/cnipy"
        out = run_plugin(str(dest / plugin), "VERSION", {"cniVersion": "1.0.0"})
        assert out.ok, out
    assert (dest / "vendor-plugin").read_text() == "someone else's plugin\n"
    # Reinstalling the same build keeps the bundle; a changed build replaces it.
    assert _install(our_bin, str(dest)).returncode == 0
    assert _bundles(dest) == bundles
    changed = tmp_path / "changed"
    shutil.copytree(our_bin, changed, symlinks=True)
    (changed / BUNDLE / "_internal" / "cnipy-marker").write_text("v2\n")
    assert _install(str(changed), str(dest)).returncode == 0
    after = _bundles(dest)
    assert len(after) == 1 and after != bundles
    assert os.readlink(dest / "bridge") == f"{after[0]}/cnipy"


def test_install_refuses_to_replace_a_foreign_plugin_of_the_same_name(our_bin, tmp_path):
    dest = _dest_with(our_bin, tmp_path, "bridge", "the distribution's bridge\n")
    p = _install(our_bin, str(dest))
    assert p.returncode != 0 and "refusing" in p.stderr
    assert (dest / "bridge").read_text() == "the distribution's bridge\n"
    assert not [d for d in os.listdir(dest) if d.startswith(BUNDLE)]
