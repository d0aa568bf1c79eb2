"""Adding a plugin is adding one folder: in a temporary copy of the tree, a throwaway
plugin folder appears in dist/src-bin (and runs), in the conformance harness's plugin
list (with the kind it declares) and in the frozen bundle's name table, with no other
file touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import ROOT, run_plugin

MAIN = '''"""echo: a throwaway chained plugin (tests/test_plugin_registry.py)."""

from cnilib import skel


def cmd_check(cmd):
    cmd.conf.prev_result()


# ADD as a verb of its own module (echo/add.py), imported when it runs; CHECK a plain function.
PLUGIN = skel.Plugin("echo", "chained", add=skel.verb(__package__, "add:add"), check=cmd_check)


def main() -> None:
    skel.run(PLUGIN)
'''


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    """A copy of the project's code with one more plugin folder, plugins/echo."""
    root = str(tmp_path_factory.mktemp("tree"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in ("cnilib", "plugins", "conformance", "build"):
        shutil.copytree(os.path.join(ROOT, top), os.path.join(root, top), ignore=ignore)
    os.makedirs(os.path.join(root, "plugins", "echo"))
    open(os.path.join(root, "plugins", "echo", "__init__.py"), "w").close()
    with open(os.path.join(root, "plugins", "echo", "main.py"), "w") as f:
        f.write(MAIN)
    with open(os.path.join(root, "plugins", "echo", "add.py"), "w") as f:
        f.write("def add(cmd):\n    return cmd.conf.prev_result()\n")
    return root


def test_registry_lists_it(tree):
    out = subprocess.run([sys.executable, "-c", "import plugins; print(plugins.kinds())"], cwd=tree,
                         capture_output=True, text=True, check=True).stdout
    assert "'echo': 'chained'" in out and "'bridge': 'interface'" in out, out


def test_source_launcher_appears_and_runs(tree):
    subprocess.run([sys.executable, os.path.join(tree, "build", "launchers.py"), os.path.join(tree, "dist", "src-bin")],
                   check=True, capture_output=True)
    echo = os.path.join(tree, "dist", "src-bin", "echo")
    assert os.access(echo, os.X_OK)
    out = run_plugin(echo, "VERSION", {"cniVersion": "1.0.0"})
    assert out.ok and "1.1.0" in out.doc["supportedVersions"], out
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}], "dns": {}}
    out = run_plugin(echo, "ADD", {"cniVersion": "1.0.0", "name": "n", "type": "echo", "prevResult": prev},
                     containerid="c1", netns="/var/run/netns/unused", ifname="eth0")
    assert out.ok and out.doc == prev, out


def test_harness_picks_it_up_with_its_kind(tree, tmp_path):
    """The harness run from the copy lists echo among the plugins of dist/src-bin (no
    profile: it gets the generic checks, and knows it is chained)."""
    test_source_launcher_appears_and_runs(tree)
    junit = tmp_path / "h.xml"
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", os.path.join(tree, "dist", "src-bin"),
                        "--reference", "", "-k", "test_version_answer or test_add_without_prev_result",
                        "--junit", str(junit), "-q"], cwd=tree, capture_output=True, text=True, timeout=300)
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert "test_version_answer[echo]" in names, (names, p.stdout[-2000:])
    # A chained-only check applies to it (its kind comes from the registry): reported, not
    # "not applicable because the kind is unknown".
    chained = [c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "test_add_without_prev_result[echo]"]
    assert chained, names
    skipped = [s.get("message", "") for s in chained[0].iter("skipped")]
    assert not any("unknown" in m for m in skipped), skipped
