#!/usr/bin/python3 -IS
"""A deliberately broken CNI plugin, for the harness's own tests.

Installed under a plugin type name (e.g. ``host-local``) next to ``.flaw.json``
(``{"real": "/path/to/real/plugin", "flaw": "NAME"}``), it runs the real plugin and breaks
one rule of the spec. Each flaw must be caught by a named conformance check:

- ``del-fails-twice``: the second DEL of an attachment fails (F25-del-twice);
- ``wrong-cni-version``: ADD results claim a cniVersion other than the config's (C14);
- ``leaks-link``: every ADD also creates a veth pair in the host namespace that DEL
  forgets (the leak checker);
- ``ignores-cni-path``: the real plugin is run with CNI_PATH=/usr/lib/cni whatever the
  runtime said, so a delegated IPAM is not found where the runtime put it (J43);
- ``error-on-stderr``: failures print their error JSON on stderr only (B9/B11);
- ``del-does-nothing``: DEL succeeds without removing anything (the leak checker, e.g.
  portmap's rules left in the firewall);
- ``case-sensitive-key``: reads one key (``"key"`` in ``.flaw.json``, default ``hostPort``)
  case-sensitively, as a plugin matching keys exactly would: a re-cased spelling of it
  (``HostPort``, what containerd sends) is ignored (K-recased-keys);
- ``netns-blocks``: opens CNI_NETNS for reading without looking first, as a plugin that
  does not check it is a namespace: a FIFO there blocks it (A7-netns-special-file);
- ``template-link``: hands names with ``%`` to the kernel unchecked: CNI_IFNAME ``eth%d``
  and a config value such as ``"bridge": "br%d"`` become links ``eth0``/``br0`` (created
  in the namespace the plugin runs in) before the real plugin refuses them
  (A4-ifname-template, K-ifname-template-key);
- ``truncates-long-ids``: keeps only the first 1024 characters of CNI_CONTAINERID, as a
  plugin storing IDs in a fixed-size field: two long IDs with a common prefix become one
  attachment (A5-long-container-id);
- ``delegates-to-itself``: when ``ipam.type`` names the plugin's own type, runs itself as
  that IPAM plugin, as a plugin without a cycle guard does (J-self-delegation). It stops
  by itself at depth 48, a backstop only: the harness runs it under a process limit far
  below that (conformance/contain.py).

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
# Flaws that change or look into stdin, and flaws that rewrite the real plugin's output.
READS_STDIN = {"case-sensitive-key", "template-link", "delegates-to-itself"}
REWRITES_OUTPUT = {"wrong-cni-version", "error-on-stderr"}


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


def _run_self(data: bytes) -> None:
    """Exec ourselves as the delegated IPAM plugin (same environment and stdin) and
    answer what it answered."""
    import subprocess

    depth = int(env.get(SELF_DEPTH_VAR, "0") or "0")
    if depth >= SELF_DEPTH_MAX:
        sys.stdout.write(_dumps({"cniVersion": "1.0.0", "code": 7, "msg": f"delegation {depth} deep"}))
        sys.exit(1)
    env[SELF_DEPTH_VAR] = str(depth + 1)
    p = subprocess.run([os.path.abspath(__file__)], input=data, env=env, capture_output=True, check=False)
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
        _run_self(stdin)

if flaw == "del-fails-twice" and verb == "DEL":
    mark = os.path.join(here, f".deleted-{env.get('CNI_CONTAINERID')}-{env.get('CNI_IFNAME')}")
    if os.path.exists(mark):
        sys.stdout.write(_dumps({"cniVersion": "1.0.0", "code": 999, "msg": "already deleted"}))
        sys.exit(1)
    open(mark, "w").close()

if flaw == "del-does-nothing" and verb == "DEL":
    sys.exit(0)

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

sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(rc)
