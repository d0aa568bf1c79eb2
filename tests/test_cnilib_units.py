"""cnilib's pure units, in process: versions, CNI_ARGS, JSON, IP text, and the skel's
process boundary (``skel.execute`` with a fake environment and streams).

Oracles: Python's ``json`` for jsonio, Python's ``ipaddress`` for cnilib.ip (except where
Go differs on purpose: IPv4-mapped IPv6 addresses are IPv4 to Go, zones are not addresses),
and the spec's error table for the skel.
"""

from __future__ import annotations

import io
import ipaddress
import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnilib import args as cargs
from cnilib import ip as cip
from cnilib import jsonio, skel
from cnilib import version as cver
from cnilib.errors import CNIError
from cnilib.types import Interface, IPConfig, Result

# --------------------------------------------------------------------------- version


@pytest.mark.parametrize("text,key", [
    ("0.1.0", (0, 1, 0)), ("0.3.1", (0, 3, 1)), ("1.1.0", (1, 1, 0)), ("10.20.30", (10, 20, 30)),
    ("01.0.0", (1, 0, 0)),
])
def test_version_key(text, key):
    assert cver.key(text) == key


@pytest.mark.parametrize("bad", ["", "1", "1.1", "1.1.0.0", "a.b.c", "1.1.x", "1..0", ".1.0", "1.-1.0",
                                 " 1.1.0", "1.1.0 ", "v1.1.0", "\u0661.\u0661.\u0660", "1.1.0\n", None, 110, 1.1])
def test_version_key_rejects(bad):
    with pytest.raises(ValueError):
        cver.key(bad)


@pytest.mark.parametrize("v,minimum,expected", [
    ("0.4.0", "0.4.0", True), ("1.0.0", "0.4.0", True), ("0.3.1", "0.4.0", False),
    ("0.10.0", "0.4.0", True), ("0.4.0", "0.10.0", False), ("1.1.0", "1.1.0", True),
    ("1.0.0", "1.1.0", False), ("2.0.0", "1.1.0", True), ("0.1.0", "0.1.0", True),
])
def test_at_least(v, minimum, expected):
    assert cver.at_least(v, minimum) is expected


def test_at_least_is_numeric_not_lexical():
    versions = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "0.10.0", "1.0.0", "1.1.0", "1.10.0"]
    for i, a in enumerate(versions):
        for j, b in enumerate(versions):
            assert cver.at_least(a, b) is (i >= j), (a, b)


@pytest.mark.parametrize("v,fam", [
    ("0.1.0", "02"), ("0.2.0", "02"), ("0.2.9", "02"), ("0.3.0", "04"), ("0.3.1", "04"), ("0.4.0", "04"),
    ("0.9.9", "04"), ("1.0.0", "1"), ("1.1.0", "1"), ("2.0.0", "1"),
])
def test_family(v, fam):
    assert cver.family(v) == fam


def test_supported_and_current():
    assert cver.SUPPORTED == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert cver.CURRENT == "1.1.0" and cver.IMPLICIT == "0.1.0"
    for v in cver.SUPPORTED:
        assert cver.require_supported(v) == v
    for v in ("0.99.0", "2.0.0", "1.1", "", None, 1, "1.1.0 "):
        with pytest.raises(CNIError) as e:
            cver.require_supported(v)
        assert e.value.code == 1


GATED = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"])
@pytest.mark.parametrize("v", cver.SUPPORTED)
def test_gate_verb(verb, v):
    minimum = GATED.get(verb)
    if minimum and not cver.at_least(v, minimum):
        with pytest.raises(CNIError) as e:
            cver.gate_verb(verb, v)
        assert e.value.code == 1 and verb in e.value.msg
    else:
        cver.gate_verb(verb, v)


# --------------------------------------------------------------------------- CNI_ARGS


@pytest.mark.parametrize("raw,parsed", [
    (None, {}), ("", {}),
    ("IP=10.0.0.5", {"IP": "10.0.0.5"}),
    ("IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default",
     {"IgnoreUnknown": "1", "K8S_POD_NAME": "web-0", "K8S_POD_NAMESPACE": "default"}),
    ("A=;B=2", {"A": "", "B": "2"}),
    ("A=1;A=2", {"A": "2"}),  # later keys win
    ("A=1;;B=2;", {"A": "1", "B": "2"}),  # empty pairs are skipped
    ("A=b=c", {"A": "b=c"}),
    ("IP=fd00::5/64", {"IP": "fd00::5/64"}),
])
def test_args_parse(raw, parsed):
    assert cargs.parse(raw) == parsed


@pytest.mark.parametrize("raw", ["novalue", "A=1;novalue", "=x", "A=1;=2", ";x;"])
def test_args_malformed_pair_is_code_4(raw):
    with pytest.raises(CNIError) as e:
        cargs.parse(raw)
    assert e.value.code == 4 and "ARGS" in e.value.msg


@pytest.mark.parametrize("value,ignore", [
    ("1", True), ("true", True), ("TRUE", True), ("True", True), ("tRuE", True),
    ("0", False), ("false", False), ("FALSE", False), ("", False),
])
def test_ignore_unknown(value, ignore):
    assert cargs.ignore_unknown({"IgnoreUnknown": value}) is ignore
    with_unknown = {"IgnoreUnknown": value, "FOO": "bar"}
    if ignore:
        cargs.check_known(with_unknown)
    else:
        with pytest.raises(CNIError) as e:
            cargs.check_known(with_unknown)
        assert e.value.code == 2


@pytest.mark.parametrize("value", ["yes", "2", "on", "t", " 1", "1 ", "truee", "\u0031\u0301"])
def test_ignore_unknown_garbage(value):
    with pytest.raises(CNIError) as e:
        cargs.check_known({"IgnoreUnknown": value})
    assert e.value.code == 4 and "IgnoreUnknown" in e.value.msg


def test_absent_ignore_unknown_is_false():
    assert cargs.ignore_unknown({}) is False


@pytest.mark.parametrize("raw", [
    "IP=10.0.0.5", "IP=10.0.0.5/24", "MAC=aa:bb:cc:dd:ee:ff",
    "K8S_POD_NAME=a;K8S_POD_NAMESPACE=b;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=d",
    "IgnoreUnknown=0;IP=10.0.0.5", "",
])
def test_well_known_keys_pass_without_ignore_unknown(raw):
    cargs.check_known(cargs.parse(raw))


def test_unknown_key_is_code_2_naming_key_and_value():
    with pytest.raises(CNIError) as e:
        cargs.check_known(cargs.parse("IP=10.0.0.5;FOO=bar-value"))
    assert e.value.code == 2
    assert "FOO" in e.value.msg and "bar-value" in e.value.msg


def test_extra_keys_accepted():
    cargs.check_known(cargs.parse("FOO=1;IP=10.0.0.5"), extra={"FOO"})
    with pytest.raises(CNIError):
        cargs.check_known(cargs.parse("FOO=1;BAR=2"), extra={"FOO"})


def test_ignore_unknown_may_come_last():
    cargs.check_known(cargs.parse("FOO=y;IgnoreUnknown=1"))


# --------------------------------------------------------------------------- jsonio

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_jsonio_round_trip(v):
    for indent in (True, False):
        text = jsonio.dumps(v, indent=indent)
        assert jsonio.loads(text) == v
        assert jsonio.loads(text.encode()) == v
        assert jsonio.loads(text) == json.loads(json.dumps(v))
    assert jsonio.dumps(v) == json.dumps(v, indent=4, ensure_ascii=False)
    assert jsonio.dumps(v, indent=False) == json.dumps(v, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("v,text", [
    ({}, "{}"), ([], "[]"), ({"a": {}}, '{\n    "a": {}\n}'), ({"a": []}, '{\n    "a": []\n}'),
    ({"cniVersion": "1.0.0", "dns": {}}, '{\n    "cniVersion": "1.0.0",\n    "dns": {}\n}'),
    ([1, [2]], "[\n    1,\n    [\n        2\n    ]\n]"),
    ("\u00e9\u2028<&>", '"\u00e9\u2028<&>"'),
])
def test_jsonio_layout(v, text):
    # Go's MarshalIndent(v, "", "    ") layout (Go also escapes <, >, &, U+2028: same data).
    assert jsonio.dumps(v) == text


def _strict_json(text: str):
    def bad_constant(name):
        raise ValueError(name)

    def bad_float(s):
        f = float(s)
        if math.isinf(f):
            raise ValueError(s)
        return f

    return json.loads(text, parse_constant=bad_constant, parse_float=bad_float)


MALFORMED_JSON = [
    b"", b"   ", b"\n", b"{", b"}", b"[", b"[1,]", b"[,1]", b'{"a":1,}', b'{"a" 1}', b"{1:2}", b"{'a':1}",
    b"nul", b"tru", b"True", b"None", b"undefined", b"01", b"1.", b".5", b"+1", b"0x10", b"--1", b"1e",
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"[NaN]", b'{"a":Infinity}', b"1e999", b"[-1e400]",
    b"{} x", b"[] []", b"1 2", b'"a" "b"', b"{}}", b"{}\x00", b"\x00", b"\x00{}",
    b"\xff", b"\xfe\xff", b'"\xc3\x28"', b'{"a":"\xed\xa0\x80"}', b'"\xc0\xaf"', b"\xef\xbb\xbf{}",
    '\u00a0{}'.encode(), '\u3000[]'.encode(),
    b'"\t"', b'"\n"', b'"\x01"', b'"\\x41"', b'"\\u12"', b'"\\uZZZZ"', b'"\\', b'"abc',
    b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"[" * 10_000 + b"1,",
    "\ufeff{}".encode("utf-16"), "{}".encode("utf-32"),
]


@pytest.mark.parametrize("data", MALFORMED_JSON, ids=lambda d: repr(d[:24]) + (f"..{len(d)}" if len(d) > 24 else ""))
def test_jsonio_rejects_malformed(data):
    with pytest.raises(jsonio.JSONError):
        jsonio.loads(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    with pytest.raises(jsonio.JSONError):
        jsonio.loads(text)


def test_jsonio_accepts_whitespace_and_extremes():
    assert jsonio.loads(b" \t\r\n{\"a\" : [ 1 , 2 ] }\n\n") == {"a": [1, 2]}
    assert jsonio.loads(b"1e308") == 1e308
    assert jsonio.loads(b"-0") == 0 and jsonio.loads(b"-0.0") == 0.0
    assert jsonio.loads(b"123456789012345678901234567890") == 123456789012345678901234567890
    assert jsonio.loads(b"[" * 500 + b"]" * 500) is not None
    assert jsonio.loads('"\\ud83d\\ude00 \u00e9"') == "\U0001F600 \u00e9"
    assert jsonio.loads(b'{"a":1,"a":2}') == {"a": 2}  # the last duplicate wins, as in Go


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode)
       | JSON_VALUES.map(lambda v: json.dumps(v).encode()).flatmap(
           lambda b: st.tuples(st.integers(0, len(b)), st.binary(max_size=3)).map(
               lambda t: b[: t[0]] + t[1] + b[t[0] + 1:])))
def test_jsonio_never_raises_anything_else(data):
    """Random and mutated inputs: a JSONError, or exactly what a strict json.loads gives."""
    try:
        got = jsonio.loads(data)
    except jsonio.JSONError:
        got = jsonio.JSONError
    try:
        want = _strict_json(data.decode("utf-8"))
    except (ValueError, RecursionError):
        want = jsonio.JSONError
    assert got == want or (got != got and want != want)


def test_jsonio_dumps_refuses_non_json():
    for bad in (float("nan"), float("inf"), [float("-inf")]):
        with pytest.raises(ValueError):
            jsonio.dumps(bad)
        with pytest.raises(ValueError):
            jsonio.dumps(bad, indent=False)
    with pytest.raises(TypeError):
        jsonio.dumps({1: "x"})
    with pytest.raises(TypeError):
        jsonio.dumps({"a": object()})


# --------------------------------------------------------------------------- ip

V4 = st.integers(0, 2**32 - 1)
V6 = st.integers(0, 2**128 - 1)
MAPPED = V4.map(lambda v: 0xFFFF << 32 | v)
# Zero runs are what RFC 5952 formatting is about: build v6 values from mostly-zero groups.
V6_RUNS = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC]), min_size=8, max_size=8).map(
    lambda gs: sum(g << (112 - 16 * i) for i, g in enumerate(gs)))


def _is_mapped(v: int) -> bool:
    return v >> 32 == 0xFFFF


@settings(max_examples=500, deadline=None)
@given(V4)
def test_ip_v4_format_and_parse(v):
    text = str(ipaddress.IPv4Address(v))
    assert str(cip.IP(4, v)) == text
    assert cip.parse_ip(text) == cip.IP(4, v)
    mapped = cip.parse_ip("::ffff:" + text)
    assert mapped == cip.IP(4, v) and str(mapped) == text


@settings(max_examples=500, deadline=None)
@given(V6 | V6_RUNS | MAPPED)
def test_ip_v6_format_and_parse(v):
    a = ipaddress.IPv6Address(v)
    if _is_mapped(v):
        want = str(ipaddress.IPv4Address(v & 0xFFFFFFFF))  # Go's String() of a v4-mapped address
        parsed = cip.IP(4, v & 0xFFFFFFFF)
    else:
        want = a.compressed
        parsed = cip.IP(6, v)
    assert str(cip.IP(6, v)) == want
    for text in (a.compressed, a.exploded, a.exploded.upper(), a.compressed.upper()):
        assert cip.parse_ip(text) == parsed, text
        assert str(cip.parse_ip(text)) == want
    tail = ":".join(a.exploded.split(":")[:6]) + ":" + str(ipaddress.IPv4Address(v & 0xFFFFFFFF))
    assert cip.parse_ip(tail) == parsed, tail


@settings(max_examples=300, deadline=None)
@given(st.one_of(V4.map(lambda v: (4, v)), (V6 | V6_RUNS).map(lambda v: (6, v))), st.data())
def test_ip_cidr_against_ipaddress(fv, data):
    fam, v = fv
    assume(fam == 4 or not _is_mapped(v))
    bits = 32 if fam == 4 else 128
    cls = ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
    plen = data.draw(st.integers(0, bits))
    addr = cls(v)
    text = f"{addr}/{plen}"
    net = cip.parse_cidr(text)
    ref = ipaddress.ip_network(text, strict=False)
    assert net.ip == cip.IP(fam, v) and net.prefixlen == plen  # host bits kept
    assert str(net) == text
    assert str(net.masked()) == str(ref) and net.network.value == int(ref.network_address)
    assert net.last.value == int(ref.broadcast_address)
    assert net.mask == int(ref.netmask)
    other = data.draw(V4 if fam == 4 else V6)
    assert net.contains(cip.IP(fam, other)) is (cls(other) in ref)
    assert not net.contains(cip.IP(10 - fam, other))
    plen2 = data.draw(st.integers(0, bits))
    ref2 = ipaddress.ip_network(f"{cls(other)}/{plen2}", strict=False)
    net2 = cip.parse_cidr(f"{cls(other)}/{plen2}")
    assume(fam == 4 or not _is_mapped(other))
    assert net.overlaps(net2) is ref.overlaps(ref2) is net2.overlaps(net)
    assert cip.parse_ip_or_cidr(text) == (cip.IP(fam, v), plen)
    assert cip.parse_ip_or_cidr(str(addr)) == (cip.IP(fam, v), None)


def test_ip_mapped_cidr_counts_the_v6_prefix():
    n = cip.parse_cidr("::ffff:10.1.2.3/120")
    assert n.ip == cip.IP(4, 0x0A010203) and n.prefixlen == 24 and str(n) == "10.1.2.3/24"
    assert str(cip.parse_cidr("::ffff:0.0.0.0/96")) == "0.0.0.0/0"


def test_ip_arithmetic_and_order():
    assert str(cip.parse_ip("10.0.0.255") + 1) == "10.0.1.0"
    assert str(cip.parse_ip("255.255.255.255") + 1) == "0.0.0.0"
    assert str(cip.parse_ip("0.0.0.0") - 1) == "255.255.255.255"
    assert str(cip.parse_ip("::") - 1) == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    assert str(cip.parse_ip("fd00::ffff") + 1) == "fd00::1:0"
    assert cip.parse_ip("10.0.0.1") < cip.parse_ip("10.0.0.2") < cip.parse_ip("::1")
    assert len({cip.parse_ip("10.0.0.1"), cip.parse_ip("::ffff:10.0.0.1"), cip.IP(4, 0x0A000001)}) == 1


INVALID_IPS = [
    "", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "1.2.3.4 ", " 1.2.3.4", "+1.2.3.4",
    "01.2.3.4", "1.02.3.4", "1.2.3.004", "00.0.0.0", "0x1.2.3.4", "1.2.3.0x4", "1..3.4", "1.2.3.4.",
    "\u0661.\u0662.\u0663.\u0664", "\uff11.2.3.4", "1.2.3.4/24",
    "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "12345::", "::12345",
    "g::1", "fd00::x", "1::2::3", "::1::", ":::", "::::", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:",
    "1:2:3:4:5:6::7:8", "fe80::1%eth0", "fe80::1%1", "::1%", "::ffff:1.2.3", "::ffff:1.2.3.04",
    "::1.2.3.4:5", "1.2.3.4::", "::1.2.3.4.5", "1:2:3:4:5:6:7:1.2.3.4", "[::1]", "::1/128", "-::1",
    "\u0661::1", "1:2:3:4:5:6:1.2.3.4:5",
]


@pytest.mark.parametrize("text", INVALID_IPS)
def test_ip_invalid_rejected(text):
    with pytest.raises(ValueError):
        cip.parse_ip(text)


@pytest.mark.parametrize("bad", [None, 1, 3232235521, b"1.2.3.4", ["1.2.3.4"]])
def test_ip_wrong_types_are_value_errors(bad):
    with pytest.raises(ValueError):
        cip.parse_ip(bad)
    with pytest.raises(ValueError):
        cip.parse_cidr(bad)


@pytest.mark.parametrize("text", [
    "10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "::1/129", "10.0.0.1/-1", "10.0.0.1/ 8", "10.0.0.1/8 ",
    "10.0.0.1/8/8", "/8", "10.0.0.256/8", "fe80::1%eth0/64", "10.0.0.1/0x8", "10.0.0.1/\u0668",
    "::ffff:1.2.3.4/95", "::ffff:1.2.3.4/129",
])
def test_cidr_invalid_rejected(text):
    with pytest.raises(ValueError):
        cip.parse_cidr(text)


ALPHABET = "0123456789abcdefABCDEF:.%/ g"


@settings(max_examples=500, deadline=None)
@given((V4.map(lambda v: str(ipaddress.IPv4Address(v))) | (V6 | V6_RUNS).map(lambda v: str(ipaddress.IPv6Address(v))))
       .flatmap(lambda s: st.tuples(st.just(s), st.integers(0, len(s)), st.integers(0, 2), st.text(ALPHABET, max_size=2))))
def test_ip_mutated_text_like_ipaddress(case):
    """A valid address with a random edit: accepted exactly when ipaddress accepts it (and
    to the same value), except zones, which are never addresses to us (nor to Go)."""
    s, at, cut, ins = case
    text = s[:at] + ins + s[at + cut:]
    try:
        ref = ipaddress.ip_address(text)
    except ValueError:
        ref = None
    if "%" in text or ref is None:
        with pytest.raises(ValueError):
            cip.parse_ip(text)
        return
    got = cip.parse_ip(text)
    v = int(ref)
    if ref.version == 6 and _is_mapped(v):
        assert got == cip.IP(4, v & 0xFFFFFFFF)
    else:
        assert got == cip.IP(ref.version, v)


# --------------------------------------------------------------------------- skel


class Recorder:
    """A test plugin whose verbs record their CmdArgs and do what the test asks."""

    def __init__(self, raise_in: dict | None = None, versions=cver.SUPPORTED) -> None:
        self.calls: list[skel.CmdArgs] = []
        self.raise_in = raise_in or {}
        self.plugin = skel.Plugin("recorder", "interface", add=self._verb("ADD"), delete=self._verb("DEL"),
                                  check=self._verb("CHECK"), gc=self._verb("GC"), status=self._verb("STATUS"),
                                  versions=versions)

    def _verb(self, name: str):
        def fn(cmd: skel.CmdArgs):
            self.calls.append(cmd)
            exc = self.raise_in.get(name)
            if exc is not None:
                raise exc
            if name == "ADD":
                return Result(cmd.conf.cni_version, [Interface(cmd.ifname, "aa:bb:cc:dd:ee:ff", cmd.netns)],
                              [IPConfig(cip.parse_cidr("10.0.0.2/24"), cip.parse_ip("10.0.0.1"), 0)])
            return None

        return fn


class Run:
    def __init__(self, rc: int, out: str, err: str, calls: list) -> None:
        self.rc, self.out, self.err, self.calls = rc, out, err, calls

    @property
    def doc(self):
        return json.loads(self.out)  # exactly one document (json.loads refuses trailing data)

    def __repr__(self) -> str:
        return f"Run(rc={self.rc}, out={self.out!r}, err={self.err!r})"


BASE_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x",
            "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": "/opt/cni/bin"}


def conf(version: str | None = "1.1.0", **extra) -> bytes:
    d = {"cniVersion": version, "name": "net1", "type": "recorder"}
    if version is None:
        del d["cniVersion"]
    d.update(extra)
    return json.dumps(d).encode()


def run(stdin: bytes | None = None, rec: Recorder | None = None, drop=(), stdin_error=None, **env) -> Run:
    rec = rec or Recorder()
    e = dict(BASE_ENV)
    e.update(env)
    for k in drop:
        e.pop(k, None)
    data = conf() if stdin is None else stdin

    def read():
        if stdin_error is not None:
            raise stdin_error
        return data

    out, err = io.StringIO(), io.StringIO()
    rc = skel.execute(rec.plugin, e, read, out, err)
    return Run(rc, out.getvalue(), err.getvalue(), rec.calls)


def assert_error(r: Run, code: int, *words: str) -> dict:
    assert r.rc != 0, r
    doc = r.doc
    assert isinstance(doc, dict) and set(doc) <= {"cniVersion", "code", "msg", "details"}, r
    assert doc["code"] == code, r
    assert isinstance(doc["msg"], str) and doc["msg"], r
    for w in words:
        assert w in doc["msg"] + doc.get("details", ""), (w, r)
    assert "Traceback" not in r.out + r.err
    assert not r.calls, "the verb must not run"
    return doc


REQUIRED = {
    "ADD": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
    "CHECK": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
    "DEL": ["CNI_CONTAINERID", "CNI_IFNAME"],
    "GC": ["CNI_PATH"],
}


@pytest.mark.parametrize("verb,var", [(v, k) for v, ks in REQUIRED.items() for k in ks])
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_variable_is_code_4_naming_it(verb, var, how):
    kwargs = {var: ""} if how == "empty" else {}
    r = run(drop=(var,) if how == "missing" else (), CNI_COMMAND=verb, **kwargs)
    assert_error(r, 4, var)


@pytest.mark.parametrize("verb,optional", [
    ("DEL", "CNI_NETNS"), ("DEL", "CNI_ARGS"), ("DEL", "CNI_PATH"), ("ADD", "CNI_PATH"), ("ADD", "CNI_ARGS"),
    ("GC", "CNI_CONTAINERID"), ("GC", "CNI_IFNAME"), ("GC", "CNI_NETNS"), ("STATUS", "CNI_PATH"),
    ("STATUS", "CNI_CONTAINERID"),
])
def test_optional_variables_are_optional(verb, optional):
    r = run(drop=(optional,), CNI_COMMAND=verb)
    assert r.rc == 0, r
    r = run(CNI_COMMAND=verb, **{optional: ""})
    assert r.rc == 0, r


def test_status_and_gc_with_only_their_variables():
    env = {"CNI_COMMAND": "STATUS"}
    rec = Recorder()
    out, err = io.StringIO(), io.StringIO()
    assert skel.execute(rec.plugin, env, lambda: conf(), out, err) == 0 and out.getvalue() == ""
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}
    assert skel.execute(rec.plugin, env, lambda: conf(), out, err) == 0 and out.getvalue() == ""
    assert [c.command for c in rec.calls] == ["STATUS", "GC"]


@pytest.mark.parametrize("command", ["add", "Add", "FOO", " ADD", "ADD ", "VERSIONS", "DELETE", "\u00c4DD"])
def test_unknown_command_is_code_4(command):
    assert_error(run(CNI_COMMAND=command), 4, command.strip() or command)


def test_no_command_describes_the_plugin_on_stderr():
    for r in (run(CNI_COMMAND=""), run(drop=("CNI_COMMAND",))):
        assert r.rc == 0 and r.out == "" and "recorder" in r.err and "1.1.0" in r.err, r


@pytest.mark.parametrize("stdin", [b"", b"   \n", b"{", b"not json", b"[]", b'"x"', b"null", b"42",
                                   b'{"cniVersion": 1, "name": "n"}', b'{"cniVersion": ["1.0.0"], "name": "n"}',
                                   b"\xff\xfe", b'{"name": "n"} {}', b'{"cniVersion": "1.0.0", "name": NaN}'])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_bad_stdin_is_code_6(stdin, verb):
    assert_error(run(stdin, CNI_COMMAND=verb), 6)


def test_stdin_read_failure_is_code_5():
    assert_error(run(stdin_error=OSError(5, "Input/output error")), 5, "stdin")


@pytest.mark.parametrize("version", ["0.99.0", "2.0.0", "1.1", "1.0", "", "v1.0.0", "1.1.0-rc1"])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_unsupported_version_is_code_1(version, verb):
    if version == "":
        # An empty cniVersion is absent: 0.1.0, where CHECK/GC/STATUS are refused (code 1 too).
        r = run(conf(version), CNI_COMMAND=verb)
        if verb in ("ADD", "DEL"):
            assert r.rc == 0, r
            return
        assert_error(r, 1)
        return
    assert_error(run(conf(version), CNI_COMMAND=verb), 1)


def test_plugin_version_list_is_honoured():
    rec = Recorder(versions=("0.4.0", "1.0.0"))
    assert_error(run(conf("1.1.0"), rec), 1)
    r = run(conf("1.0.0"), Recorder(versions=("0.4.0", "1.0.0")))
    assert r.rc == 0, r


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", None])
def test_check_below_040_is_code_1(version):
    assert_error(run(conf(version, prevResult={"cniVersion": "0.3.1"}), CNI_COMMAND="CHECK"), 1, "CHECK")


@pytest.mark.parametrize("verb", ["GC", "STATUS"])
@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_gc_status_below_110_is_code_1(verb, version):
    assert_error(run(conf(version), CNI_COMMAND=verb), 1, verb)


@pytest.mark.parametrize("verb", ["CHECK", "GC", "STATUS"])
def test_gated_verbs_allowed_at_their_version(verb):
    r = run(conf("1.1.0"), CNI_COMMAND=verb)
    assert r.rc == 0 and r.out == "" and [c.command for c in r.calls] == [verb], r


@pytest.mark.parametrize("name", [None, "", "a b", "-net", "_net", ".net", "net/1", "net:1", "n\u00e9t", 5, True,
                                  ["net"], {"n": 1}, "net\n"])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_missing_or_bad_name_is_code_7(name, verb):
    data = json.loads(conf("1.1.0"))
    if name is None:
        del data["name"]
    else:
        data["name"] = name
    assert_error(run(json.dumps(data).encode(), CNI_COMMAND=verb), 7)


@pytest.mark.parametrize("name", ["a", "Net-1", "n.e_t-2", "0", "x" * 200])
def test_good_names(name):
    r = run(conf("1.0.0", name=name))
    assert r.rc == 0, r


@pytest.mark.parametrize("key,value", [("ipam", "host-local"), ("dns", []), ("runtimeConfig", 1),
                                       ("capabilities", "x"), ("args", []), ("prevResult", "x"), ("type", 5)])
def test_well_known_keys_of_the_wrong_type_are_code_7(key, value):
    assert_error(run(conf("1.0.0", **{key: value})), 7, key)


@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK"])
def test_missing_container_id(verb):
    # Required by the environment check first (code 4); the skel's own "missing
    # containerID" (3, as libcni's ValidateContainerID) is behind it and unreachable from
    # the environment, in Go as here.
    assert_error(run(CNI_COMMAND=verb, CNI_CONTAINERID=""), 4, "CNI_CONTAINERID")
    cmd = skel.CmdArgs(verb, "", "/x", "eth0", "", [], b"")
    with pytest.raises(CNIError) as e:
        skel._validate_attachment(cmd)
    assert e.value.code == 3


@pytest.mark.parametrize("cid", ["-abc", "_abc", ".abc", "a/b", "a b", "a\tb", "../../etc", "a;b", "c\u00e9", "a:b",
                                 "a\nb", "/abs"])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK"])
def test_bad_container_id_is_code_4(cid, verb):
    assert_error(run(conf("1.1.0"), CNI_COMMAND=verb, CNI_CONTAINERID=cid), 4, "containerID")


@pytest.mark.parametrize("cid", ["a", "0", "abc-DEF_1.2", "f" * 64, "x" * 300])
def test_good_container_ids(cid):
    r = run(CNI_CONTAINERID=cid)
    assert r.rc == 0 and r.calls[0].container_id == cid, r


BAD_IFNAMES = ["a" * 16, "a" * 40, "\u00e9" * 8, "a/b", "/", "a:b", "eth0:1", "a b", " eth0", "eth0 ", "a\tb",
               "a\nb", "a\u00a0b", "a\u2003b", ".", ".."]


@pytest.mark.parametrize("ifname", BAD_IFNAMES)
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK"])
def test_bad_ifname_is_code_4(ifname, verb):
    assert_error(run(CNI_COMMAND=verb, CNI_IFNAME=ifname), 4, "CNI_IFNAME")


@pytest.mark.parametrize("ifname", ["a" * 15, "\u00e9" * 7 + "a", "eth0.100", "...", "a..", "lo", "veth-1_x"])
def test_good_ifnames(ifname):
    r = run(CNI_IFNAME=ifname)
    assert r.rc == 0 and r.calls[0].ifname == ifname, r


@pytest.mark.parametrize("raw", ["novalue", "A=1;=x"])
def test_malformed_cni_args_is_code_4(raw):
    assert_error(run(CNI_ARGS=raw), 4, "ARGS")


def test_cni_args_reach_the_verb():
    r = run(CNI_ARGS="IP=10.0.0.9;K8S_POD_NAME=p")
    assert r.rc == 0 and r.calls[0].args == {"IP": "10.0.0.9", "K8S_POD_NAME": "p"}
    assert r.calls[0].args_raw == "IP=10.0.0.9;K8S_POD_NAME=p"


def test_cmd_args_fields():
    r = run(CNI_PATH="/a::/b:", CNI_NETNS="/proc/1/ns/net-not-really")
    cmd = r.calls[0]
    assert (cmd.command, cmd.container_id, cmd.netns, cmd.ifname) == ("ADD", "c1", "/proc/1/ns/net-not-really", "eth0")
    assert cmd.path == ["/a", "/b"] and cmd.stdin == conf()
    assert cmd.conf.name == "net1" and cmd.conf.cni_version == "1.1.0" and cmd.conf.raw == conf()


@pytest.mark.parametrize("stdin,expected", [
    (b"", "1.1.0"), (b"   ", "1.1.0"), (b'{"cniVersion":"1.1.0"}', "1.1.0"), (b'{"cniVersion":"0.3.1"}', "0.3.1"),
    (b'{"cniVersion":"0.1.0"}', "0.1.0"), (b'{"cniVersion":"1.0.0","name":"x"}', "1.0.0"),
    (b'{"cniVersion":"9.9.9"}', "1.1.0"), (b'{"cniVersion":5}', "1.1.0"), (b"garbage", "1.1.0"),
    (b"[1]", "1.1.0"), (b"\xff", "1.1.0"), (b"{}", "1.1.0"),
])
def test_version_answer(stdin, expected):
    r = run(stdin, CNI_COMMAND="VERSION")
    assert r.rc == 0 and r.doc == {"cniVersion": expected, "supportedVersions": list(cver.SUPPORTED)}, r
    assert not r.calls and r.err == ""


def test_version_needs_nothing_but_the_command():
    out, err = io.StringIO(), io.StringIO()
    rc = skel.execute(Recorder().plugin, {"CNI_COMMAND": "VERSION"}, lambda: b"", out, err)
    assert rc == 0 and json.loads(out.getvalue())["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("version", cver.SUPPORTED)
def test_add_prints_the_result_in_the_config_version(version):
    r = run(conf(version))
    assert r.rc == 0 and r.err == "", r
    doc = r.doc
    assert doc["cniVersion"] == version
    if cver.family(version) == "02":
        assert doc["ip4"] == {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}
    else:
        ipc = {"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}
        if cver.family(version) == "04":
            ipc = {"version": "4", **ipc}
        assert doc["ips"] == [ipc]
    assert r.out.count("\n") == len(r.out.splitlines()) and r.out.endswith("}\n")


@pytest.mark.parametrize("verb", ["DEL", "CHECK", "GC", "STATUS"])
def test_success_prints_nothing(verb):
    r = run(CNI_COMMAND=verb)
    assert r.rc == 0 and r.out == "" and r.err == "" and len(r.calls) == 1, r


def test_verbs_left_out_succeed():
    p = skel.Plugin("empty", "chained")
    out, err = io.StringIO(), io.StringIO()
    for verb in ("DEL", "CHECK", "GC", "STATUS"):
        assert skel.execute(p, dict(BASE_ENV, CNI_COMMAND=verb), conf, out, err) == 0
    assert out.getvalue() == ""


@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_cni_error_from_a_verb_keeps_its_code(verb):
    rec = Recorder({verb: CNIError(101, "requested IP address 10.0.0.9 is already allocated", "by c7")})
    version = "1.1.0" if verb in ("GC", "STATUS") else "1.0.0"
    r = run(conf(version), rec, CNI_COMMAND=verb)
    assert r.rc != 0 and r.doc == {"cniVersion": version, "code": 101,
                                   "msg": "requested IP address 10.0.0.9 is already allocated", "details": "by c7"}
    assert r.err == ""


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyError("k"), ZeroDivisionError("z"), RecursionError("r"),
                                 OSError(13, "Permission denied"), UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x"),
                                 AttributeError("'NoneType' object has no attribute 'x'"),
                                 Exception("")])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_unexpected_exception_is_999_without_traceback(exc, verb):
    rec = Recorder({verb: exc})
    version = "1.1.0" if verb in ("GC", "STATUS") else "0.4.0"
    r = run(conf(version), rec, CNI_COMMAND=verb)
    assert r.rc != 0
    doc = r.doc
    assert doc["code"] == 999 and doc["cniVersion"] == version and type(exc).__name__ in doc["msg"], r
    lines = r.err.splitlines()
    assert len(lines) == 1 and r.err.endswith("\n"), r
    assert "recorder" in lines[0] and type(exc).__name__ in lines[0]
    assert "File \"" not in r.err


def test_unexpected_exception_message_stays_one_line():
    # A multi-line exception message (subprocess output, pyroute2 dumps) is still one line.
    rec = Recorder({"ADD": RuntimeError("line one\nline two\r\nline three")})
    r = run(rec=rec)
    assert r.doc["code"] == 999 and "line three" in r.doc["msg"]
    assert len(r.err.splitlines()) == 1 and "line three" in r.err, r


def test_add_without_result_is_999():
    p = skel.Plugin("none", "interface", add=lambda cmd: None)
    out, err = io.StringIO(), io.StringIO()
    assert skel.execute(p, BASE_ENV, conf, out, err) == 1
    assert json.loads(out.getvalue())["code"] == 999


def test_add_result_that_cannot_be_converted():
    p = skel.Plugin("noip", "interface", add=lambda cmd: Result(cmd.conf.cni_version))
    out, err = io.StringIO(), io.StringIO()
    assert skel.execute(p, BASE_ENV, lambda: conf("0.2.0"), out, err) == 1
    doc = json.loads(out.getvalue())
    assert doc["code"] == 999 and doc["msg"] == "cannot convert: no valid IP addresses" and doc["cniVersion"] == "0.2.0"


def test_error_document_version():
    # Before the config is read the error is labelled with the current version; after,
    # with the config's.
    assert run(conf("0.3.1"), CNI_COMMAND="ADD", CNI_IFNAME="").doc["cniVersion"] == "1.1.0"
    assert run(conf("0.3.1", name=""), CNI_COMMAND="ADD").doc["cniVersion"] == "0.3.1"
    assert run(b"{", CNI_COMMAND="ADD").doc["cniVersion"] == "1.1.0"


class _BrokenOut(io.StringIO):
    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_stdout_does_not_crash():
    rc = skel.execute(Recorder().plugin, BASE_ENV, conf, _BrokenOut(), io.StringIO())
    assert rc == 0


# libcni's skel (and so the reference plugins) check name, container ID and ifname before
# the cniVersion.
@pytest.mark.parametrize("stdin,env,code", [
    (conf("9.9.9", name=""), {}, 7),
    (conf("9.9.9", name="a b"), {}, 7),
    (conf("0.3.1"), {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "bad/id"}, 4),
    (conf("9.9.9"), {"CNI_IFNAME": "a/b"}, 4),
])
def test_error_precedence_like_libcni(stdin, env, code):
    assert run(stdin, **env).doc["code"] == code


def test_output_is_valid_utf8_whatever_the_input():
    """Undecodable environment bytes (surrogateescape) and lone surrogate escapes in JSON
    input come out as U+FFFD, as Go prints them: stdout is always valid UTF-8."""
    r = run(CNI_COMMAND="AD\udcff")  # what process_env() makes of the byte 0xff
    assert r.doc["code"] == 4
    assert "\ufffd" in r.doc["msg"]
    r.out.encode("utf-8")  # strict: no surrogate reached the output
    # A lone surrogate from JSON input that a result carries through (a prevResult
    # passed on, as loopback and portmap do).
    rec = Recorder()
    rec.plugin.verbs["ADD"] = lambda cmd: cmd.conf.prev_result()
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "a\ud800b"}], "dns": {}}
    r = run(json.dumps({"cniVersion": "1.1.0", "name": "n", "prevResult": prev}).encode(), rec=rec)
    assert r.rc == 0 and r.doc["interfaces"][0]["name"].startswith("a\ufffd"), r
    r.out.encode("utf-8")


def test_version_answer_of_a_plugin_with_fewer_versions():
    rec = Recorder(versions=("0.3.1", "0.4.0", "1.0.0"))
    r = run(b"", rec=rec, CNI_COMMAND="VERSION")
    assert r.doc == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0"]}, r


# --------------------------------------------------------------------------- Go's key matching

def test_gokeys_fold_like_go():
    """foldName (Go 1.21+): ASCII case-insensitively; KELVIN SIGN, LONG S, DOTLESS I and
    CAPITAL I WITH DOT fold onto ASCII letters; other runes by their simple case mapping."""
    from cnilib.gokeys import fold

    assert fold("hostPort") == fold("HOSTPORT") == fold("HostPort") == "HOSTPORT"
    assert fold("\u212aey") == fold("key")
    assert fold("\u017fnat") == fold("snat")
    assert fold("\u0131p") == fold("ip") == fold("\u0130P")
    assert fold("stra\u00dfe") == fold("STRA\u00dfE") != fold("strasse")  # no full mappings
    assert fold("\u00e9t\u00e9") == fold("\u00c9T\u00c9")
    assert fold("host_port") != fold("hostPort")


def test_gokeys_struct_reads_as_go_decodes():
    from cnilib.gokeys import Struct, get

    s = Struct("hostPort", "containerPort", "hostIP")
    got = s.read(jsonio.loads('{"HostPort": 1, "containerport": 2, "HOSTIP": "", "other": 3}'))
    assert got == {"hostPort": 1, "containerPort": 2, "hostIP": ""}
    # The last key landing on a field wins, in document order (jsonio keeps the order of
    # each key's last occurrence).
    assert s.read(jsonio.loads('{"hostPort": 1, "HostPort": 2, "hostPort": 3}')) == {"hostPort": 3}
    assert s.read(jsonio.loads('{"hostPort": 1, "HOSTPORT": 2}')) == {"hostPort": 2}
    assert get(jsonio.loads('{"hostPort": 1, "HostPort": 2, "hostPort": 3}'), "hostPort") == 3
    assert get({"a": 1}, "hostPort", "none") == "none" and get(None, "x") is None
    # Two fields folding alike: an exact name goes to its own field; any other spelling to
    # the first one declared (Go's "first folded match takes precedence").
    t = Struct("foo", "FOO")
    assert t.read({"FOO": 1}) == {"FOO": 1}
    assert t.read({"Foo": 2}) == {"foo": 2}
    assert t.field("fOO") == "foo" and t.field("bar") is None


def test_config_keys_any_case_through_the_skel():
    """cniVersion, name, runtimeConfig, args and prevResult are found in any case."""
    rec = Recorder()
    prev = {"CNIVersion": "1.0.0", "IPs": [{"Address": "10.0.0.2/24"}]}
    stdin = json.dumps({"CniVersion": "1.0.0", "NAME": "net1", "Type": "recorder", "IPAM": {"Type": "x"},
                        "RuntimeConfig": {"PortMappings": [{"HostPort": 80}]},
                        "Args": {"CNI": {"MAC": "x"}}, "PrevResult": prev}).encode()
    r = run(stdin, rec=rec)
    assert r.rc == 0, r
    c = rec.calls[0].conf
    assert (c.cni_version, c.name, c.type, c.ipam_type()) == ("1.0.0", "net1", "recorder", "x")
    assert c.runtime("portMappings") == [{"HostPort": 80}]
    assert c.cni_args() == {"MAC": "x"}
    assert [str(i.address) for i in c.prev_result().ips] == ["10.0.0.2/24"]
    # GC's attachment list, in any case too.
    stdin = json.dumps({"cniVersion": "1.1.0", "name": "net1", "type": "recorder",
                        "CNI.DEV/Valid-Attachments": [{"ContainerID": "c1", "IFNAME": "eth0"}]}).encode()
    rec = Recorder()
    assert run(stdin, rec=rec, CNI_COMMAND="GC").rc == 0
    assert rec.calls[0].conf.valid_attachments() == {("c1", "eth0")}
