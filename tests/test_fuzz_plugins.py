"""Robustness: every plugin in dist/bin, exec'd as a real process with random environments
and random stdin, must answer like a CNI plugin and leave nothing behind.

For any input a plugin exits 0, or exits non-zero with stdout holding exactly one JSON
object whose ``code`` is an integer the spec allows (1-11, 50, 51, >= 100, 999) and whose
``msg`` is a string. It never prints "Traceback", and never leaves a network namespace or a
file anywhere but the test's own data directory.

Inputs: CNI_COMMAND among the verbs and junk; CNI_CONTAINERID/CNI_IFNAME/CNI_ARGS/CNI_PATH
valid, empty, absent or random; CNI_NETNS absent, pointing at nothing, at a file or
directory or FIFO that is no network namespace, at another kind of namespace, or at a fresh
namespace made for that example (never the machine's own). stdin is random bytes, random
JSON, or a valid config of that plugin (per-plugin seeds; generic for plugins we know
nothing about) with one key changed to a value of every other JSON type, removed, or
joined by a junk key (junk includes kernel name templates such as ``br%d`` and plugin
types, so ``ipam.type`` can name the plugin itself). host-local configs keep ``ipam.dataDir`` under the test's tmp dir
(it is only ever set to values of the wrong type, which must be refused, never removed:
a host-local without dataDir rightly uses /var/lib/cni/networks).

100 examples per plugin (CNI_FUZZ_EXAMPLES=N for a longer hunt; `-s` prints how far the
examples got: outcome counts per verb and kind of stdin).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import NS_TAG, OUR_BIN, PLAIN_PATH, REF_BIN, Netns
from tests.kernel_features import needs

VERBS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]
EXAMPLES = int(os.environ.get("CNI_FUZZ_EXAMPLES", "100"))


def _plugins() -> list[str]:
    if not os.path.isdir(OUR_BIN):
        return []
    return sorted(f for f in os.listdir(OUR_BIN)
                  if os.path.isfile(os.path.join(OUR_BIN, f)) and os.access(os.path.join(OUR_BIN, f), os.X_OK))


PLUGINS = _plugins()


def _allowed_code(code: object) -> bool:
    return type(code) is int and (1 <= code <= 11 or code in (50, 51) or code >= 100)


# --------------------------------------------------------------------------- seeds

PREV_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x"}],
    "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
    "dns": {},
}


def seeds(plugin: str, data_dir: str, resolv: str) -> list[dict]:
    """Valid configs of ``plugin`` (the reference plugin accepts each of them too)."""
    if plugin == "loopback":
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-lo", "type": "loopback"},
            {"cniVersion": "0.3.1", "name": "fuzz-lo", "type": "loopback"},
            {"cniVersion": "1.0.0", "name": "fuzz-lo", "type": "loopback", "prevResult": PREV_100,
             "runtimeConfig": {"portMappings": []}, "args": {"cni": {"ips": ["10.0.0.1"]}}},
        ]
    if plugin == "host-local":
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-hl", "type": "bridge",
             "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10",
                      "rangeEnd": "10.77.0.200", "gateway": "10.77.0.1",
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.77.0.254"}],
                      "dataDir": data_dir}},
            {"cniVersion": "0.4.0", "name": "fuzz-hl6", "type": "ptp",
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": "10.78.0.0/28", "rangeStart": "10.78.0.2", "rangeEnd": "10.78.0.12",
                                   "gateway": "10.78.0.1"}],
                                 [{"subnet": "fd78::/120"}, {"subnet": "fd79::/120"}]],
                      "routes": [{"dst": "::/0", "gw": "fd78::1"}],
                      "resolvConf": resolv, "dataDir": data_dir}},
            {"cniVersion": "1.0.0", "name": "fuzz-hl3", "type": "macvlan",
             "runtimeConfig": {"ips": ["10.79.0.99/24"]}, "capabilities": {"ips": True},
             "args": {"cni": {"ips": ["fd79::99"]}},
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.79.0.0/24"}], [{"subnet": "fd79::/120"}]],
                      "dataDir": data_dir}},
        ]
    if plugin == "portmap":
        def prev(version: str) -> dict:
            ip = {"address": "10.76.0.5/24", "gateway": "10.76.0.1", "interface": 1}
            if version.startswith("0."):
                ip["version"] = "4"
            return {"cniVersion": version, "interfaces": [
                {"name": "cni0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x"}],
                "ips": [ip, {"address": "fd76::5/64", "interface": 1}] if version == "1.1.0" else [ip],
                "dns": {}}
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-pm", "type": "portmap", "capabilities": {"portMappings": True},
             "runtimeConfig": {"portMappings": [
                 {"hostPort": 18090, "containerPort": 80, "protocol": "tcp"},
                 {"hostPort": 18091, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]},
             "prevResult": prev("1.1.0")},
            # The reference runs this one too (no CHECK: 0.3.1), with its iptables backend.
            {"cniVersion": "0.3.1", "name": "fuzz-pm2", "type": "portmap", "backend": "iptables",
             "snat": False, "markMasqBit": 5, "capabilities": {"portMappings": True},
             "runtimeConfig": {"portMappings": [{"hostPort": 18092, "containerPort": 8080, "protocol": "sctp",
                                                 "hostIP": "0.0.0.0"}]},
             "prevResult": prev("0.3.1")},
        ]
    if plugin in ("macvlan", "ipvlan", "vlan"):
        extra = {"macvlan": {"mode": "bridge"}, "ipvlan": {"mode": "l2"}, "vlan": {"vlanId": 42}}[plugin]
        ipam = {"type": "host-local", "subnet": "10.74.0.0/24", "dataDir": data_dir}
        return [
            {"cniVersion": "1.1.0", "name": f"fuzz-{plugin}", "type": plugin, "master": FUZZ_MASTER,
             "mtu": 1400, "ipam": ipam, **extra},
            {"cniVersion": "1.0.0", "name": f"fuzz-{plugin}2", "type": plugin, "master": FUZZ_MASTER,
             "ipam": ipam, **extra},
        ]
    if plugin == "tuning":
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-tu", "type": "tuning", "sysctl": {"net.ipv4.ip_forward": "1"},
             "dataDir": os.path.join(data_dir, "tuning"), "prevResult": PREV_100},
            {"cniVersion": "1.0.0", "name": "fuzz-tu2", "type": "tuning",
             "sysctl": {"net/core/somaxconn": "512"}, "dataDir": os.path.join(data_dir, "tuning"),
             "prevResult": PREV_100},
        ]
    if plugin == "bandwidth":  # no rate: the result passes through, nothing is made
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-bw", "type": "bandwidth", "capabilities": {"bandwidth": True},
             "runtimeConfig": {"bandwidth": {}}, "prevResult": PREV_100},
            # 0.3.1: the reference runs it too (its CHECK wants a veth even with nothing to shape)
            {"cniVersion": "0.3.1", "name": "fuzz-bw2", "type": "bandwidth",
             "prevResult": dict(PREV_100, cniVersion="0.3.1",
                                ips=[{"version": "4", "interface": 0, "address": "127.0.0.1/8"}])},
        ]
    if plugin == "firewall":
        prev = {"cniVersion": "1.0.0", "interfaces": [
            {"name": "fzbr0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "10.73.0.5/24", "gateway": "10.73.0.1", "interface": 1}], "dns": {}}
        return [
            {"cniVersion": "1.1.0", "name": "fuzz-fw", "type": "firewall", "backend": "",
             "ingressPolicy": "same-bridge", "prevResult": dict(prev, cniVersion="1.1.0")},
            {"cniVersion": "1.0.0", "name": "fuzz-fw2", "type": "firewall", "backend": "iptables",
             "prevResult": prev},
        ]
    if plugin == "static":  # versions without CHECK: CHECK wants the addresses on CNI_IFNAME
        return [
            {"cniVersion": "0.3.1", "name": "fuzz-st", "type": "macvlan",
             "ipam": {"type": "static", "addresses": [{"address": "10.72.0.5/24", "gateway": "10.72.0.1"},
                                                      {"address": "fd72::5/64"}],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.72.0.254"}],
                      "dns": {"nameservers": ["10.72.0.1"], "search": ["example.test"]}}},
            {"cniVersion": "0.2.0", "name": "fuzz-st2", "type": "bridge",
             "ipam": {"type": "static", "addresses": [{"address": "10.72.1.5/24"}]}},
        ]
    if plugin == "dhcp":  # no daemon at that socket: every verb fails fast (code 11), cleanly
        ipam = {"type": "dhcp", "daemonSocketPath": os.path.join(data_dir, "dhcp.sock"),
                "request": [{"option": "classless-static-routes"}],
                "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}
        return [{"cniVersion": "1.1.0", "name": "fuzz-dh", "type": "macvlan", "ipam": ipam},
                {"cniVersion": "0.3.1", "name": "fuzz-dh2", "type": "bridge", "ipam": dict(ipam, priority=5)}]
    return [{"cniVersion": "1.1.0", "name": "fuzz-net", "type": plugin}]


def _pin_data_dir(doc: object, data_dir: str, keep_bad_type: bool = False) -> object:
    """Keep host-local's store under the tmp dir whatever a mutation did to ``ipam``:
    every spelling of dataDir (host-local matches keys case-insensitively) goes, and ours
    is put back, unless the mutation gave it a value of a wrong type on purpose."""
    if not isinstance(doc, dict):
        return doc
    for key, ipam in list(doc.items()):
        if key != "ipam" or not isinstance(ipam, dict):
            continue
        bad = ipam.get("dataDir") if keep_bad_type else None
        for k in [k for k in ipam if k.lower() == "datadir"]:
            del ipam[k]
        ipam["dataDir"] = bad if bad is not None and not isinstance(bad, str) else data_dir
    # tuning keeps its backups in a top-level dataDir (default /run/cni/tuning, the
    # machine's): pinned the same way for every config, whatever its type says.
    bad = doc.get("dataDir") if keep_bad_type else None
    for k in [k for k in doc if isinstance(k, str) and k.lower() == "datadir"]:
        del doc[k]
    doc["dataDir"] = bad if bad is not None and not isinstance(bad, str) else os.path.join(data_dir, "tuning")
    return doc


# Values of every JSON type, to put where another type belongs.
JUNK = [None, 0, -1, 2**63, 1.5, True, False, "", "x", "10.0.0.1", "10.0.0.0/8", "fd00::/64", "../../etc",
        [], ["a"], [1], [None], {}, {"a": 1}, {"subnet": "10.0.0.0/8"},
        # kernel name templates (the kernel would expand them: a bridge key "br%d" made br0)
        "br%d", "eth%d", "%s",
        # plugin types: as ipam.type, a plugin delegating to itself or to a non-IPAM plugin
        "bridge", "portmap", "loopback", "host-local"]


def _paths(doc, prefix=()):
    if prefix:
        yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _same_type(a, b) -> bool:
    def kind(x):
        return "num" if type(x) in (int, float) else type(x).__name__

    return kind(a) == kind(b)


def _mutate(seed: dict, path: tuple, op: str, value, data_dir: str) -> dict:
    doc = copy.deepcopy(seed)
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    last = path[-1]
    if op == "delete":
        if isinstance(cur, dict):
            del cur[last]
        else:
            cur.pop(last)
    elif op == "junk_key" and isinstance(cur.get(last) if isinstance(cur, dict) else None, dict):
        cur[last]["fuzzKey\u00e9"] = value
    else:
        cur[last] = value
    return _pin_data_dir(doc, data_dir, keep_bad_type=path[-1:] == ("dataDir",))


# One value of each JSON type (numbers twice: an integer and a fraction).
TYPE_REPS = [None, 7, 1.5, True, "x", [], {}]


def bad_type_mutations(seed: dict, data_dir: str) -> list[tuple[tuple, object, dict]]:
    """For every key of ``seed`` (at any depth): a value of each other JSON type."""
    out = []
    for path in _paths(seed):
        cur = seed
        for p in path:
            cur = cur[p]
        for value in TYPE_REPS:
            if _same_type(value, cur):
                continue
            if path[-1:] == ("dataDir",) and (value is None or isinstance(value, str)):
                continue  # would leave the tmp dir: not a type error, a place
            out.append((path, value, _mutate(seed, path, "set", value, data_dir)))
    return out


# --------------------------------------------------------------------------- running


class Sandbox:
    """Where one plugin's fuzzing may write: a data dir, a cwd that must stay empty, and a
    few paths for CNI_NETNS that are not network namespaces."""

    def __init__(self, root) -> None:
        self.root = str(root)
        self.data_dir = os.path.join(self.root, "data")
        self.cwd = os.path.join(self.root, "cwd")
        self.nothing = os.path.join(self.root, "no-such-netns")
        self.file = os.path.join(self.root, "not-a-netns")
        self.fifo = os.path.join(self.root, "fifo-netns")  # a blocking open(2) would hang on it
        self.resolv = os.path.join(self.root, "resolv.conf")
        for d in (self.data_dir, self.cwd):
            os.makedirs(d, exist_ok=True)
        with open(self.file, "w") as f:
            f.write("not a namespace\n")
        os.mkfifo(self.fifo)
        with open(self.resolv, "w") as f:
            f.write("nameserver 10.77.0.1\nsearch example.org\noptions ndots:2\n")
        self.fixed = self.entries()

    def entries(self) -> set[str]:
        """Everything under the sandbox except the data dir."""
        out = set()
        for d, dirs, files in os.walk(self.root):
            if d == self.data_dir:
                dirs[:] = []
                continue
            out.update(os.path.join(d, x) for x in dirs + files)
        return out


FUZZ_NS_PREFIX = "cnfz"


def _machine_snapshot() -> dict:
    """What a plugin could leave on the machine and we can attribute to this test.

    Other sessions may be testing on the same machine at the same time, so namespaces and
    links are compared per test by conftest's leak check; per example we watch our own
    namespaces (FUZZ_NS_PREFIX) and the places plugins keep state."""
    netns = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    cni = set()
    for base in ("/var/lib/cni", "/run/cni"):
        if os.path.isdir(base):
            for d, _, files in os.walk(base):
                cni.update(os.path.join(d, f) for f in files)
    return {"netns": {n for n in netns if n.startswith(FUZZ_NS_PREFIX) and NS_TAG in n}, "files": cni}


# Plugins run inside a throwaway "host" namespace made for this module, never in the
# machine's own: a fuzzed bridge config without "bridge" would otherwise create cni0 there.
_HOST: dict[str, str] = {}
FUZZ_MASTER = "fzm0"


@pytest.fixture(scope="module", autouse=True)
def fuzz_host_netns():
    name = f"{FUZZ_NS_PREFIX}h-{NS_TAG}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    # A stand-in NIC for the plugins that hang a link off a master (macvlan, ipvlan, vlan).
    subprocess.run(["ip", "-n", name, "link", "add", FUZZ_MASTER, "type", "veth", "peer", "name", "fzm1"], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", FUZZ_MASTER, "up"], check=True)
    _HOST["name"] = name
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name])
        _HOST.clear()


def exec_plugin(binary: str, env: dict, stdin: bytes, cwd: str) -> subprocess.CompletedProcess:
    full = {"PATH": PLAIN_PATH}
    full.update(env)
    argv = ["ip", "netns", "exec", _HOST["name"], binary] if _HOST else [binary]
    return subprocess.run(argv, input=stdin, env=full, capture_output=True, timeout=30, cwd=cwd)


def check_answer(p: subprocess.CompletedProcess, command: str | None, what: str) -> None:
    """The protocol's invariants for one invocation."""
    where = f"{what}\nrc={p.returncode}\nstdout={p.stdout[:2000]!r}\nstderr={p.stderr[:2000]!r}"
    assert b"Traceback" not in p.stdout and b"Traceback" not in p.stderr, where
    assert p.returncode >= 0, f"killed by signal {-p.returncode}: {where}"
    if p.returncode == 0:
        if command in ("ADD", "VERSION"):
            doc = json.loads(p.stdout)  # one document, nothing around it but whitespace
            assert isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str), where
        else:
            assert p.stdout == b"", where
        return
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        pytest.fail(f"stdout of a failure is not exactly one JSON document: {where}", pytrace=False)
    assert isinstance(doc, dict), where
    assert _allowed_code(doc.get("code")), f"code not in the spec's set: {where}"
    assert isinstance(doc.get("msg"), str), where
    if "details" in doc:
        assert isinstance(doc["details"], str), where


# --------------------------------------------------------------------------- strategies

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)
CONF_LIKE = st.fixed_dictionaries(
    {"cniVersion": st.sampled_from(["0.1.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "9.9.9", ""]) | JSON_VALUES,
     "name": st.sampled_from(["fuzz", "", "a b"]) | JSON_VALUES},
    optional={"type": JSON_VALUES, "ipam": JSON_VALUES, "prevResult": JSON_VALUES, "runtimeConfig": JSON_VALUES,
              "args": JSON_VALUES, "dns": JSON_VALUES, "capabilities": JSON_VALUES,
              "cni.dev/valid-attachments": JSON_VALUES},
)


def _mostly(good, bad, percent_good: int = 85):
    """``good`` most of the time (hypothesis' one_of does not pick branches evenly)."""
    return st.integers(0, 99).flatmap(lambda n: good if n < percent_good else bad)


def _var(valid: list[str]):
    """A CNI_* value: mostly valid (so examples get past the environment check), else
    absent (None), empty or random."""
    return _mostly(st.sampled_from(valid), st.one_of(st.none(), st.just(""), TEXT))


# The longest CNI_CONTAINERID execve(2) passes: MAX_ARG_STRLEN (128 KiB) with the name and the NUL.
MAX_ENV_ID = 131072 - len("CNI_CONTAINERID=") - 1
# Valid container IDs longer than a page (lease files used to be read 4 KB at a time; libcni
# sets no limit): around the 4 KB edge, far past it, and the longest the kernel passes.
LONG_IDS = st.one_of(st.sampled_from([4095, 4096, 4097, 5000, MAX_ENV_ID]), st.integers(4000, 20000)).map(
    lambda n: "L" * n)


ENVS = st.fixed_dictionaries({
    "CNI_COMMAND": _mostly(st.sampled_from(VERBS),
                           st.one_of(st.none(), st.sampled_from(["add", "", "FOO", "ADD ", "VERSIONS"]), TEXT)),
    "CNI_CONTAINERID": _mostly(_var(["c1", "ctr-2", "f" * 64]), LONG_IDS, 90),
    "CNI_IFNAME": _var(["eth0", "lo", "net1", "a" * 15, "eth%d"]),
    "CNI_ARGS": _mostly(st.sampled_from(
        ["", "", "", "IgnoreUnknown=1", "IP=10.77.0.50", "FOO=bar", "IgnoreUnknown=1;K8S_POD_NAME=p", "IP=fd78::5",
         "IP=300.1.1.1", "IP=10.77.0.50/24", "novalue", "IgnoreUnknown=maybe", "K8S_POD_NAMESPACE=x;IP=10.78.0.3"]),
        st.one_of(st.none(), TEXT)),
    "CNI_PATH": _var([OUR_BIN, f"{OUR_BIN}:{REF_BIN}", "/nonexistent"]),
    "CNI_NETNS": _mostly(st.just("fresh"), st.sampled_from(["absent", "empty", "nothing", "file", "dir", "uts", "null",
                                                            "fifo"]), 70),
})


@st.composite
def stdins(draw, seed_list: list[dict], data_dir: str) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["bytes", "json", "conf_like", "seed", "mutated", "mutated", "mutated", "bad_type"]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=64))
    if kind == "json":
        return kind, json.dumps(_pin_data_dir(draw(JSON_VALUES), data_dir)).encode()
    if kind == "conf_like":
        return kind, json.dumps(_pin_data_dir(draw(CONF_LIKE), data_dir)).encode()
    seed = draw(st.sampled_from(seed_list))
    if kind == "seed":
        return kind, json.dumps(seed).encode()
    if kind == "bad_type":
        _, _, doc = draw(st.sampled_from(bad_type_mutations(seed, data_dir)))
        return kind, json.dumps(doc).encode()
    path = draw(st.sampled_from(list(_paths(seed))))
    op = draw(st.sampled_from(["set", "set", "delete", "junk_key"]))
    value = draw(st.sampled_from(JUNK) | JSON_VALUES)
    if path[-1:] == ("dataDir",) and op != "junk_key":
        op, value = "set", draw(st.sampled_from([0, True, [], {}, ["x"]]))
    doc = _mutate(seed, path, op, value, data_dir)
    raw = json.dumps(doc).encode()
    if draw(st.integers(0, 9)) == 0:  # and sometimes a broken byte
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=2)) + raw[at + 1:]
    return kind, raw


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def plugin_list(our_bin):
    found = _plugins()
    if not found:
        pytest.fail(f"no plugins in {our_bin}: run `make bin`", pytrace=False)
    return found


def test_every_plugin_is_fuzzed(plugin_list):
    # The parametrization below was made when the tests were collected; a plugin added
    # since (make bin) would go unfuzzed this run.
    assert plugin_list == PLUGINS


def _with_kernel_needs(plugins: list[str]) -> list:
    """ipvlan and vlan seeds can only be valid on a kernel with those links: VM lane."""
    kinds = {"ipvlan": "ipvlan", "vlan": "vlan"}
    return [pytest.param(p, marks=needs(kinds[p])) if p in kinds else p for p in plugins]


# dhcp's seeds need a daemon and a DHCP server on a LAN to succeed: tests/test_dhcp.py runs
# valid dhcp configs end to end; here its seeds only start the mutations.
NEEDS_A_SERVER = ("dhcp",)


@pytest.mark.parametrize("plugin", _with_kernel_needs([p for p in PLUGINS if p not in NEEDS_A_SERVER])
                         or ["(none)"])
def test_seed_configs_are_valid(our_bin, plugin, tmp_path, netns):
    """The seeds really are valid configs (for the reference too, where it has the plugin),
    so mutations start from configs that get far into the plugin."""
    box = Sandbox(tmp_path)
    binary = os.path.join(our_bin, plugin)
    if not os.path.exists(binary):
        pytest.fail(f"no plugin {plugin} in {our_bin}", pytrace=False)
    for i, seed in enumerate(seeds(plugin, box.data_dir, box.resolv)):
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"seed{i}", "CNI_NETNS": netns.path, "CNI_IFNAME": "eth0",
               "CNI_PATH": our_bin, "CNI_ARGS": ""}
        if plugin in ("loopback", "tuning"):  # tuning's seeds tune the prevResult's interface, lo
            env["CNI_IFNAME"] = "lo"
        for bin_dir in (our_bin, REF_BIN):
            b = os.path.join(bin_dir, plugin)
            if bin_dir == REF_BIN and (not os.path.exists(b) or seed["cniVersion"] == "1.1.0"):
                continue  # the reference (libcni 1.1) knows no 1.1.0
            e = dict(env, CNI_PATH=bin_dir)
            add = exec_plugin(b, e, json.dumps(seed).encode(), box.cwd)
            check_answer(add, "ADD", f"seed {i} ADD with {b}")
            assert add.returncode == 0, (b, seed, add)
            if seed["cniVersion"] not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
                chk = dict(seed, prevResult=json.loads(add.stdout))
                p = exec_plugin(b, dict(e, CNI_COMMAND="CHECK"), json.dumps(chk).encode(), box.cwd)
                check_answer(p, "CHECK", f"seed {i} CHECK with {b}")
                assert p.returncode == 0, (b, seed, p)
            p = exec_plugin(b, dict(e, CNI_COMMAND="DEL"), json.dumps(seed).encode(), box.cwd)
            check_answer(p, "DEL", f"seed {i} DEL with {b}")
            assert p.returncode == 0, (b, seed, p)
    assert box.entries() == box.fixed


@pytest.mark.parametrize("plugin", PLUGINS or ["(none)"])
def test_bad_type_for_every_key(our_bin, plugin, tmp_path, netns):
    """Every key of every seed config given a value of every other JSON type: a clean CNI
    answer each time. The verbs take turns (ADD, CHECK, DEL), so each key meets each verb."""
    box = Sandbox(tmp_path)
    binary = os.path.join(our_bin, plugin)
    before = _machine_snapshot()
    jobs = []
    for i, seed in enumerate(seeds(plugin, box.data_dir, box.resolv)):
        for path, value, doc in bad_type_mutations(seed, box.data_dir):
            verb = ("ADD", "CHECK", "DEL")[len(jobs) % 3]
            sent = doc
            if verb == "CHECK" and isinstance(doc.get("cniVersion"), str):
                sent = dict(doc, cniVersion="1.1.0")  # CHECK needs 0.4.0+
            env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": f"bt{len(jobs)}", "CNI_NETNS": netns.path,
                   "CNI_IFNAME": "lo" if plugin == "loopback" else "eth0", "CNI_PATH": our_bin, "CNI_ARGS": ""}
            jobs.append((verb, f"seed {i} {'.'.join(map(str, path))} = {value!r} ({verb})", env,
                         json.dumps(sent).encode()))
    assert jobs
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda j: exec_plugin(binary, j[2], j[3], box.cwd), jobs))
    for (verb, what, _, _), p in zip(jobs, results):
        check_answer(p, verb, what)
    after = _machine_snapshot()
    assert after["netns"] == before["netns"] and after["files"] <= before["files"], (before, after)
    assert box.entries() == box.fixed


@pytest.mark.parametrize("plugin", PLUGINS or ["(none)"])
def test_fuzz_plugin(our_bin, plugin, tmp_path_factory):
    binary = os.path.join(our_bin, plugin)
    if not os.path.exists(binary):
        pytest.fail(f"no plugin {plugin} in {our_bin}", pytrace=False)
    box = Sandbox(tmp_path_factory.mktemp(f"fuzz-{plugin}"))
    seed_list = seeds(plugin, box.data_dir, box.resolv)
    stats: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(env=ENVS, stdin=stdins(seed_list, box.data_dir))
    def fuzz(env, stdin):
        kind, data = stdin
        before = _machine_snapshot()
        ns = None
        real = {k: v for k, v in env.items() if v is not None and k != "CNI_NETNS"}
        where = env["CNI_NETNS"]
        try:
            if where == "fresh":
                ns = Netns(FUZZ_NS_PREFIX)
                before["netns"].add(ns.name)
                real["CNI_NETNS"] = ns.path
            elif where != "absent":
                real["CNI_NETNS"] = {"empty": "", "nothing": box.nothing, "file": box.file, "dir": box.cwd,
                                     "uts": "/proc/self/ns/uts", "null": "/dev/null", "fifo": box.fifo}[where]
            p = exec_plugin(binary, real, data, box.cwd)
        finally:
            if ns is not None:
                ns.delete()
                before["netns"].discard(ns.name)
        command = real.get("CNI_COMMAND")
        check_answer(p, command if command in VERBS else None, f"{plugin} env={real} stdin({kind})={data[:300]!r}")
        outcome = "ok" if p.returncode == 0 else f"code {json.loads(p.stdout).get('code')} {json.loads(p.stdout).get('msg')[:30]}"
        stats[outcome] = stats.get(outcome, 0) + 1
        if command in ("ADD", "CHECK", "DEL", "GC", "STATUS") and kind in ("seed", "mutated", "bad_type"):
            stats[f"{command} {kind} {outcome}"] = stats.get(f"{command} {kind} {outcome}", 0) + 1
        after = _machine_snapshot()
        assert after["netns"] == before["netns"], f"namespaces changed: {before['netns'] ^ after['netns']}"
        assert after["files"] <= before["files"], f"new files: {after['files'] - before['files']}"
        assert box.entries() == box.fixed, f"files outside the data dir: {box.entries() ^ box.fixed}"

    fuzz()
    print(f"\n{plugin}: {dict(sorted(stats.items()))}")  # with -s: how deep the examples got
    # Not only errors: some examples must have got all the way through.
    assert stats.get("ok", 0) > 0, stats


# --------------------------------------------------------------------------- hostile stores

# What may sit under a name of host-local's store (<dataDir>/<network>/): special files of
# every kind, links, and regular files a crashed or foreign writer left.
STORE_KINDS = ["fifo", "chardev", "socket", "dir", "symlink", "dangling", "empty", "long_lease", "foreign"]
# Names of every role: the lock, round-robin files, the next candidates of each seed's sets,
# the requested addresses of seed 2, a temporary lease, a probe and unrelated names.
STORE_NAMES = ["lock", "last_reserved_ip.0", "last_reserved_ip.1", "10.77.0.10", "10.77.0.11", "10.78.0.2",
               "fd78::", "fd78::1", "10.79.0.1", "10.79.0.99", "fd79::99", ".lease.tmp", ".probe.1", "junk"]
SPECIAL = {"fifo", "chardev", "socket", "dir", "symlink", "dangling"}
HOSTILE_VERBS = ["ADD", "ADD", "ADD", "DEL", "CHECK", "GC", "STATUS"]


def _plant(path: str, kind: str, victim: str) -> None:
    import socket
    import stat
    import tempfile
    import uuid

    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers: endless
    elif kind == "socket":
        short = os.path.join(tempfile.gettempdir(), f"fz{uuid.uuid4().hex[:8]}")  # sun_path is short
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(short)
            os.rename(short, path)
        finally:
            s.close()
            if os.path.exists(short):
                os.unlink(short)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "symlink":
        os.symlink(victim, path)
    elif kind == "dangling":
        os.symlink(victim + ".missing", path)
    else:
        content = {"empty": b"", "long_lease": b"L" * 5000 + b"\r\neth0", "foreign": b"someone\r\neth9"}[kind]
        with open(path, "wb") as f:
            f.write(content)


def _kind(path: str) -> str:
    import stat

    mode = os.lstat(path).st_mode
    for test, name in ((stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "link")):
        if test(mode):
            return name
    return "file"


@pytest.mark.skipif("host-local" not in PLUGINS, reason="no host-local in dist/bin")
def test_fuzz_host_local_hostile_store(our_bin, tmp_path_factory):
    """host-local on stores holding special files, links and foreign leases under every kind
    of name, with short and very long container IDs, and resolvConf pointing at special
    files: every call answers (exec_plugin's timeout makes a hang a failure), and
    * an ADD's addresses are never a planted name, and their leases hold the attachment;
    * after a DEL no regular lease holds the attachment;
    * planted special files and links are never replaced, removed or followed (the victim
      they point at is unchanged), except at the store's own temporary-lease name."""
    binary = os.path.join(our_bin, "host-local")
    box = Sandbox(tmp_path_factory.mktemp("fuzz-hostile-store"))
    seed_list = seeds("host-local", box.data_dir, box.resolv)
    victim = os.path.join(box.root, "victim")
    with open(victim, "wb") as f:
        f.write(b"c1\r\neth0")
    box.fixed = box.entries()
    counter = {"n": 0}
    stats: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(seed_idx=st.integers(0, len(seed_list) - 1),
           planted=st.dictionaries(st.sampled_from(STORE_NAMES), st.sampled_from(STORE_KINDS), max_size=4),
           resolv_kind=_mostly(st.none(), st.sampled_from(["fifo", "chardev", "dir", "socket"]), 80),
           steps=st.lists(st.tuples(st.sampled_from(HOSTILE_VERBS),
                                    _mostly(st.sampled_from(["c1", "c2"]), LONG_IDS, 60)), min_size=1, max_size=6))
    def fuzz(seed_idx, planted, resolv_kind, steps):
        counter["n"] += 1
        data_dir = os.path.join(box.data_dir, f"ex{counter['n']}")
        seed = copy.deepcopy(seed_list[seed_idx])
        seed["ipam"]["dataDir"] = data_dir
        store = os.path.join(data_dir, seed["name"])
        os.makedirs(store)
        for name, kind in planted.items():
            _plant(os.path.join(store, name), kind, victim)
        if resolv_kind is not None:
            seed["ipam"]["resolvConf"] = os.path.join(data_dir, "resolv")
            _plant(seed["ipam"]["resolvConf"], resolv_kind, victim)
        special = {n: _kind(os.path.join(store, n)) for n, k in planted.items() if k in SPECIAL}
        results: dict[tuple[str, str], dict] = {}
        for verb, cid in steps:
            if verb == "CHECK" and (cid, "eth0") not in results and results:
                cid = next(iter(results))[0]  # mostly check what an ADD made
            conf = dict(seed)
            if verb in ("GC", "STATUS"):
                conf["cniVersion"] = "1.1.0"
                conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": "eth0"} for c, _ in results]
            if verb == "CHECK":
                conf["cniVersion"] = "1.1.0"
                if (cid, "eth0") in results:
                    conf["prevResult"] = results[(cid, "eth0")]
            env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/fuzz-unused",
                   "CNI_IFNAME": "eth0", "CNI_PATH": our_bin, "CNI_ARGS": ""}
            p = exec_plugin(binary, env, json.dumps(conf).encode(), box.cwd)
            what = f"{verb} cid[{len(cid)}] planted={planted} resolv={resolv_kind} seed {seed_idx}"
            check_answer(p, verb, what)
            outcome = "ok" if p.returncode == 0 else f"code {json.loads(p.stdout)['code']}"
            stats[f"{verb} {outcome}"] = stats.get(f"{verb} {outcome}", 0) + 1
            if p.returncode != 0:
                continue
            held = (cid + "\r\neth0").encode()
            if verb == "ADD":
                doc = json.loads(p.stdout)
                for ipc in doc.get("ips", []):
                    addr = ipc["address"].split("/")[0]
                    assert addr not in planted, f"handed out planted {addr} ({planted[addr]}): {what}"
                    with open(os.path.join(store, addr), "rb") as f:
                        assert f.read() == held, what
                results[(cid, "eth0")] = doc
            elif verb == "DEL":
                results.pop((cid, "eth0"), None)
                for name in os.listdir(store):
                    path = os.path.join(store, name)
                    if name[0] in "0123456789abcdef:" and _kind(path) == "file":
                        with open(path, "rb") as f:
                            assert f.read().strip() != held, f"DEL left {name}: {what}"
        for name, kind in special.items():
            if name != ".lease.tmp":
                assert _kind(os.path.join(store, name)) == kind, f"{name} ({kind}) was touched: {planted}"
        with open(victim, "rb") as f:
            assert f.read() == b"c1\r\neth0", "a planted link was followed"
        assert box.entries() == box.fixed, f"files outside the data dir: {box.entries() ^ box.fixed}"

    fuzz()
    print(f"\nhostile store: {dict(sorted(stats.items()))}")
    assert any(k.startswith("ADD ok") for k in stats), stats
