"""Run firewall backend operations in the current network namespace, for tests/test_firewall.py.

Usage (inside a throwaway namespace): ``ip netns exec NS python3 -IS tests/fw_driver.py``
with a JSON list of operations on stdin; prints one JSON object per operation:
``{"ok": true, "ms": 3.2}`` or ``{"ok": false, "code": 110, "msg": "...", "ms": ...}``.

Operation: ``{"op": "add"|"del"|"check"|"gc"|"select"|"available", "backend": "nftables",
"owner": [network, container_id, ifname], "rules": [[source, subnet], ...] (for "del":
optional, the rules the caller believes the owner has),
"network": ..., "keep": [[cid, ifname], ...], "name": ...}``. ``ms`` is the wall time of the
call, tool execs included.
"""

from __future__ import annotations

import sys
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0])

from cnilib.errors import CNIError  # noqa: E402
from cnilib.firewall import MasqRule, Owner, make, select  # noqa: E402
from cnilib.ip import parse_cidr, parse_ip  # noqa: E402
from cnilib.jsonio import dumps, loads  # noqa: E402


def _rules(spec: list) -> list[MasqRule]:
    return [MasqRule(parse_ip(src), parse_cidr(net)) for src, net in spec]


def one(op: dict, backends: dict) -> dict:
    name = op.get("backend", "nftables")
    b = backends.setdefault(name, make(name)) if op["op"] not in ("select",) else None
    t0 = time.perf_counter()
    try:
        if op["op"] == "add":
            b.masquerade().add(Owner(*op["owner"]), _rules(op["rules"]))
        elif op["op"] == "del":
            b.masquerade().delete(Owner(*op["owner"]), _rules(op["rules"]) if op.get("rules") else None)
        elif op["op"] == "check":
            b.masquerade().check(Owner(*op["owner"]), _rules(op["rules"]))
        elif op["op"] == "gc":
            b.masquerade().gc(op["network"], {tuple(k) for k in op["keep"]})
        elif op["op"] == "bench":
            return bench(b, op["existing"], op.get("rounds", 5))
        elif op["op"] == "available":
            return {"ok": True, "reason": b.available()}
        elif op["op"] == "select":
            return {"ok": True, "backend": select(op.get("name")).name}
        else:
            raise ValueError(op["op"])
    except CNIError as e:
        return {"ok": False, "code": e.code, "msg": e.msg, "ms": (time.perf_counter() - t0) * 1000}
    return {"ok": True, "ms": (time.perf_counter() - t0) * 1000}


def bench(b, existing: int, rounds: int) -> dict:
    """Median ms of the masquerade feature's add / delete / check of one dual-stack owner
    with ``existing`` other owners installed (populated through the backend itself, then
    removed again)."""
    def addrs(i: int) -> list[MasqRule]:
        return _rules([[f"10.{100 + i // 60000}.{i // 250 % 240}.{i % 250 + 2}", "10.100.0.0/16"],
                       [f"fd00:99::{i + 2:x}", "fd00:99::/64"]])

    m = b.masquerade()
    others = [Owner("benchnet", f"{i:064x}", "eth0") for i in range(existing)]
    for i, o in enumerate(others):
        m.add(o, addrs(i))
    probe, rules = Owner("benchnet", "probe", "eth0"), addrs(existing)
    t_add, t_del, t_check, t_readd = [], [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        m.add(probe, rules)
        t1 = time.perf_counter()
        m.check(probe, rules)
        t2 = time.perf_counter()
        m.add(probe, rules)
        t3 = time.perf_counter()
        m.delete(probe)
        t4 = time.perf_counter()
        t_add.append(t1 - t0)
        t_check.append(t2 - t1)
        t_readd.append(t3 - t2)
        t_del.append(t4 - t3)
    m.gc("benchnet", set())

    def med(xs: list[float]) -> float:
        return round(sorted(xs)[len(xs) // 2] * 1000, 1)

    return {"ok": True, "existing": existing, "add_ms": med(t_add), "del_ms": med(t_del),
            "check_ms": med(t_check), "readd_ms": med(t_readd)}


def main() -> None:
    ops = loads(sys.stdin.buffer.read())
    backends: dict = {}
    out = [one(op, backends) for op in ops]
    sys.stdout.write(dumps(out, indent=False) + "\n")


if __name__ == "__main__":
    main()
