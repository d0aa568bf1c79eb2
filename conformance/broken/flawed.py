#!/usr/bin/python3
"""A deliberately broken CNI plugin, for the harness's own tests.

Installed under a plugin type name (e.g. ``host-local``) next to ``.flaw.json``
(``{"real": "/path/to/real/plugin", "flaw": "NAME"}``), it runs the real plugin and breaks
one rule of the spec. Each flaw must be caught by a named conformance check:

- ``del-fails-twice``: the second DEL of an attachment fails (F25-del-twice);
- ``wrong-cni-version``: ADD results claim a cniVersion other than the config's (C14);
- ``leaks-link``: ADD also creates a veth pair in the host namespace that DEL forgets
  (the leak checker);
- ``ignores-cni-path``: the real plugin is run with CNI_PATH=/usr/lib/cni whatever the
  runtime said, so a delegated IPAM is not found where the runtime put it (J43);
- ``error-on-stderr``: failures print their error JSON on stderr only (B9/B11);
- ``del-does-nothing``: DEL succeeds without removing anything (the leak checker, e.g.
  portmap's rules left in the firewall);
- ``case-sensitive-key``: reads one key (``"key"`` in ``.flaw.json``, default ``hostPort``)
  case-sensitively, as a plugin matching keys exactly would: a re-cased spelling of it
  (``HostPort``, what containerd sends) is ignored (K-recased-keys).
"""
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, ".flaw.json")) as f:
    spec = json.load(f)
flaw, real = spec["flaw"], spec["real"]
env = dict(os.environ)
verb = env.get("CNI_COMMAND", "")
if flaw == "ignores-cni-path":
    env["CNI_PATH"] = "/usr/lib/cni"
stdin = sys.stdin.buffer.read()


def _drop_recased(v, key):
    """``v`` without the keys that spell ``key`` in another case (the real plugin, being Go,
    would read them as ``key``)."""
    if isinstance(v, dict):
        return {k: _drop_recased(x, key) for k, x in v.items() if k == key or k.lower() != key.lower()}
    if isinstance(v, list):
        return [_drop_recased(x, key) for x in v]
    return v


if flaw == "case-sensitive-key":
    try:
        stdin = json.dumps(_drop_recased(json.loads(stdin), spec.get("key", "hostPort"))).encode()
    except ValueError:
        pass  # not JSON: the real plugin reports it

if flaw == "del-fails-twice" and verb == "DEL":
    mark = os.path.join(here, f".deleted-{env.get('CNI_CONTAINERID')}-{env.get('CNI_IFNAME')}")
    if os.path.exists(mark):
        sys.stdout.write(json.dumps({"cniVersion": "1.0.0", "code": 999, "msg": "already deleted"}))
        sys.exit(1)
    open(mark, "w").close()

if flaw == "del-does-nothing" and verb == "DEL":
    sys.exit(0)

p = subprocess.run([real], input=stdin, env=env, capture_output=True)
out, err, rc = p.stdout, p.stderr, p.returncode

if flaw == "wrong-cni-version" and verb == "ADD" and rc == 0:
    doc = json.loads(out)
    doc["cniVersion"] = "0.4.0" if doc.get("cniVersion") != "0.4.0" else "1.0.0"
    out = json.dumps(doc).encode()
if flaw == "leaks-link" and verb == "ADD" and rc == 0:
    name = "lk" + os.urandom(4).hex()
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], capture_output=True)
if flaw == "error-on-stderr" and rc != 0:
    err, out = out + err, b""

sys.stdout.buffer.write(out)
sys.stderr.buffer.write(err)
sys.exit(rc)
