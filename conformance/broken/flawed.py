#!/usr/bin/python3 -IS
"""A deliberately broken CNI plugin, for the harness's own tests.

Installed under a plugin type name (e.g. ``host-local``) next to ``.flaw.json``
(``{"real": "/path/to/real/plugin", "flaw": "NAME"}``), it runs the real plugin and breaks
one rule of the spec. Each flaw must be caught by a named conformance check (the plugin it
is tested as in tests/test_conformance_selftest.py in brackets):

- ``del-fails-twice`` [host-local]: the second DEL of an attachment fails (F25-del-twice);
- ``wrong-cni-version`` [host-local]: ADD results claim a cniVersion other than the
  config's (C14);
- ``leaks-link`` [host-local]: every ADD also creates a veth pair in the host namespace
  that DEL forgets (the leak checker);
- ``ignores-cni-path`` [bridge]: the real plugin is run with CNI_PATH=/usr/lib/cni
  whatever the runtime said, so a delegated IPAM is not found where the runtime put it
  (J43);
- ``error-on-stderr`` [loopback]: failures print their error JSON on stderr only (B9/B11);
- ``del-does-nothing`` [portmap]: DEL succeeds without removing anything (the leak
  checker, e.g. portmap's rules left in the firewall);
- ``case-sensitive-key`` [portmap]: reads one key (``"key"`` in ``.flaw.json``, default
  ``hostPort``) case-sensitively, as a plugin matching keys exactly would: a re-cased
  spelling of it (``HostPort``, what containerd sends) is ignored (K-recased-keys);
- ``netns-blocks`` [loopback]: opens CNI_NETNS for reading without looking first, as a
  plugin that does not check it is a namespace: a FIFO there blocks it
  (A7-netns-special-file);
- ``template-link`` [bridge]: hands names with ``%`` to the kernel unchecked: CNI_IFNAME
  ``eth%d`` and a config value such as ``"bridge": "br%d"`` become links ``eth0``/``br0``
  (created in the namespace the plugin runs in) before the real plugin refuses them
  (A4-ifname-template, K-ifname-template-key);
- ``truncates-long-ids`` [host-local]: keeps only the first 1024 characters of
  CNI_CONTAINERID, as a plugin storing IDs in a fixed-size field: two long IDs with a
  common prefix become one attachment (A5-long-container-id);
- ``delegates-to-itself`` [bridge]: when ``ipam.type`` names the plugin's own type, runs
  itself as that IPAM plugin, as a plugin without a cycle guard does (J-self-delegation).
  Each level forks rather than starting a new interpreter (the same chain of processes
  for the cage to stop, at ~1 ms a level instead of ~75 ms). It stops by itself at depth
  48, a backstop only: the harness runs it under a process limit far below that
  (conformance/contain.py);
- ``hangs-on-del`` [loopback]: DEL never answers (it sleeps; HANG_BACKSTOP is a backstop
  only): cut by the per-call deadline of A7-netns-special-file;
- ``add-prints-nothing`` [bridge]: ADD does its work and exits 0 with nothing on stdout
  (D18-interface-created: "ADD printed no JSON result");
- ``del-never-added-fails`` [portmap]: DEL of an attachment it was never asked to ADD
  fails with code 3 (F26-del-never-added);
- ``drops-prev-result`` [portmap]: ignores prevResult: a successful ADD answers a fresh
  result of its own (no interfaces, no ips) instead of passing prevResult on
  (E22-passthrough);
- ``del-needs-prev-result`` [portmap]: DEL without prevResult (what libcni sends when it
  has no cached result, and what a runtime sends after a restart) succeeds without
  removing anything; with prevResult it works: portmap's rules stay in the firewall
  (E22-effect-applied: "DEL (without prevResult) left: host firewall");
- ``races-leases`` [host-local]: keeps the lease store outside the lock: the real plugin
  runs on a private copy of the network's lease directory, and the changes are written
  back afterwards. One call at a time this is correct; ADDs at the same time read the
  same state and hand out one address twice (L50-parallel-adds: "addresses not distinct");
- ``del-skips-netns`` [bridge]: DEL ignores CNI_NETNS (runs the real plugin without it,
  as a plugin that only releases its IPAM lease on DEL): the container's link and its
  host-side veth stay (the leak checker, "host links: veth...", on F25-del-twice);
- ``accepts-any-version`` [loopback]: a cniVersion it does not support (``0.99.0``,
  ``2.0.0``, ``banana``) is run as 1.0.0 instead of refused with code 1
  (C15-unsupported-version);
- ``check-ignores-state`` [bridge]: CHECK answers success without looking, so an
  attachment whose interface is gone passes (G31-check-detects-loss).

Where no flaw needs the real plugin's output, the wrapper execs it (stdin passed on),
and it reads JSON with the C scanner ``json`` itself uses (``import json`` compiles
regular expressions: 10 ms), so a flawed plugin costs little more than the real one plus
an interpreter start, and the harness takes about as long on it as on the real one.
"""
import os
import sys


def _loads(text):
    """One JSON document, parsed by ``_json``'s scanner (ValueError if it is not one)."""
    import _json

    class _Ctx:  # the attributes _json.make_scanner reads
        strict, object_hook, object_pairs_hook, memo = True, None, None, {}
        parse_float, parse_int, parse_constant = float, int, float

    text = text.decode() if isinstance(text, bytes) else text
    try:
        doc, end = _json.make_scanner(_Ctx())(text.strip(), 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text.strip()):
        raise ValueError("extra data after the JSON document")
    return doc


def _dumps(doc) -> str:
    import json

    return json.dumps(doc)


here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, ".flaw.json")) as f:
    spec = _loads(f.read())
flaw, real = spec["flaw"], spec["real"]
env = dict(os.environ)
verb = env.get("CNI_COMMAND", "")
SELF_DEPTH_VAR, SELF_DEPTH_MAX = "FLAWED_SELF_DEPTH", 48
HANG_BACKSTOP = 300  # seconds: a hanging flaw ends by itself should nobody kill it
# The spec versions a plugin may support (accepts-any-version runs any other as 1.0.0).
KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# Flaws that change or look into stdin, and flaws that rewrite the real plugin's output.
READS_STDIN = {"case-sensitive-key", "template-link", "delegates-to-itself", "del-needs-prev-result",
               "races-leases", "accepts-any-version"}
REWRITES_OUTPUT = {"wrong-cni-version", "error-on-stderr", "drops-prev-result"}


def _drop_recased(v, key):
    """``v`` without the keys that spell ``key`` in another case (the real plugin, being Go,
    would read them as ``key``)."""
    if isinstance(v, dict):
        return {k: _drop_recased(x, key) for k, x in v.items() if k == key or k.lower() != key.lower()}
    if isinstance(v, list):
        return [_drop_recased(x, key) for x in v]
    return v


def _ip(*argv: str) -> None:
    """``ip ARGV`` in the namespace the plugin runs in; failures are the flaw's business."""
    import subprocess

    subprocess.run(["ip", *argv], capture_output=True, check=False)


def _conf(data: bytes) -> dict:
    try:
        doc = _loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}  # not JSON: the real plugin reports it
    return doc if isinstance(doc, dict) else {}


def _fail(code: int, msg: str) -> None:
    """Answer an error document and exit 1."""
    sys.stdout.write(_dumps({"cniVersion": "1.0.0", "code": code, "msg": msg}))
    sys.stdout.flush()
    sys.exit(1)


def _mark(kind: str) -> str:
    """A file in the plugin's directory naming this call's attachment (per flaw kind)."""
    key = f"{env.get('CNI_CONTAINERID', '')}-{env.get('CNI_IFNAME', '')}"[:200].replace("/", "_")
    return os.path.join(here, f".{kind}-{key}")


def _run_self() -> None:
    """Run ourselves as the delegated IPAM plugin, which does the same in turn: each level
    forks a child that goes on as the IPAM plugin (stdin already read, stdout and stderr
    shared) and exits with its child's status."""
    depth = int(env.get(SELF_DEPTH_VAR, "0") or "0")
    while True:
        if depth >= SELF_DEPTH_MAX:
            _fail(7, f"delegation {depth} deep")
        depth += 1
        sys.stdout.flush()
        try:
            pid = os.fork()
        except OSError as e:  # the cage's process limit
            _fail(999, f"cannot run IPAM plugin {os.path.basename(__file__)!r}: {e}")
        if pid:
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            os._exit(status if status >= 0 else 1)


def _files(d: str) -> dict[str, bytes]:
    """The files of lease directory ``d`` (``lock`` left out) and their contents."""
    out = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        if name != "lock":
            with open(os.path.join(d, name), "rb") as fh:
                out[name] = fh.read()
    return out


def _race_leases(data: bytes) -> None:
    """Run the real plugin on a private copy of the network's lease directory, then write
    what it changed back into the shared one (with no lock around the whole): answers
    what the real plugin answered. Returns only when the config is not one to copy."""
    import subprocess

    conf = _conf(data)
    ipam, name = conf.get("ipam"), conf.get("name")
    if not (isinstance(ipam, dict) and isinstance(ipam.get("dataDir"), str) and isinstance(name, str)
            and name and "/" not in name and name not in (".", "..")):
        return
    shared = os.path.join(ipam["dataDir"], name)
    root = os.path.join(here, f".private-{os.getpid()}")
    private = os.path.join(root, name)
    os.makedirs(private)
    try:
        before = _files(shared)
        for f, body in before.items():
            with open(os.path.join(private, f), "wb") as fh:
                fh.write(body)
        conf["ipam"] = dict(ipam, dataDir=root)
        p = subprocess.run([real], input=_dumps(conf).encode(), env=env, capture_output=True, check=False)
        after = _files(private)
        os.makedirs(shared, exist_ok=True)
        for f, body in after.items():
            if before.get(f) != body:
                with open(os.path.join(shared, f), "wb") as fh:
                    fh.write(body)
        for f in before.keys() - after.keys():
            try:
                os.unlink(os.path.join(shared, f))
            except FileNotFoundError:
                pass  # another call removed it meanwhile
    finally:
        for d, _, fs in os.walk(root, topdown=False):
            for f in fs:
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
    sys.stdout.buffer.write(p.stdout)
    sys.stderr.buffer.write(p.stderr)
    sys.exit(p.returncode)


if flaw == "ignores-cni-path":
    env["CNI_PATH"] = "/usr/lib/cni"
if flaw == "truncates-long-ids":
    env["CNI_CONTAINERID"] = env.get("CNI_CONTAINERID", "")[:1024]
if flaw == "netns-blocks" and env.get("CNI_NETNS"):
    try:
        open(env["CNI_NETNS"], "rb").close()  # a FIFO: blocks until someone opens it to write
    except OSError:
        pass  # the real plugin reports it
if flaw == "leaks-link" and verb == "ADD":
    name = "lk" + os.urandom(4).hex()
    _ip("link", "add", name, "type", "veth", "peer", "name", name + "p")
if flaw == "hangs-on-del" and verb == "DEL":
    import time

    time.sleep(HANG_BACKSTOP)  # in this process: the harness's kill at its deadline ends it
if flaw == "check-ignores-state" and verb == "CHECK":
    sys.exit(0)
if flaw == "del-skips-netns" and verb == "DEL":
    env["CNI_NETNS"] = ""
if flaw == "del-never-added-fails":
    if verb == "ADD":
        open(_mark("added"), "w").close()
    elif verb == "DEL" and not os.path.exists(_mark("added")):
        _fail(3, f"unknown container {env.get('CNI_CONTAINERID', '')!r}: never added")

stdin = sys.stdin.buffer.read() if flaw in READS_STDIN | REWRITES_OUTPUT else None

if flaw == "case-sensitive-key" and _conf(stdin):
    stdin = _dumps(_drop_recased(_conf(stdin), spec.get("key", "hostPort"))).encode()

if flaw == "template-link" and verb == "ADD":
    if "%" in env.get("CNI_IFNAME", ""):
        _ip("link", "add", "name", env["CNI_IFNAME"], "type", "veth", "peer", "name", "tp" + os.urandom(4).hex())
    for value in _conf(stdin).values():
        if isinstance(value, str) and "%" in value:
            _ip("link", "add", "name", value, "type", "bridge")

if flaw == "delegates-to-itself" and verb in ("ADD", "CHECK", "DEL", "GC", "STATUS"):
    ipam = _conf(stdin).get("ipam")
    if isinstance(ipam, dict) and ipam.get("type") == os.path.basename(__file__):
        _run_self()

if flaw == "del-needs-prev-result" and verb == "DEL" and "prevResult" not in _conf(stdin):
    sys.exit(0)

if flaw == "accepts-any-version":
    asked = _conf(stdin).get("cniVersion")
    if isinstance(asked, str) and asked not in KNOWN_VERSIONS:
        stdin = _dumps(dict(_conf(stdin), cniVersion="1.0.0")).encode()

if flaw == "races-leases" and verb in ("ADD", "DEL"):
    _race_leases(stdin)

if flaw == "del-fails-twice" and verb == "DEL":
    mark = _mark("deleted")
    if os.path.exists(mark):
        _fail(999, "already deleted")
    open(mark, "w").close()

if flaw == "del-does-nothing" and verb == "DEL":
    sys.exit(0)

if flaw == "add-prints-nothing" and verb == "ADD":
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the real plugin's result goes nowhere

if flaw not in REWRITES_OUTPUT:
    if stdin is not None:  # handed on in a memory file: any size, no writer to wait for
        fd = os.memfd_create("stdin")
        os.write(fd, stdin)
        os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(fd, 0)
    os.execve(real, [real], env)

import subprocess  # only the output-rewriting flaws get here

p = subprocess.run([real], input=stdin, env=env, capture_output=True, check=False)
out, err, rc = p.stdout, p.stderr, p.returncode

if flaw == "wrong-cni-version" and verb == "ADD" and rc == 0:
    doc = _loads(out)
    doc["cniVersion"] = "0.4.0" if doc.get("cniVersion") != "0.4.0" else "1.0.0"
    out = _dumps(doc).encode()
if flaw == "error-on-stderr" and rc != 0:
    err, out = out + err, b""
if flaw == "drops-prev-result" and verb == "ADD" and rc == 0 and "prevResult" in _conf(stdin):
    out = _dumps({"cniVersion": _loads(out).get("cniVersion"), "interfaces": [], "ips": [], "dns": {}}).encode()

sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(rc)
