"""The drop-in binaries (build/standalone.py): what a user puts in /opt/cni/bin.

One self-contained file per plugin: it answers VERSION and introduces itself, runs with no
Python on the machine (a chroot holding only the copied files and the C libraries they
link, without even /proc), passes the conformance harness with a stripped environment, and
installs next to other plugins without clobbering them. tests/test_standalone.py copies
each file alone under other names into chroots and runs the harness and libcni there.
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


def _file(our_bin: str, plugin: str) -> str:
    path = os.path.join(our_bin, plugin)
    if not os.path.isfile(path) or os.path.islink(path):
        pytest.fail(f"{path} is not a standalone plugin file: run `make bin`", pytrace=False)
    return path


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_is_a_file_of_its_own_and_answers_version(our_bin, plugin):
    out = run_plugin(_file(our_bin, plugin), "VERSION", {"cniVersion": "1.1.0"})
    assert out.ok, out
    assert out.doc["cniVersion"] == "1.1.0"
    assert out.doc["supportedVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_without_cni_command_it_introduces_itself_on_stderr(our_bin, plugin):
    p = subprocess.run([_file(our_bin, plugin)], env={"PATH": PLAIN_PATH}, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    text = p.stderr.decode()
    assert f"CNI {plugin} plugin" in text and "cni-py" in text, text
    assert "1.1.0" in text and "0.1.0" in text, text
    assert p.stdout == b""


def _libraries(path: str) -> set[str]:
    """System libraries the ELF file ``path`` loads, per ldd."""
    p = subprocess.run(["ldd", path], capture_output=True, text=True)
    return {tok for line in p.stdout.splitlines() for tok in line.split()
            if tok.startswith("/") and os.path.exists(tok)}


def test_runs_with_no_python_on_the_machine(our_bin, tmp_path):
    """A chroot with nothing but the plugin files (copied one by one) and the C libraries
    they load (glibc): no interpreter, no standard library, no virtualenv, and no /proc (the
    file finds its own payload through the path it was executed by)."""
    root = tmp_path / "root"
    cni = root / "opt" / "cni" / "bin"
    cni.mkdir(parents=True)
    for plugin in PLUGINS:
        shutil.copyfile(_file(our_bin, plugin), cni / plugin)
        os.chmod(cni / plugin, 0o755)
    for lib in _libraries(str(cni / "host-local")):
        real = os.path.realpath(lib)
        for name in {lib, real}:  # the path ldd names, and what a symlink there points at
            dest = root / name.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(real, dest)
    (root / "tmp").mkdir()
    assert not any("python" in str(p.relative_to(root)).lower() for p in root.rglob("*")), \
        "the chroot must hold no Python"
    assert not (root / "proc").exists()
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
    for plugin in PLUGINS:
        ver = subprocess.run(["/usr/sbin/chroot", str(root), f"/opt/cni/bin/{plugin}"],
                             input=b'{"cniVersion":"1.0.0"}', env=dict(env, CNI_COMMAND="VERSION"),
                             capture_output=True, timeout=60)
        assert ver.returncode == 0 and b"supportedVersions" in ver.stdout, (plugin, ver)


def test_conformance_harness_with_a_stripped_environment(our_bin, tmp_path):
    """The harness against the binaries, the harness itself started with nothing but a
    plain PATH in its environment (plugins get only CNI_* and that PATH)."""
    junit = tmp_path / "out.xml"
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", our_bin, "--junit", str(junit), "-q"],
                       cwd=ROOT, env={"PATH": PLAIN_PATH}, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and "failed" not in p.stdout, p.stdout[-2000:]


def _install(src: str, dest: str, force: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, FORCE="1" if force else "")
    return subprocess.run([sys.executable, os.path.join(ROOT, "build", "install.py"), src, dest],
                          capture_output=True, text=True, env=env)


def _dest_with(tmp_path, name: str, text: str):
    """An install target (a fresh opt-cni-bin) already holding a foreign file ``name``."""
    dest = tmp_path / "opt-cni-bin"
    dest.mkdir()
    (dest / name).write_text(text)
    return dest


def test_install_puts_one_file_per_plugin_and_replaces_them_atomically(our_bin, tmp_path):
    dest = _dest_with(tmp_path, "vendor-plugin", "someone else's plugin\n")
    p = _install(our_bin, str(dest))
    assert p.returncode == 0, p.stderr
    for plugin in PLUGINS:
        path = dest / plugin
        assert path.is_file() and not path.is_symlink()
        with open(path, "rb") as a, open(os.path.join(our_bin, plugin), "rb") as b:
            assert a.read() == b.read()
        out = run_plugin(str(path), "VERSION", {"cniVersion": "1.0.0"})
        assert out.ok, out
    assert (dest / "vendor-plugin").read_text() == "someone else's plugin\n"
    assert sorted(os.listdir(dest)) == sorted([*PLUGINS, "vendor-plugin", ".cni-py-manifest"])
    # Reinstalling the same build works; a changed build replaces the file by a new inode
    # (rename), so a process that opened the old one keeps reading it whole.
    assert _install(our_bin, str(dest)).returncode == 0
    before = os.stat(dest / "bridge").st_ino
    changed = tmp_path / "changed"
    changed.mkdir()
    for plugin in PLUGINS:
        shutil.copyfile(os.path.join(our_bin, plugin), changed / plugin)
    with open(changed / "bridge", "ab") as f:  # a different file (it would not run: no trailer at its end)
        f.write(b"v2")
    assert _install(str(changed), str(dest)).returncode == 0
    assert os.stat(dest / "bridge").st_ino != before
    assert (dest / "bridge").read_bytes().endswith(b"v2")
    assert not [n for n in os.listdir(dest) if n.endswith(".cni-py-tmp")]


def test_install_replaces_the_previous_bundle_layout(our_bin, tmp_path):
    """Over an install of the old layout (a cni-py-<hash>/ bundle and links into it), the
    links become files and the bundle goes."""
    dest = tmp_path / "opt-cni-bin"
    (dest / "cni-py-0123abcd").mkdir(parents=True)
    (dest / "cni-py-0123abcd" / "cnipy").write_text("old\n")
    lines = ["cni-py-0123abcd dir\n"]
    for plugin in PLUGINS:
        os.symlink("cni-py-0123abcd/cnipy", dest / plugin)
        lines.append(f"{plugin} link:cni-py-0123abcd/cnipy\n")
    (dest / ".cni-py-manifest").write_text("".join(lines))
    p = _install(our_bin, str(dest))
    assert p.returncode == 0, p.stderr
    assert not (dest / "cni-py-0123abcd").exists()
    for plugin in PLUGINS:
        assert (dest / plugin).is_file() and not (dest / plugin).is_symlink()
    assert "dir" not in (dest / ".cni-py-manifest").read_text()


def test_install_refuses_to_replace_a_foreign_plugin_of_the_same_name(our_bin, tmp_path):
    dest = _dest_with(tmp_path, "bridge", "the distribution's bridge\n")
    p = _install(our_bin, str(dest))
    assert p.returncode != 0 and "refusing" in p.stderr
    assert (dest / "bridge").read_text() == "the distribution's bridge\n"
    assert sorted(os.listdir(dest)) == ["bridge"]
