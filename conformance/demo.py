"""The main job, end to end: a throwaway "container" joins a network and leaves it.

Everything happens inside network namespaces this script makes (a "host" and a
"container"), never in the machine's own namespace, and everything is removed at the end,
also on failure. Plugins run as separate processes, exactly as a runtime execs them.

The network is loopback + bridge (with host-local as its IPAM); portmap joins the chain
with issue #5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

SUBNET = "10.250.7.0/24"


def sh(*argv: str, ns: str | None = None, check: bool = True) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def plugin(cni_path: str, name: str, command: str, conf: dict, *, host: str, netns: str,
           cid: str, ifname: str) -> dict | None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": cni_path, "CNI_ARGS": ""}
    p = subprocess.run(["ip", "netns", "exec", host, os.path.join(cni_path, name)],
                       input=json.dumps(conf).encode(), env=env, capture_output=True)
    out = p.stdout.decode()
    if p.returncode != 0:
        raise RuntimeError(f"{name} {command} failed: {out or p.stderr.decode()}")
    return json.loads(out) if out.strip() else None


def step(n: int, text: str) -> None:
    print(f"\n\033[1m[{n}] {text}\033[0m" if sys.stdout.isatty() else f"\n[{n}] {text}")


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cni-path", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dist", "bin"))
    opts = ap.parse_args()
    tag = uuid.uuid4().hex[:6]
    host, ctr = f"demo-host-{tag}", f"demo-ctr-{tag}"
    ctr_path = f"/var/run/netns/{ctr}"
    data_dir = tempfile.mkdtemp(prefix="cni-demo-")
    cid = f"demo-{tag}"
    br_conf = {"cniVersion": "1.1.0", "name": "demo-net", "type": "bridge", "bridge": f"demobr{tag[:6]}",
               "isGateway": True,
               "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": data_dir,
                        "routes": [{"dst": "0.0.0.0/0"}]}}
    lo_conf = {"cniVersion": "1.1.0", "name": "demo-net", "type": "loopback"}
    common = dict(host=host, netns=ctr_path, cid=cid)
    ok = False
    try:
        step(1, f"Create a throwaway host namespace ({host}) and a container namespace ({ctr})")
        sh("ip", "netns", "add", host)
        sh("ip", "netns", "add", ctr)
        print(indent(sh("ip", "-br", "link", ns=ctr)))

        step(2, "loopback ADD: bring up lo inside the container")
        lo_res = plugin(opts.cni_path, "loopback", "ADD", lo_conf, ifname="lo", **common)
        print(indent(json.dumps(lo_res, indent=2)))

        step(3, f"bridge ADD: a veth from the container to bridge {br_conf['bridge']}, an address from "
                f"host-local ({SUBNET})")
        res = plugin(opts.cni_path, "bridge", "ADD", br_conf, ifname="eth0", **common)
        print(indent(json.dumps(res, indent=2)))
        addr = res["ips"][0]["address"]
        gw = res["ips"][0]["gateway"]
        print(f"    lease store: {sorted(os.listdir(os.path.join(data_dir, 'demo-net')))}")

        step(4, "What the kernel now holds")
        print("    container addresses:")
        print(indent(indent(sh("ip", "-br", "addr", ns=ctr))))
        print("    container routes:")
        print(indent(indent(sh("ip", "route", ns=ctr))))
        print("    host side (the throwaway host namespace):")
        print(indent(indent(sh("ip", "-br", "addr", ns=host))))

        step(5, "Prove it works: ping both ways")
        ip_only = addr.split("/")[0]
        print(indent(sh("ping", "-c", "2", "-W", "2", ip_only, ns=host).strip().splitlines()[-2]))
        print(indent(sh("ping", "-c", "2", "-W", "2", gw, ns=ctr).strip().splitlines()[-2]))
        plugin(opts.cni_path, "bridge", "CHECK", dict(br_conf, prevResult=res), ifname="eth0", **common)
        plugin(opts.cni_path, "loopback", "CHECK", dict(lo_conf, prevResult=lo_res), ifname="lo", **common)
        print("    CHECK: bridge (and host-local through it) and loopback agree the attachment is intact")

        step(6, "Remove the container: DEL in reverse order, then the namespaces")
        plugin(opts.cni_path, "bridge", "DEL", br_conf, ifname="eth0", **common)
        plugin(opts.cni_path, "loopback", "DEL", lo_conf, ifname="lo", **common)
        leases = [f for f in os.listdir(os.path.join(data_dir, "demo-net")) if f[0].isdigit() or ":" in f]
        host_links = [line.split()[0] for line in sh("ip", "-br", "link", ns=host).splitlines()]
        veths = [l for l in host_links if l.startswith("veth")]
        print(f"    host side after DEL: {', '.join(host_links)} (the bridge stays, as with the reference)")
        sh("ip", "netns", "delete", ctr)
        sh("ip", "netns", "delete", host)
        left = [n for n in (host, ctr) if os.path.exists(f"/var/run/netns/{n}")]
        print(f"    leases left: {leases or 'none'}; veths left: {veths or 'none'}; namespaces left: {left or 'none'}")
        ok = not leases and not veths and not left
    finally:
        for n in (ctr, host):
            if os.path.exists(f"/var/run/netns/{n}"):
                sh("ip", "netns", "delete", n, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("\ndemo: OK" if ok else "\ndemo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
