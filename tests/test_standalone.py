"""Every plugin file of the drop-in build stands alone (build/standalone.py).

What a user does with a CNI plugin is copy the file: ``cp dist/bin/host-local
/opt/cni/bin/``, an install container's ``cp /plugins/* /host/opt/cni/bin/``, a package
recipe. Each file here is copied alone (``cp -L``), under another name, into a fresh
directory or into a chroot that holds nothing of ours but copied plugin files and no
Python at all, and must run there as the plugin it carries: the conformance harness's
generic suite against each plugin in its own chroot, and a bridge -> portmap chain with
host-local through libcni (the Go library runtimes embed). A file that cannot start its
plugin (truncated, corrupt, assembled from two builds) answers with a CNI error document
(code 999) on stdout, not an interpreter's traceback.

Which build runs: ``dist/bin`` (the ``our_bin`` fixture) unless ``CNIPY_TEST_BIN_DIR``
names another directory of standalone files (e.g. ``build/standalone.py /tmp/x``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from conformance.libcni import LibCNI, write_conflist
from conformance.libcni import build as build_driver
from plugins import names as plugin_names
from tests.helpers import PLAIN_PATH, ROOT, Netns, ip_json, run_plugin, unique
from tests.standalone_chroot import StandaloneRoot, copy_alone

sys.path.insert(0, os.path.join(ROOT, "build"))
import payload

pytestmark = pytest.mark.root

PLUGINS = tuple(plugin_names())
GLIBC = ("linux-vdso.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2")
# The IPAM plugin each interface plugin's harness profile delegates to (conformance/profiles.py).
DELEGATES = {"bridge": "host-local", "macvlan": "host-local", "ipvlan": "host-local", "vlan": "host-local"}


@pytest.fixture(scope="module")
def files(request) -> str:
    """The directory of standalone plugin files under test."""
    d = os.environ.get("CNIPY_TEST_BIN_DIR") or request.getfixturevalue("our_bin")
    missing = [p for p in PLUGINS if not os.path.isfile(os.path.join(d, p))]
    if missing:
        pytest.fail(f"{d} lacks {', '.join(missing)}: run `make bin`", pytrace=False)
    return d


def _call(path: str, verb: str = "VERSION", conf: bytes = b'{"cniVersion":"1.0.0"}',
          env: dict | None = None, argv: list[str] | None = None) -> subprocess.CompletedProcess:
    e = {"PATH": PLAIN_PATH, "CNI_COMMAND": verb}
    e.update(env or {})
    return subprocess.run(argv or [path], input=conf, env=e, capture_output=True, timeout=60)


# -- one file per plugin ----------------------------------------------------------------------

@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_is_one_file_that_links_only_glibc(files, plugin):
    path = os.path.join(files, plugin)
    assert not os.path.islink(path) and os.path.isfile(path) and os.access(path, os.X_OK)
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF"
    carried, mods = payload.read(data)
    assert carried == plugin, "the file names the plugin it carries"
    assert f"plugins.{plugin}.main" in mods and "__cnipy_main__" in mods
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = {line.split()[0] for line in ldd.splitlines() if line.strip()}
    assert libs <= {*GLIBC, "/lib64/ld-linux-x86-64.so.2"}, ldd


def test_the_directory_holds_plugin_files_only(files):
    """No bundle, no links, no support directory next to the plugins."""
    entries = sorted(os.listdir(files))
    assert entries == sorted(PLUGINS), entries


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_renamed_copy_runs_the_plugin_it_carries(files, plugin, tmp_path):
    """``cp -L bridge /opt/cni/bin/10-bridge``: the name does not matter, nothing next to it."""
    d = tmp_path / "fresh"
    d.mkdir()
    copy = str(d / f"10-{plugin}-copy")
    copy_alone(os.path.join(files, plugin), copy)
    assert os.listdir(d) == [os.path.basename(copy)]
    out = run_plugin(copy, "VERSION", {"cniVersion": "1.1.0"})
    assert out.ok and out.doc["cniVersion"] == "1.1.0", out
    assert "0.1.0" in out.doc["supportedVersions"] and "1.1.0" in out.doc["supportedVersions"]
    intro = subprocess.run([copy], env={"PATH": PLAIN_PATH}, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=30)
    assert f"CNI {plugin} plugin" in intro.stderr.decode() and intro.stdout == b"", intro


def test_python_environment_variables_change_nothing(files, tmp_path):
    """Isolated: PYTHONPATH, PYTHONHOME & co. (a module of the same name on that path, a
    start-up file, verbose imports) neither break nor alter a plugin."""
    evil = tmp_path / "evil"
    (evil / "cnilib").mkdir(parents=True)
    (evil / "cnilib" / "__init__.py").write_text("raise SystemExit('imported from PYTHONPATH')\n")
    (evil / "startup.py").write_text("print('startup ran')\n")
    path = os.path.join(files, "host-local")
    plain = _call(path)
    env = {"PYTHONPATH": str(evil), "PYTHONHOME": str(evil), "PYTHONSTARTUP": str(evil / "startup.py"),
           "PYTHONVERBOSE": "1", "PYTHONINSPECT": "1", "PYTHONDONTWRITEBYTECODE": "", "PYTHONUTF8": "0",
           "PYTHONWARNINGS": "error", "PYTHONSAFEPATH": "0"}
    p = _call(path, env=env)
    assert p.returncode == 0 and p.stdout == plain.stdout and p.stderr == b"", p
    assert not list(tmp_path.rglob("__pycache__")), "nothing is written next to any module"


def test_every_call_reads_no_other_file_of_ours(files):
    """No unpacking, no module files: the only file of ours a call opens is itself
    (strace of a VERSION and of a host-local ADD)."""
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    path = os.path.join(files, "host-local")
    p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat,creat,mkdir,execve", path],
                       input=b'{"cniVersion":"1.0.0"}', env={"PATH": PLAIN_PATH, "CNI_COMMAND": "VERSION"},
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p
    opened = [line for line in p.stderr.decode().splitlines() if "open" in line or "creat" in line or "mkdir" in line]
    ours = [line for line in opened if ROOT in line or files in line or "/tmp" in line]
    writes = [line for line in opened if "O_WRONLY" in line or "O_RDWR" in line or "O_CREAT" in line
              or "creat(" in line or "mkdir(" in line]
    assert not ours and not writes, "\n".join(ours + writes)
    assert any("/proc/self/exe" in line for line in opened), opened  # its own payload, mapped


# -- a file that cannot start its plugin: code 999 ---------------------------------------------

def _assert_999(p: subprocess.CompletedProcess, words: str) -> None:
    assert p.returncode == 1, p
    doc = json.loads(p.stdout)
    assert doc["code"] == 999 and doc["cniVersion"] == "1.0.0", doc
    assert words in doc["msg"], doc["msg"]


def _variant(files: str, tmp_path, name: str, change) -> str:
    """A copy of host-local with ``change(bytearray)`` applied."""
    with open(os.path.join(files, "host-local"), "rb") as f:
        data = bytearray(f.read())
    data = change(data)
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)
    return path


def test_a_truncated_copy_answers_with_code_999(files, tmp_path):
    for cut in (1, 1000, 200_000):
        path = _variant(files, tmp_path, f"cut{cut}", lambda d, c=cut: d[:-c])
        _assert_999(_call(path, "ADD"), "truncated or corrupt")


def test_a_corrupt_module_index_answers_with_code_999(files, tmp_path):
    def flip_index(d: bytearray) -> bytearray:
        t = payload.TRAILER.unpack(bytes(d[-payload.TRAILER.size:]))
        start = len(d) - t[1]
        d[start + t[2] + 5] ^= 0xFF
        return d
    _assert_999(_call(_variant(files, tmp_path, "index", flip_index), "ADD"), "checksum")


def test_a_payload_from_another_build_answers_with_code_999(files, tmp_path):
    def other_build(d: bytearray) -> bytearray:
        d[-payload.TRAILER.size] ^= 0xFF  # the first byte of the build id
        return d
    _assert_999(_call(_variant(files, tmp_path, "other", other_build), "ADD"), "another build")


def test_a_corrupt_plugin_module_answers_with_code_999(files, tmp_path):
    """The plugin's own main module unreadable: the boot module answers, naming the error."""
    def garble(d: bytearray) -> bytearray:
        mods = payload.read(bytes(d))[1]
        code = mods["plugins.host-local.main"][0]
        at = bytes(d).rindex(code, 0, len(d) - payload.TRAILER.size)
        d[at:at + len(code)] = b"\x00" * len(code)
        return d
    p = _call(_variant(files, tmp_path, "garbled", garble), "ADD")
    _assert_999(p, "cannot load the plugin")
    assert b"Traceback" not in p.stderr


# -- alone in a chroot: no Python, nothing of ours but the copied files --------------------------

def _harness(cni_path: str, plugin: str, tmp_path, tmpdir: str) -> tuple[subprocess.CompletedProcess, dict]:
    junit = tmp_path / f"{plugin}.xml"
    env = {"PATH": PLAIN_PATH, "TMPDIR": tmpdir, "CNIPY_NS_TAG": os.environ.get("CNIPY_NS_TAG", "")}
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", cni_path, "--plugins", plugin,
                        "--suites", "generic", "--reference", "", "--junit", str(junit), "-q"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            kind = "failed" if case.find("failure") is not None or case.find("error") is not None else \
                "skipped" if case.find("skipped") is not None else "passed"
            counts[kind] += 1
    return p, counts


@pytest.fixture
def short_dir():
    """The harness's TMPDIR, shared with the chroot: a short path, since the dhcp world's
    unix sockets live under it (108 bytes at most)."""
    d = tempfile.mkdtemp(prefix="cnisa-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("plugin", PLUGINS)
def test_generic_suite_with_the_plugin_alone_in_a_chroot(files, plugin, tmp_path, short_dir):
    """The harness's generic suite against one copied file in a chroot without Python (and,
    for an interface plugin, the IPAM plugin it delegates to, copied alone too)."""
    shared = short_dir
    delegate = DELEGATES.get(plugin)
    root = StandaloneRoot(str(tmp_path / "node"), {plugin: os.path.join(files, plugin)},
                          {delegate: os.path.join(files, delegate)} if delegate else None, shared=(str(shared),))
    assert root.python_files() == []
    assert [os.path.basename(p) for p in root.ours()] == sorted([f"copied-{plugin}"] + ([delegate] if delegate else []))
    p, counts = _harness(root.wrappers, plugin, tmp_path, str(shared))
    assert p.returncode == 0 and counts["failed"] == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert counts["passed"] > 0, (counts, p.stdout[-2000:])


@pytest.fixture
def chain_root(files, tmp_path):
    """bridge, host-local and portmap copied alone under other names into one chroot."""
    shared = tmp_path / "data"
    shared.mkdir()
    kinds = ("bridge", "host-local", "portmap")
    root = StandaloneRoot(str(tmp_path / "node"), {k: os.path.join(files, k) for k in kinds},
                          {"host-local": os.path.join(files, "host-local")}, shared=(str(shared),), prefix="99-")
    assert root.python_files() == []
    return root, str(shared)


def test_libcni_add_del_of_a_chain_in_a_chroot(chain_root, tmp_path):
    """bridge (gateway, masquerade, host-local) -> portmap (one mapping) through libcni:
    the kernel holds the bridge, the veth and the lease after ADD, nothing after DEL."""
    root, data = chain_root
    conf, cache = str(tmp_path / "conf"), str(tmp_path / "cache")
    net, br = unique("sa"), unique("sbr")
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 200}"
    write_conflist(conf, net, [
        {"type": "bridge", "bridge": br, "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24", "dataDir": data}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ])
    host, ctr = Netns("csah"), Netns("csac")
    try:
        cni = LibCNI([root.wrappers], conf, cache, driver=build_driver(), in_netns=host.name)
        cid = unique("c")
        maps = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
        add = cni.add(net, ctr.path, container_id=cid, cap_args=maps)
        assert add.ok, add
        addr = add.doc["ips"][0]["address"]
        assert addr.startswith(f"{subnet}.") and os.path.exists(os.path.join(data, net, addr.split("/")[0]))
        assert [l["ifname"] for l in ip_json("link", "show", "dev", br, ns=host.name)] == [br]
        assert any(a.get("local") == addr.split("/")[0] for l in ip_json("addr", "show", "dev", "eth0", ns=ctr.name)
                   for a in l.get("addr_info", []))
        rules = subprocess.run(["ip", "netns", "exec", host.name, "nft", "list", "ruleset"], capture_output=True,
                               text=True).stdout
        assert "18080" in rules, rules
        dele = cni.delete(net, ctr.path, container_id=cid, cap_args=maps)
        assert dele.ok, dele
        assert not os.path.exists(os.path.join(data, net, addr.split("/")[0]))
        assert [l["ifname"] for l in ip_json("link", "show", ns=ctr.name)] == ["lo"]
        assert [l["ifname"] for l in ip_json("link", "show", "master", br, ns=host.name)] == []
        rules = subprocess.run(["ip", "netns", "exec", host.name, "nft", "list", "ruleset"], capture_output=True,
                               text=True).stdout
        assert "18080" not in rules, rules
    finally:
        ctr.delete()
        host.delete()


def test_the_dhcp_file_also_runs_the_daemon(files, tmp_path):
    """``<copy> daemon ...``: the dhcp file's second role, from a renamed copy; the plugin
    (another copy) reaches it (STATUS), and SIGTERM ends it."""
    d = tmp_path / "bin"
    d.mkdir()
    daemon_file, plugin_file = str(d / "cni-dhcp-daemon"), str(d / "dhcp-plugin")
    copy_alone(os.path.join(files, "dhcp"), daemon_file)
    copy_alone(os.path.join(files, "dhcp"), plugin_file)
    sock = str(tmp_path / "dhcp.sock")
    proc = subprocess.Popen([daemon_file, "daemon", "-socketpath", sock, "-statedir", str(tmp_path / "state")],
                            env={"PATH": PLAIN_PATH}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert os.path.exists(sock), proc.communicate(timeout=5) if proc.poll() is not None else "no socket"
        conf = {"cniVersion": "1.1.0", "name": "dn", "type": "dhcp", "ipam": {"type": "dhcp", "daemonSocketPath": sock}}
        out = run_plugin(plugin_file, "STATUS", conf)
        assert out.ok, out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- a new plugin folder gets its standalone file ----------------------------------------------

ECHO = '''from cnilib import skel

# The verb lives in echo/add.py, imported when it runs: the file must carry it anyway.
PLUGIN = skel.Plugin("echo", "chained", add=skel.verb(__package__, "add:add"))


def main() -> None:
    skel.run(PLUGIN)
'''


def test_a_new_plugin_folder_gets_its_own_file(tmp_path):
    """Adding a plugin is adding a folder: build/standalone.py, run in a copy of the tree
    with plugins/echo, makes an ``echo`` file that carries echo and runs it."""
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in ("cnilib", "plugins", "build"):
        shutil.copytree(os.path.join(ROOT, top), tree / top, ignore=ignore)
    os.symlink(os.path.join(ROOT, ".cache"), tree / ".cache")  # the CPython sources, fetched once
    (tree / "plugins" / "echo").mkdir()
    (tree / "plugins" / "echo" / "__init__.py").write_text("")
    (tree / "plugins" / "echo" / "main.py").write_text(ECHO)
    (tree / "plugins" / "echo" / "add.py").write_text("def add(cmd):\n    return cmd.conf.prev_result()\n")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(tree / "build" / "standalone.py"), str(out), "echo"], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert os.listdir(out) == ["echo"]
    copy = str(tmp_path / "renamed")
    copy_alone(str(out / "echo"), copy)
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}], "dns": {}}
    res = run_plugin(copy, "ADD", {"cniVersion": "1.0.0", "name": "n", "type": "echo", "prevResult": prev},
                     containerid="c1", netns="/var/run/netns/unused", ifname="eth0")
    assert res.ok and res.doc == prev, res
