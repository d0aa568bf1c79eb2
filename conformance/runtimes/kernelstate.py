"""Free addresses and ports on this machine, and what the kernel and the disk hold.

The lanes assert on these: the links on a bridge, the firewall lines naming a network or a
pod, nftables tables, host-local's leases, sysctls, and HTTP answers from a namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import socket
import subprocess
import sys
import time

from conformance.runtimes.commands import ip_json, run, tool
from conformance.proc import PLAIN_PATH


# ---------------------------------------------------------------- addresses and ports

def pick_subnet(avoid: tuple[ipaddress.IPv4Network, ...] = ()) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no route or address of the machine, nor ``avoid``, overlaps."""
    taken = list(avoid)
    for r in ip_json("-4", "route", "show", "table", "all"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                taken.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
            except ValueError:
                pass
    for a in ip_json("-4", "addr", "show"):
        for i in a.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{i['local']}/{i['prefixlen']}", strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(128, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise AssertionError("no free 10.x.y.0/24 on this machine")


def pick_port() -> int:
    """A TCP port nothing listens on (IPv4 and IPv6), outside the ephemeral range."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        try:
            for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.bind((addr, port))
            return port
        except OSError:
            continue
    raise AssertionError("no free TCP port")


# ---------------------------------------------------------------- what the kernel holds

def bridge_ports(bridge: str, ns: str | None = None) -> list[dict]:
    return [l for l in ip_json("-d", "link", "show", ns=ns) if l.get("master") == bridge]


def link_exists(name: str, ns: str | None = None) -> bool:
    return any(l["ifname"] == name for l in ip_json("link", "show", ns=ns))


def firewall_lines(needles: list[str], ns: str | None = None) -> list[str]:
    """Lines of the nftables ruleset and of iptables-save/ip6tables-save holding a needle."""
    out = []
    prefix = ["ip", "netns", "exec", ns] if ns else []
    for argv in (["nft", "list", "ruleset"], ["iptables-save"], ["ip6tables-save"]):
        if not tool(argv[0]):
            continue
        p = run(prefix + argv, check=False)
        out += [f"{argv[0]}: {line.strip()}" for line in p.stdout.decode(errors="replace").splitlines()
                if any(n in line for n in needles)]
    return out


def firewall_mentions(needles: list[str], port: int | None = None, ns: str | None = None) -> list[str]:
    """``firewall_lines`` holding a needle, plus those naming TCP/UDP port ``port``."""
    lines = firewall_lines(needles, ns=ns)
    if port:
        mentions = re.compile(rf"(dport|\.|:) {port}\b|:{port}\b")
        lines += [l for l in firewall_lines([str(port)], ns=ns) if mentions.search(l) and l not in lines]
    return lines


def tc_json(args: list[str], ns: str | None = None) -> list[dict]:
    """``tc -j ARGS`` (inside named network namespace ``ns``) parsed (rates in bytes/s)."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    out = run(prefix + ["tc", "-j"] + args).stdout
    return json.loads(out) if out.strip() else []


def nft_tables(ns: str | None = None) -> set[str]:
    if not tool("nft"):
        return set()
    prefix = ["ip", "netns", "exec", ns] if ns else []
    p = run(prefix + ["nft", "list", "tables"], check=False)
    return {l.strip() for l in p.stdout.decode().splitlines() if l.startswith("table ")}


def drop_idle_tables(before: set[str]) -> None:
    """Delete the ``cnipy_*`` nftables tables (in the machine's namespace) that were not there
    before and hold no attachment any more (our plugins keep their empty skeleton tables)."""
    for t in sorted(nft_tables() - before):
        if "cnipy" not in t:
            continue
        p = run(["nft", "list"] + t.split(), check=False)
        if p.returncode == 0 and b'comment "cnipy:' not in p.stdout:
            run(["nft", "delete"] + t.split(), check=False)


def leases(data_dir: str, network: str) -> dict[str, str]:
    """host-local's leases of ``network``: address -> file content."""
    d = os.path.join(data_dir, network)
    out = {}
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f == "lock" or f.startswith("last_reserved_ip"):
                continue
            with open(os.path.join(d, f), newline="") as fh:
                out[f] = fh.read()
    return out


def sysctl_read(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctl_write(key: str, value: str) -> None:
    try:
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    except OSError:
        pass


HTTP_GET = ("import sys, urllib.request\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')\n")


def http_get(url: str, *, netns: str | None = None, pid: int | None = None, deadline: float = 10) -> str:
    """GET ``url`` from the machine, from named netns ``netns`` or from the network namespace
    of process ``pid`` (a pod), retrying until ``deadline`` seconds have passed (the server
    in the container may still be starting)."""
    argv = [sys.executable, "-I", "-c", HTTP_GET, url]
    where = ""
    if netns:
        argv, where = ["ip", "netns", "exec", netns] + argv, f" in {netns}"
    elif pid:
        argv, where = ["nsenter", "-t", str(pid), "-n", "--"] + argv, f" in the network namespace of pid {pid}"
    end = time.monotonic() + deadline
    while True:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env={"PATH": PLAIN_PATH, "no_proxy": "*", "NO_PROXY": "*"})
        if p.returncode == 0 or time.monotonic() > end:
            break
        time.sleep(0.2)
    if p.returncode != 0:
        raise AssertionError(f"GET {url}{where} failed: {p.stderr.strip()[-500:]}")
    return p.stdout
