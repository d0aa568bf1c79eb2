"""The harness on plugins it has never heard of, with a config the user gives (--config,
conformance/given.py): every applicable check runs, none is "n/a" for want of a config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.helpers import REF_BIN, ROOT, SRC_BIN


def _harness(tmp_path, cni_path: str, conf: dict, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    cfg = tmp_path / "net.json"
    cfg.write_text(json.dumps(conf))
    junit = tmp_path / "junit.xml"
    junit.unlink(missing_ok=True)  # a test may run the harness twice
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", cni_path, "--config", str(cfg),
                        "--junit", str(junit), "-q", *extra], cwd=ROOT, capture_output=True, text=True, timeout=900)
    cases = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            status, msg = "pass", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    status, msg = ("skip" if child.tag == "skipped" else "fail"), child.get("message") or ""
            cases[case.get("name")] = (status, msg)
    return p, cases


def test_unknown_interface_plugin_gets_the_lifecycle(tmp_path):
    """The reference ptp (no built-in profile): its config with placeholders, the kind
    inferred (an ipam object): the lifecycle and interface suites run on it."""
    conf = {"cniVersion": "1.0.0", "name": "ignored", "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "${subnet4}"}]], "dataDir": "${dataDir}",
                     "routes": [{"dst": "0.0.0.0/0"}]}}
    p, cases = _harness(tmp_path, REF_BIN, conf, "--suites", "lifecycle,interface")
    assert cases, p.stdout[-3000:] + p.stderr[-2000:]
    for name in ("test_check_right_after_add[ptp]", "test_check_notices_sabotage[ptp]",
                 "test_parallel_adds_and_dels[ptp]", "test_through_libcni[ptp]",
                 "test_interface_and_addresses_in_namespace[ptp]", "test_result_layout[ptp]"):
        assert cases.get(name) == ("pass", ""), f"{name}: {cases.get(name)}"
    no_profile = [n for n, (_, msg) in cases.items() if "no config profile" in msg]
    assert not no_profile, no_profile


def test_unknown_chained_plugin_gets_the_lifecycle(tmp_path):
    """A meta plugin the harness has never heard of (our tuning, installed as "my-tuner"):
    the chained suite and the lifecycle behind a real bridge through libcni all run."""
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(os.path.join(SRC_BIN, "tuning"), d / "my-tuner")
    conf = {"cniVersion": "1.0.0", "name": "ignored", "type": "my-tuner", "mtu": 1400, "promisc": True,
            "dataDir": "${dataDir}/tuning"}
    p, cases = _harness(tmp_path, str(d), conf, "--kind", "meta", "--suites", "chained,chained_lifecycle")
    assert cases, p.stdout[-3000:] + p.stderr[-2000:]
    for name in ("test_effect_added_and_removed", "test_check_after_add_and_after_del",
                 "test_chained_add_check_del_twice", "test_chained_del_never_added",
                 "test_chained_del_after_netns_gone", "test_chained_parallel_adds_and_dels",
                 "test_chained_interleaved_adds_and_dels"):
        assert cases.get(f"{name}[my-tuner]") == ("pass", ""), f"{name}: {cases.get(f'{name}[my-tuner]')}"
    assert "only the config" in cases["test_output_is_prev_result[my-tuner]"][1]


def test_config_errors_are_usage_errors(tmp_path):
    """A kind the harness cannot tell, or an unknown placeholder: a clear message, no run."""
    p, cases = _harness(tmp_path, REF_BIN, {"type": "sbr"})
    assert p.returncode == 4 and "pass --kind" in p.stderr + p.stdout and not cases, p.stderr
    p, cases = _harness(tmp_path, REF_BIN, {"type": "ptp", "ipam": {"type": "host-local", "subnet": "${subnet}"}})
    assert p.returncode == 4 and "unknown placeholder(s) ${subnet}" in p.stderr + p.stdout and not cases, p.stderr


def test_config_says_what_it_cannot_say_itself(tmp_path):
    """The reference host-device serves one device per config and reads runtimeConfig's
    ``deviceID``: with ``--single-attachment`` the checks that hold several attachments at
    once are not applicable (with the reason given), and the capability its config declares
    is not among those K48 expects it to ignore."""
    with open(os.path.join(ROOT, "docs", "conformance", "configs", "host-device.json")) as f:
        conf = json.load(f)
    conf["capabilities"] = {"deviceID": True}
    p, cases = _harness(tmp_path, REF_BIN, conf, "--single-attachment", "one device per config",
                        "-k", "test_long_container_ids or test_parallel_adds_and_dels or test_attachments_are_independent"
                        " or test_tolerates_other_capabilities")
    assert cases, p.stdout[-3000:] + p.stderr[-2000:]
    for name in ("test_long_container_ids", "test_parallel_adds_and_dels", "test_attachments_are_independent"):
        assert cases.get(f"{name}[host-device]") == ("skip", "not applicable: one device per config"), \
            f"{name}: {cases.get(f'{name}[host-device]')}"
    assert cases.get("test_tolerates_other_capabilities[host-device]") == ("pass", ""), cases


def test_config_names_the_kernel_feature_it_needs(tmp_path):
    """``--needs-kernel vrf`` for the reference vrf: on a kernel without VRF (this machine)
    its checks that need a working config are not applicable with the kernel's reason,
    instead of failing with "operation not supported"; on one with VRF they run."""
    from conformance import kernel

    with open(os.path.join(ROOT, "docs", "conformance", "configs", "vrf.json")) as f:
        conf = json.load(f)
    p, cases = _harness(tmp_path, REF_BIN, conf, "--kind", "meta", "--needs-kernel", "vrf",
                        "-k", "test_effect_added_and_removed or test_chained_del_never_added")
    assert cases, p.stdout[-3000:] + p.stderr[-2000:]
    why = kernel.missing("vrf")
    for name in ("test_effect_added_and_removed[vrf]", "test_chained_del_never_added[vrf]"):
        status, msg = cases.get(name, ("missing", ""))
        if why:
            assert status == "skip" and why in msg and "kernel has no VRF" in msg, f"{name}: {status} {msg}"
        else:
            assert status != "skip", f"{name}: {status} {msg}"
    p, cases = _harness(tmp_path, REF_BIN, conf, "--kind", "meta", "--needs-kernel", "vrf6")
    assert p.returncode == 2 and "invalid choice: 'vrf6'" in p.stderr and not cases, p.stderr


def test_chained_output_may_add_dns():
    """A chained plugin passes prevResult on with additions: appended interfaces and DNS
    entries after prevResult's own (podman's dnsname adds its server and domain); anything
    else changed, or a DNS entry dropped, is not passing it on."""
    from conformance.checks.common import passes_through

    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "ips": [{"address": "10.0.0.2/24"}],
            "dns": {"nameservers": ["10.0.0.1"]}}
    assert passes_through(dict(prev), prev)
    assert passes_through({**prev, "interfaces": [{"name": "eth0"}, {"name": "ifb0"}]}, prev)
    assert passes_through({**prev, "dns": {"nameservers": ["10.0.0.1", "10.0.0.9"], "search": ["dns.podman"]}}, prev)
    assert passes_through({**{k: v for k, v in prev.items() if k != "dns"}, "dns": {"domain": "x"}},
                          {k: v for k, v in prev.items() if k != "dns"})
    assert not passes_through({**prev, "dns": {"nameservers": ["10.0.0.9"]}}, prev)
    assert not passes_through({**prev, "dns": {"nameservers": ["10.0.0.1"], "bogus": 1}}, prev)
    assert not passes_through({k: v for k, v in prev.items() if k != "dns"}, prev)
    assert not passes_through({**prev, "ips": []}, prev)
    assert not passes_through({**prev, "interfaces": []}, prev)
