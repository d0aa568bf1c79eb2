"""The main job, end to end: a throwaway "container" joins a network and leaves it.

Everything happens inside network namespaces this script makes (a "host" and a
"container"), never in the machine's own namespace, and everything is removed at the end,
also on failure. Plugins run as separate processes, exactly as a runtime execs them.

The network is loopback + a chain bridge (host-local as its IPAM) -> portmap mapping host
port 8080 to a web server (busybox httpd) in the container, requested from an "outside"
namespace through the host's address and from the host itself on 127.0.0.1.
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
OUTSIDE = ("192.168.250.1", "192.168.250.2")  # host side, outside side of the uplink veth
HOST_PORT = 8080
BUSYBOX = "/bin/busybox"


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


def _fetch(ns: str, url: str) -> str:
    """The body of ``url`` fetched from namespace ``ns`` ("" when nothing answers)."""
    # Python's urllib, not busybox wget: Debian 12's static busybox wget crashes (SIGSEGV)
    # once a connection succeeds.
    client = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", client, url],
                       capture_output=True, text=True, timeout=20)
    return p.stdout if p.returncode == 0 else ""


def _wait_listening(ns: str, port: int) -> None:
    """Until something listens on TCP ``port`` in ``ns`` (5 s at most)."""
    import time

    for _ in range(50):
        if f":{port} " in sh("ss", "-Hltn", ns=ns, check=False):
            return
        time.sleep(0.1)


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
    mappings = [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]
    pm_conf = {"cniVersion": "1.1.0", "name": "demo-net", "type": "portmap",
               "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": mappings}}
    outside = f"demo-out-{tag}"
    common = dict(host=host, netns=ctr_path, cid=cid)
    ok = False
    httpd = None
    try:
        step(1, f"Create a throwaway host namespace ({host}), a container namespace ({ctr}) and an "
                f"outside namespace ({outside}) linked to the host")
        for n in (host, ctr, outside):
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink", "netns", outside, ns=host)
        sh("ip", "addr", "add", f"{OUTSIDE[0]}/24", "dev", "uplink", ns=host)
        sh("ip", "addr", "add", f"{OUTSIDE[1]}/24", "dev", "uplink", ns=outside)
        for n in (host, outside):
            sh("ip", "link", "set", "uplink", "up", ns=n)
            sh("ip", "link", "set", "lo", "up", ns=n)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=host)
        print(indent(sh("ip", "-br", "addr", ns=host)))

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

        step(6, f"portmap ADD (chained after bridge, prevResult = its result): host port {HOST_PORT} -> "
                f"{ip_only}:80")
        pm_res = plugin(opts.cni_path, "portmap", "ADD", dict(pm_conf, prevResult=res), ifname="eth0", **common)
        print(f"    result is bridge's result passed through: {pm_res == res}")
        print(indent(sh("nft", "list", "table", "inet", "cnipy_hostport", ns=host, check=False)
                     or sh("iptables-save", "-t", "nat", ns=host)))

        step(7, "Start a web server in the container and request it through the mapped port")
        www = os.path.join(data_dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write(f"hello from container {cid}\n")
        httpd = subprocess.Popen(["ip", "netns", "exec", ctr, BUSYBOX, "httpd", "-f", "-p", "80", "-h", www])
        _wait_listening(ctr, 80)
        got = []
        for client_ns, url in ((outside, f"http://{OUTSIDE[0]}:{HOST_PORT}/"),
                               (host, f"http://127.0.0.1:{HOST_PORT}/")):
            body = _fetch(client_ns, url)
            got.append(body.strip() == f"hello from container {cid}")
            print(f"    from {client_ns}: GET {url} -> {body.strip()!r}")
        plugin(opts.cni_path, "bridge", "CHECK", dict(br_conf, prevResult=res), ifname="eth0", **common)
        plugin(opts.cni_path, "portmap", "CHECK", dict(pm_conf, prevResult=res), ifname="eth0", **common)
        plugin(opts.cni_path, "loopback", "CHECK", dict(lo_conf, prevResult=lo_res), ifname="lo", **common)
        print("    CHECK: bridge (and host-local through it), portmap and loopback agree the attachment is intact")

        step(8, "Remove the container: DEL in reverse order (portmap, bridge, loopback), then the namespaces")
        httpd.terminate()
        httpd.wait(5)
        plugin(opts.cni_path, "portmap", "DEL", pm_conf, ifname="eth0", **common)
        closed = _fetch(outside, f"http://{OUTSIDE[0]}:{HOST_PORT}/") == ""
        print(f"    port {HOST_PORT} after portmap DEL: {'closed' if closed else 'STILL ANSWERS'}")
        plugin(opts.cni_path, "bridge", "DEL", br_conf, ifname="eth0", **common)
        plugin(opts.cni_path, "loopback", "DEL", lo_conf, ifname="lo", **common)
        leases = [f for f in os.listdir(os.path.join(data_dir, "demo-net")) if f[0].isdigit() or ":" in f]
        host_links = [line.split()[0] for line in sh("ip", "-br", "link", ns=host).splitlines()]
        veths = [l for l in host_links if l.startswith("veth")]
        mapped = [l for l in (sh("nft", "list", "ruleset", ns=host, check=False) +
                              sh("iptables-save", "-t", "nat", ns=host, check=False)).splitlines() if "cnipy:" in l]
        print(f"    host side after DEL: {', '.join(host_links)} (the bridge stays, as with the reference)")
        for n in (ctr, outside, host):
            sh("ip", "netns", "delete", n)
        left = [n for n in (host, ctr, outside) if os.path.exists(f"/var/run/netns/{n}")]
        print(f"    leases left: {leases or 'none'}; veths left: {veths or 'none'}; port mappings left: "
              f"{mapped or 'none'}; namespaces left: {left or 'none'}")
        ok = all(got) and closed and not leases and not veths and not mapped and not left
    finally:
        if httpd is not None and httpd.poll() is None:
            httpd.kill()
            httpd.wait()
        for n in (ctr, outside, host):
            if os.path.exists(f"/var/run/netns/{n}"):
                sh("ip", "netns", "delete", n, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("\ndemo: OK" if ok else "\ndemo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
