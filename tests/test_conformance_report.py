"""The report people read: the harness, run as users run it on a deliberately broken
host-local (its second DEL fails: conformance/broken/flawed.py) and a sound loopback, must
give one verdict per plugin, put the failure first with a reproduction that reproduces it
when run by hand, and write HTML that a real browser (Debian's headless Chromium) renders
offline, and JSON with the same content.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib

import pytest

from conformance import report
from conformance.proc import Call
from tests.helpers import ROOT, SRC_BIN

FLAWED = os.path.join(ROOT, "conformance", "broken", "flawed.py")
# F25-del-twice and the version checks, but not C14 (its ADD/DEL per version would meet the
# flaw's "already deleted" mark of an earlier DEL and fail too).
SELECT = "del_twice or (version and not result_in_each)"
NOT_CONFORMANT_RGB = (176, 32, 32)  # the verdict badges' colours (report._CSS)
CONFORMANT_RGB = (30, 126, 52)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One harness run: the directory it tested, its JSON and HTML reports, its exit status."""
    if not os.path.exists(SRC_BIN):
        pytest.fail(f"our source launchers missing at {SRC_BIN}: run `make bin`", pytrace=False)
    tmp = tmp_path_factory.mktemp("report")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shutil.copy(FLAWED, bin_dir / "host-local")
    (bin_dir / ".flaw.json").write_text(json.dumps({"real": os.path.join(SRC_BIN, "host-local"),
                                                    "flaw": "del-fails-twice"}))
    os.symlink(os.path.join(SRC_BIN, "loopback"), bin_dir / "loopback")
    out = {"bin": str(bin_dir), "json": tmp / "report.json", "html": tmp / "report.html"}
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", str(bin_dir),
                        "--plugins", "host-local,loopback", "--implementation", "under-test",
                        "--json", str(out["json"]), "--report", str(out["html"]), "-q", "-k", SELECT],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    out["proc"] = p
    assert out["json"].exists() and out["html"].exists(), p.stdout[-3000:] + p.stderr[-2000:]
    out["doc"] = json.loads(out["json"].read_text())
    return out


def _check(doc: dict, plugin: str, cid: str) -> dict:
    found = [c for c in doc["checks"] if c["plugin"] == plugin and c["id"] == cid]
    assert len(found) == 1, f"{plugin} {cid}: {found}"
    return found[0]


def test_json_verdicts_counts_and_reasons(run):
    doc = run["doc"]
    assert run["proc"].returncode != 0, "a failing check must fail the run"
    assert doc["schema"] == "cni-conformance-report/1"
    verdicts = {p["name"]: p for p in doc["plugins"]}
    assert verdicts["host-local"]["verdict"] == report.NOT_CONFORMANT, verdicts
    assert verdicts["host-local"]["failures"] == {"MUST": 1, "SHOULD": 0, "de facto": 0}, verdicts
    assert verdicts["loopback"]["verdict"] == report.CONFORMANT, verdicts
    assert verdicts["loopback"]["failures"] == {"MUST": 0, "SHOULD": 0, "de facto": 0}, verdicts
    assert verdicts["loopback"]["outcomes"]["pass"] >= 4, verdicts
    for c in doc["checks"]:
        assert {"id", "section", "level", "outcome", "reason", "ref", "tests"} <= set(c), c
        assert c["level"] in ("MUST", "SHOULD", "de facto"), c
        if c["outcome"] in ("n/a", "deviation", "fail"):
            assert c["reason"].strip(), f"{c['plugin']} {c['id']}: {c['outcome']} without a reason"
    fails = [(c["plugin"], c["id"]) for c in doc["checks"] if c["outcome"] == "fail"]
    assert fails == [("host-local", "F25-del-twice")], fails
    assert _check(doc, "loopback", "F25-del-twice")["outcome"] == "pass"


def test_failure_carries_its_reproduction(run):
    c = _check(run["doc"], "host-local", "F25-del-twice")
    (f,) = c["failures"]
    assert f["test"] == "test_del_twice[host-local]" and f["phase"] == "call", f
    assert "F25-del-twice" in f["expected"] and "MUST" in f["expected"], f["expected"]
    assert "DEL failed" in f["happened"] and "already deleted" in f["happened"], f["happened"]
    repro = f["reproduction"]
    calls = repro["calls"]
    # VERSION (to pick the config's version), ADD, DEL, DEL: the last is the failing one.
    assert [k["env"]["CNI_COMMAND"] for k in calls] == ["VERSION", "ADD", "DEL", "DEL"], calls
    assert repro["calls_total"] == 4
    last = calls[-1]
    assert last["rc"] == 1 and "already deleted" in last["stdout"], last
    assert last["env"]["CNI_CONTAINERID"] and last["env"]["CNI_IFNAME"] == "eth0", last["env"]
    assert last["env"]["CNI_NETNS"].startswith("/var/run/netns/"), last["env"]
    assert json.loads(last["stdin"])["ipam"]["type"] == "host-local", last["stdin"]
    assert last["netns"] and last["argv"][:4] == ["ip", "netns", "exec", last["netns"]], last["argv"]
    assert last["argv"][-1] == os.path.join(run["bin"], "host-local")
    for needle in ("env -i", "CNI_COMMAND=DEL", f"ip netns exec {last['netns']}", "printf '%s'"):
        assert needle in last["command"], (needle, last["command"])
    assert calls[2]["rc"] == 0, "the first DEL succeeded"
    assert f"ip netns add {last['netns']}" in repro["script"], repro["script"]


def test_reproduction_reproduces_the_failure_by_hand(run):
    """The script, run by hand after the harness (the flaw's "already deleted" marks
    removed, as before the run), gives the same exit statuses: the second DEL fails."""
    f = _check(run["doc"], "host-local", "F25-del-twice")["failures"][0]
    script = f["reproduction"]["script"]
    names = re.findall(r"^ip netns add (\S+)$", script, re.M)
    dirs = re.findall(r"^mkdir -p (\S+)$", script, re.M)
    assert names and dirs, script
    for mark in glob.glob(os.path.join(run["bin"], ".deleted-*")):
        os.unlink(mark)
    try:
        p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
        statuses = re.findall(r"^exit (\d+)$", p.stdout, re.M)
        assert statuses == ["0", "0", "0", "1"], p.stdout + p.stderr
        assert "already deleted" in p.stdout, p.stdout
        assert not [n for n in names if os.path.exists(f"/var/run/netns/{n}")], "the script left namespaces"
        assert not [d for d in dirs if os.path.exists(d)], "the script left its directory"
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_html_has_no_external_references(run):
    text = run["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I), "external src/href"
    assert not re.search(r"<link\b|<script\b[^>]*\bsrc|@import|url\(", text, re.I), "an external asset"
    assert "<style>" in text  # its styling is inline


def test_html_renders_in_chromium(run, tmp_path):
    """Headless Chromium renders the page offline: the DOM it built shows each verdict and
    the failure with its reproduction, and its screenshot shows the verdict badges' colours."""
    dom = _chromium(tmp_path, "--dump-dom", run["html"].as_uri())
    verdicts = dict(re.findall(r'<tr><td><b>([^<]+)</b></td><td><span class="verdict [^"]*" '
                               r'data-verdict="([^"]+)"', dom))
    assert verdicts == {"host-local": "not conformant", "loopback": "conformant"}, verdicts
    start = dom.find('id="fail-host-local-F25-del-twice"')
    assert start > 0, dom[:3000]
    body = dom[start:dom.find("<h2", start)]
    for needle in ("Expected:", "Happened:", "already deleted", "CNI_COMMAND=DEL", "ip netns exec",
                   "exit 1", "Reproduction", "ip netns add"):
        assert needle in body, needle
    assert dom.index('id="failures"') < dom.index('id="checks"'), "failures come before the table"

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1000,500", "--hide-scrollbars", f"--screenshot={shot}", run["html"].as_uri())
    pixels = _png_rgb(shot.read_bytes())
    # Each badge is a solid block of its colour (some hundred pixels at least).
    assert pixels.count(NOT_CONFORMANT_RGB) > 300, pixels.count(NOT_CONFORMANT_RGB)
    assert pixels.count(CONFORMANT_RGB) > 300, pixels.count(CONFORMANT_RGB)


def test_verdict_rule():
    """not conformant on a MUST failure; with deviations on a SHOULD/de-facto failure or a
    documented deviation; conformant when all that ran passed; not assessed if none ran."""
    def checks(*pairs: tuple[str, str]) -> list[report.CheckResult]:
        return [report.CheckResult("p", f"X{i}", "X", level, "", outcome, "why")
                for i, (level, outcome) in enumerate(pairs)]

    assert report.verdict(checks(("M", "fail"), ("S", "pass"))).verdict == report.NOT_CONFORMANT
    assert report.verdict(checks(("M", "pass"), ("S", "fail"))).verdict == report.WITH_DEVIATIONS
    assert report.verdict(checks(("M", "pass"), ("D", "fail"))).verdict == report.WITH_DEVIATIONS
    v = report.verdict(checks(("M", "deviation"), ("M", "pass"), ("S", "n/a")))
    assert v.verdict == report.WITH_DEVIATIONS and v.deviations["MUST"] == 1, v
    assert report.verdict(checks(("M", "pass"), ("S", "n/a"), ("M", "unexpected pass"))).verdict == report.CONFORMANT
    assert report.verdict(checks(("M", "n/a"))).verdict == report.NOT_ASSESSED
    v = report.verdict(checks(("M", "fail"), ("S", "fail"), ("D", "fail"), ("D", "fail")))
    assert v.failures == {"MUST": 1, "SHOULD": 1, "de facto": 2}, v


def test_reproduction_of_binary_stdin_and_missing_path():
    """Stdin that is not text goes through base64; an environment without PATH still finds
    ``ip`` (its absolute path); the snippet feeds the exact bytes."""
    c = Call(["ip", "netns", "exec", "cnh-x", "/bin/cat"], {"CNI_COMMAND": "ADD"}, b"\xff\x00{x", seq=1)
    cmd = report.shell_command(c)
    assert "base64 -d" in cmd and f"env -i CNI_COMMAND=ADD \\\n    {shutil.which('ip')} netns exec" in cmd, cmd
    p = subprocess.run(["sh", "-c", cmd.split(" |\n")[0]], capture_output=True)  # the feeding half
    assert p.stdout == b"\xff\x00{x"
    assert report.call_json(c)["stdin"] is None and report.call_json(c)["stdin_base64"]
    # A call the harness SIGKILLed part-way (F28) is killed the same way by its snippet.
    killed = Call(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, None, seq=2, kill_after=0.2, rc=-9)
    p = subprocess.run(["sh", "-c", report.shell_command(killed)], capture_output=True, timeout=20)
    assert p.returncode == 137, (p.returncode, report.shell_command(killed))
    assert "killed by signal 9" in report.script([killed], 2, "X on y", False)


# -- helpers --------------------------------------------------------------------------

def _chromium(tmp_path, *args: str) -> str:
    """Run Debian's Chromium headless with a profile of its own (removed after), no
    display, no network, a deadline; return stdout. Nothing of it stays running."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium missing: run build/setup.sh (Debian package chromium)", pytrace=False)
    profile = tempfile.mkdtemp(prefix="cnipy-chromium-", dir=tmp_path)
    argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-crash-reporter", "--disable-breakpad",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # no network: the page is offline
            f"--user-data-dir={profile}", *args]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": profile})
    try:
        out, err = p.communicate(timeout=90)
    finally:
        _kill_group(p)
        _kill_leftovers(profile)
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, err[-3000:]
    return out


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)  # its own session: the browser's helpers
    except ProcessLookupError:
        pass
    p.wait()


def _kill_leftovers(profile: str) -> None:
    """Kill, by PID, any process still naming this run's profile directory (a helper that
    left the session)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if profile.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _png_rgb(data: bytes) -> list[tuple[int, int, int]]:
    """The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes), as RGB."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    width, height, depth, color, _, _, interlace = head
    assert depth == 8 and color in (2, 6) and interlace == 0, head
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, pixels, i = bytearray(stride), [], 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up, ul = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                pa, pb, pc = abs(up - ul), abs(left - ul), abs(left + up - 2 * ul)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 255
        pixels += [tuple(line[x:x + 3]) for x in range(0, stride, bpp)]
        prev = line
    return pixels
