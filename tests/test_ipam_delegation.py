"""cnilib.ipam: find the IPAM plugin in CNI_PATH, exec it with our environment and the
whole config, and keep its error code. The delegate is a real executable (a spy)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from cnilib import ipam
from cnilib.conf import NetConf
from cnilib.errors import CNIError
from cnilib.skel import CmdArgs

SPY = """#!/usr/bin/python3
import json, os, sys
d = os.path.dirname(os.path.abspath(__file__))
data = sys.stdin.buffer.read()
with open(os.path.join(d, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")},
                        "stdin": data.decode()}) + "\\n")
reply = json.load(open(os.path.join(d, "reply.json")))
sys.stdout.write(reply.get("stdout", ""))
sys.stderr.write(reply.get("stderr", ""))
sys.exit(reply.get("rc", 0))
"""

CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": {"type": "spy", "x": [1, 2]}}


@pytest.fixture
def spy(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    p = d / "spy"
    p.write_text(SPY)
    p.chmod(0o755)

    def reply(stdout: str = "", stderr: str = "", rc: int = 0) -> None:
        (d / "reply.json").write_text(json.dumps({"stdout": stdout, "stderr": stderr, "rc": rc}))

    def calls() -> list[dict]:
        f = d / "calls.jsonl"
        return [json.loads(l) for l in f.read_text().splitlines()] if f.exists() else []

    reply()
    return {"dir": str(d), "path": str(p), "reply": reply, "calls": calls}


def _cmd(spy, conf=CONF, command="ADD") -> CmdArgs:
    raw = json.dumps(conf).encode()
    c = CmdArgs(command, "ctr1", "/var/run/netns/x", "eth0", "K8S_POD_NAME=a", ["/nonexistent", spy["dir"]], raw)
    c.conf = NetConf.parse(raw)
    c.conf.validate()
    return c


def test_add_gets_same_env_and_whole_config(spy, monkeypatch):
    monkeypatch.setenv("CNI_COMMAND", "ADD")
    monkeypatch.setenv("CNI_CONTAINERID", "ctr1")
    monkeypatch.setenv("CNI_IFNAME", "eth0")
    spy["reply"](json.dumps({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.5/24"}]}))
    cmd = _cmd(spy)
    res = ipam.add(cmd)
    assert [str(i.address) for i in res.ips] == ["10.0.0.5/24"]
    assert res.cni_version == "0.4.0"
    call = spy["calls"]()[0]
    assert call["stdin"].encode() == cmd.conf.raw  # the whole config, byte for byte
    assert call["env"]["CNI_COMMAND"] == "ADD"
    assert call["env"]["CNI_CONTAINERID"] == "ctr1"


@pytest.mark.parametrize("verb", ["DEL", "CHECK", "GC", "STATUS"])
def test_other_verbs_change_only_cni_command(spy, monkeypatch, verb):
    monkeypatch.setenv("CNI_COMMAND", "ADD")
    monkeypatch.setenv("CNI_IFNAME", "eth9")
    getattr(ipam, {"DEL": "delete"}.get(verb, verb.lower()))(_cmd(spy, command=verb))
    env = spy["calls"]()[0]["env"]
    assert env["CNI_COMMAND"] == verb
    assert env["CNI_IFNAME"] == "eth9"


def test_ipam_error_keeps_its_code(spy):
    spy["reply"](json.dumps({"cniVersion": "1.0.0", "code": 123, "msg": "pool dry", "details": "d"}), rc=1)
    with pytest.raises(CNIError) as e:
        ipam.add(_cmd(spy))
    assert (e.value.code, e.value.msg, e.value.details) == (123, "pool dry", "d")


def test_ipam_error_on_stderr_only(spy):
    spy["reply"](stderr="something broke", rc=2)
    with pytest.raises(CNIError) as e:
        ipam.delete(_cmd(spy))
    assert e.value.code == 999 and "something broke" in e.value.msg


def test_missing_plugin_and_path_like_type(spy):
    with pytest.raises(CNIError) as e:
        ipam.add(_cmd(spy, dict(CONF, ipam={"type": "nope"})))
    assert e.value.code == 7 and "nope" in e.value.msg
    with pytest.raises(CNIError) as e:
        ipam.add(_cmd(spy, dict(CONF, ipam={"type": "../bin/spy"})))
    assert e.value.code == 7
    assert spy["calls"]() == []


def test_malformed_result_is_a_decode_error(spy):
    spy["reply"]("{not json")
    with pytest.raises(CNIError) as e:
        ipam.add(_cmd(spy))
    assert e.value.code == 6


def test_retries_text_file_busy(spy):
    # Hold the binary open for writing: exec fails with ETXTBSY until it is closed, as when
    # a plugin is being installed while a pod starts.
    fd = os.open(spy["path"], os.O_WRONLY)
    threading.Timer(0.3, os.close, [fd]).start()
    spy["reply"](json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.6/24"}]}))
    t = time.monotonic()
    res = ipam.add(_cmd(spy))
    assert str(res.ips[0].address) == "10.0.0.6/24"
    assert time.monotonic() - t >= 0.25


def test_large_stdin_and_output_do_not_deadlock(spy):
    big = dict(CONF, padding="x" * 300_000)
    spy["reply"](json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.7/24"}],
                             "dns": {"search": ["y" * 200_000]}}), stderr="z" * 200_000)
    res = ipam.add(_cmd(spy, big))
    assert len(res.dns.search[0]) == 200_000
    assert len(spy["calls"]()[0]["stdin"]) > 300_000
