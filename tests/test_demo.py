"""The README's main job (`make demo`) works as written and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_demo_runs_and_cleans_up(our_bin):
    p = subprocess.run([sys.executable, "-m", "conformance.demo", "--cni-path", our_bin], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "demo: OK" in p.stdout
    assert "2 received" in p.stdout, "ping did not get through"
    assert "-> 'hello from container" in p.stdout, "the mapped port did not reach the container's server"
    assert "port 8080 after portmap DEL: closed" in p.stdout
    assert "leases left: none; veths left: none; port mappings left: none; namespaces left: none" in p.stdout
