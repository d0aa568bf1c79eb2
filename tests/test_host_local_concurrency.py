"""host-local under parallel load: many plugin processes at once on one store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.test_host_local_common import addresses, hl, leases, make_conf

DUAL = {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64"}]]}


def _parallel(calls):
    """Run ``hl(*call)`` for every call at once (each is its own process)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda c: hl(*c[0], **c[1]), calls))


def _owners(data_dir) -> dict[bytes, list[str]]:
    out: dict[bytes, list[str]] = {}
    for ip, owner in leases(data_dir).items():
        out.setdefault(owner, []).append(ip)
    return out


def test_32_parallel_adds_get_32_distinct_addresses(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    outs = _parallel([((our_bin, "ADD", conf), {"cid": f"c{i:02d}"}) for i in range(32)])
    got = [addresses(o) for o in outs]
    v4 = {a[0] for a in got}
    v6 = {a[1] for a in got}
    assert len(v4) == 32 and len(v6) == 32
    assert v4 == {f"10.9.0.{i}/24" for i in range(2, 34)}  # exactly the first 32, no gaps
    owners = _owners(tmp_path)
    assert len(owners) == 32 and all(len(ips) == 2 for ips in owners.values())
    for i, a in enumerate(got):  # each result matches that container's lease files
        assert sorted(owners[f"c{i:02d}\r\neth0".encode()]) == sorted(x.split("/")[0] for x in a)


def test_parallel_adds_of_ours_and_the_reference_mixed(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    calls = [(((our_bin if i % 2 else ref_bin), "ADD", conf), {"cid": f"m{i:02d}"}) for i in range(24)]
    got = [addresses(o) for o in _parallel(calls)]
    assert len({a[0] for a in got}) == 24 and len({a[1] for a in got}) == 24
    assert len(leases(tmp_path)) == 48


def test_parallel_add_del_mix_leaves_a_consistent_store(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    olds = [f"old{i:02d}" for i in range(16)]
    for o in _parallel([((our_bin, "ADD", conf), {"cid": c}) for c in olds]):
        assert o.ok, o
    calls = []
    for i in range(16):
        calls.append(((our_bin if i % 2 else ref_bin, "DEL", conf), {"cid": olds[i]}))
        calls.append(((ref_bin if i % 2 else our_bin, "ADD", conf), {"cid": f"new{i:02d}"}))
        calls.append(((our_bin, "DEL", conf), {"cid": f"never{i:02d}"}))
    outs = _parallel(calls)
    for o in outs:
        assert o.ok, o
    owners = _owners(tmp_path)
    assert sorted(owners) == sorted(f"new{i:02d}\r\neth0".encode() for i in range(16))
    assert all(len(ips) == 2 and {":" in ip for ip in ips} == {True, False} for ips in owners.values())
    added = [addresses(o) for o in outs[1::3]]
    for i, a in enumerate(added):
        assert sorted(owners[f"new{i:02d}\r\neth0".encode()]) == sorted(x.split("/")[0] for x in a)
