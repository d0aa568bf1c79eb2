"""The harness catches real bugs: deliberately broken plugins (conformance/broken/) must
be reported under the right check, and a sound plugin must not be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import ROOT

FLAWED = os.path.join(ROOT, "conformance", "broken", "flawed.py")


def _run(tmp_path, plugin_type: str, real: str, flaw: str, select: str) -> dict[str, str]:
    """Run the harness on a broken ``plugin_type``; return {testcase name: outcome}."""
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(FLAWED, d / plugin_type)
    (d / ".flaw.json").write_text(json.dumps({"real": real, "flaw": flaw}))
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "conformance", "--cni-path", str(d), "--plugins", plugin_type,
                    "--implementation", "under-test", "--junit", str(junit), "-q", "-k", select],
                   cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail"
                out.setdefault("_messages", "")
                out["_messages"] += (child.get("message") or "") + "\n"
            elif child.tag == "skipped" and status == "pass":
                status = "skipped"
        out[case.get("name")] = status if case.get("name") not in out or status == "fail" else out[case.get("name")]
    return out


@pytest.mark.parametrize("flaw,plugin_type,real,select,caught_by", [
    ("del-fails-twice", "host-local", "/usr/lib/cni/host-local", "del_twice or del_never_added",
     "test_del_twice[host-local]"),
    ("wrong-cni-version", "host-local", "/usr/lib/cni/host-local", "result_in_each_version or del_twice",
     "test_result_in_each_version[host-local]"),
    ("leaks-link", "host-local", "/usr/lib/cni/host-local", "del_twice or del_never_added",
     "test_del_twice[host-local]"),
    ("ignores-cni-path", "bridge", "/usr/lib/cni/bridge", "ipam_gets_same_env or result_layout",
     "test_ipam_gets_same_env_and_whole_config[bridge]"),
    ("del-does-nothing", "portmap", "/usr/lib/cni/portmap", "mappings_added",
     "test_mappings_added_and_removed[portmap]"),
    ("error-on-stderr", "loopback", "/usr/lib/cni/loopback", "bad_stdin or unknown_command or del_never_added",
     "test_unknown_command[loopback]"),
    ("case-sensitive-key", "portmap", "/usr/lib/cni/portmap", "recased_keys",
     "test_recased_keys[portmap]"),
])
def test_harness_catches(tmp_path, flaw, plugin_type, real, select, caught_by):
    results = _run(tmp_path, plugin_type, real, flaw, select)
    assert results.get(caught_by) == "fail", f"{flaw} not reported by {caught_by}: {results}"
    if flaw in ("leaks-link", "del-does-nothing"):
        assert "leak" in results.get("_messages", ""), results
    if flaw == "case-sensitive-key":
        # The message names the variant and the keys, so a plugin author can act on it.
        msg = results.get("_messages", "")
        assert "go-field-case" in msg and "runtimeConfig.portMappings" in msg and "HostPort" in msg, msg
    if flaw == "del-fails-twice":
        # ...and only where it applies: a single DEL is fine.
        assert results.get("test_del_never_added[host-local]") == "pass", results


def test_sound_plugin_passes_the_same_checks(tmp_path):
    """Control: the wrapper without a flaw passes, so failures above are the flaws'."""
    results = _run(tmp_path, "host-local", "/usr/lib/cni/host-local", "none",
                   "del_twice or del_never_added or result_in_each_version or recased_keys")
    assert results and all(v in ("pass", "skipped") for k, v in results.items() if not k.startswith("_")), results
