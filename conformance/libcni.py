"""Drive CNI plugins through libcni, the Go library container runtimes embed.

The harness's plugins are exercised the way containerd, CRI-O and podman exercise them:
through ``libcni`` (Debian's golang-github-appc-cni-dev, v1.1.2: spec versions up to
1.0.0, no GC/STATUS). ``conformance/go/src/cnidriver/main.go`` is a small Go program
with upstream cnitool's interface (``cnidriver add|check|del NETWORK NETNS``) plus
``CNI_CACHE_DIR``, ``CNI_CONTAINERID``, ``version PLUGIN`` and ``validate NETWORK``, and
it prints failures as CNI error JSON on stdout. :func:`build` compiles it offline, in
GOPATH mode, against the libcni source under /usr/share/gocode.

Upstream cnitool: if ``$CNITOOL`` names a binary, or (``$CNITOOL`` unset) a ``cnitool``
is on PATH, :func:`driver_path` returns that instead; ``CNITOOL=`` (empty) forces the
built driver. Upstream cnitool lacks several things, and :class:`LibCNI` then degrades:

* ``CNI_CACHE_DIR`` is ignored: libcni caches results in /var/lib/cni/results (the
  entry is removed again by a successful DEL);
* ``CNI_CONTAINERID`` is ignored: the container ID is always cnitool's hash of the
  netns path (:func:`cnitool_container_id`); asking for another ID raises ValueError;
* errors are printed as plain text on stderr, so the plugin's error code is lost:
  ``DriverOutcome.doc`` is None and ``.code`` is None on failure (``.message`` has text);
* ``version`` and ``validate`` do not exist in cnitool: they always use the built
  driver (so they still need go and the libcni source).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GO_DIR = os.path.join(ROOT, "conformance", "go")
SOURCE = os.path.join(GO_DIR, "src", "cnidriver", "main.go")
CACHE_ROOT = os.path.join(ROOT, ".cache", "cnidriver")
GOCODE = "/usr/share/gocode"
LIBCNI_SRC = os.path.join(GOCODE, "src", "github.com", "containernetworking", "cni", "libcni")
PLAIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class DriverBuildError(RuntimeError):
    """The Go driver could not be built (toolchain or libcni source missing, or go failed)."""


def build() -> str:
    """Compile the driver once and return the path of the binary.

    The binary lives at ``.cache/cnidriver/<sha256 of main.go>/cnidriver``; a cached one is
    returned at once. The build is offline (GOPATH mode against /usr/share/gocode, no
    modules, no cgo) and goes to a temporary name that is renamed into place, so parallel
    callers are safe (the last rename wins; every candidate is the same program).
    """
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    out_dir = os.path.join(CACHE_ROOT, digest)
    binary = os.path.join(out_dir, "cnidriver")
    if os.access(binary, os.X_OK):
        return binary

    go = shutil.which("go") or ("/usr/bin/go" if os.access("/usr/bin/go", os.X_OK) else None)
    missing = []
    if go is None:
        missing.append("the Go toolchain (`go`; Debian package golang-go)")
    if not os.path.isdir(LIBCNI_SRC):
        missing.append(f"the libcni source at {LIBCNI_SRC} (Debian package golang-github-appc-cni-dev)")
    if missing:
        raise DriverBuildError("cannot build the libcni driver: missing " + " and ".join(missing)
                               + "; install with `apt-get install golang-go golang-github-appc-cni-dev`")

    os.makedirs(out_dir, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", PLAIN_PATH),
        "HOME": os.environ.get("HOME", "/root"),
        "GO111MODULE": "off",
        "GOPATH": f"{GO_DIR}:{GOCODE}",
        "GOCACHE": os.path.join(CACHE_ROOT, "gocache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOENV": "off",
        "CGO_ENABLED": "0",
    }
    fd, tmp = tempfile.mkstemp(prefix=".cnidriver.", dir=out_dir)
    os.close(fd)
    try:
        p = subprocess.run([go, "build", "-o", tmp, "."], cwd=os.path.dirname(SOURCE), env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise DriverBuildError(f"go build of {SOURCE} failed:\n{p.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def driver_path() -> str:
    """The driver to use: ``$CNITOOL`` if set and non-empty, else a ``cnitool`` on PATH
    (unless ``CNITOOL`` is set to the empty string), else the built cnidriver."""
    named = os.environ.get("CNITOOL")
    if named:
        return named
    if named is None:
        found = shutil.which("cnitool")
        if found:
            return found
    return build()


def is_upstream(path: str) -> bool:
    """True unless ``path`` is a driver built by :func:`build`."""
    root = os.path.realpath(CACHE_ROOT) + os.sep
    return not os.path.realpath(path).startswith(root)


def cnitool_container_id(netns: str) -> str:
    """The container ID cnitool (and cnidriver without CNI_CONTAINERID) derives from a
    netns path: ``"cnitool-"`` + the first 10 bytes of sha512(abspath), in hex."""
    return "cnitool-" + hashlib.sha512(os.path.abspath(netns).encode()).hexdigest()[:20]


@dataclass
class DriverOutcome:
    """What one driver run produced; ``doc`` is stdout parsed as JSON (or None)."""

    rc: int
    stdout: bytes
    stderr: bytes
    doc: object = field(default=None)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def code(self) -> int | None:
        """The CNI error code on failure (the plugin's own, when it sent one); else None."""
        if self.ok or not isinstance(self.doc, dict):
            return None
        return self.doc.get("code")

    @property
    def message(self) -> str:
        """The error text: ``msg`` (and ``details``) of the error JSON, else stderr."""
        if isinstance(self.doc, dict) and "msg" in self.doc:
            details = self.doc.get("details")
            return self.doc["msg"] + (f"; {details}" if details else "")
        return self.stderr.decode(errors="replace").strip()

    def __str__(self) -> str:
        return (f"rc={self.rc} stdout={self.stdout.decode(errors='replace')!r} "
                f"stderr={self.stderr.decode(errors='replace')!r}")


class LibCNI:
    """Run network lists from ``conf_dir`` with plugins from ``cni_path`` through libcni.

    ``in_netns`` runs the driver itself inside that named namespace (``ip netns exec``),
    as a runtime living in a throwaway "host" namespace would; links a plugin makes on
    the host side (a bridge, veth ends) then stay in that namespace.
    """

    def __init__(self, cni_path: list[str] | str, conf_dir: str, cache_dir: str, *,
                 driver: str | None = None, in_netns: str | None = None,
                 timeout: float = 120) -> None:
        self.cni_path = cni_path if isinstance(cni_path, str) else os.pathsep.join(cni_path)
        self.conf_dir = conf_dir
        self.cache_dir = cache_dir
        self.driver = driver or driver_path()
        self.upstream = is_upstream(self.driver)
        self.in_netns = in_netns
        self.timeout = timeout

    def _run(self, argv: list[str], env: dict[str, str], driver: str | None = None) -> DriverOutcome:
        base = {"PATH": PLAIN_PATH, "NETCONFPATH": self.conf_dir, "CNI_PATH": self.cni_path,
                "CNI_CACHE_DIR": self.cache_dir}
        base.update(env)
        cmd = [driver or self.driver] + argv
        if self.in_netns:
            cmd = ["ip", "netns", "exec", self.in_netns] + cmd
        from conformance.proc import parse_doc, record

        # The report's reproduction of a failure (conformance/report.py).
        call = record(cmd, base, None, note=f"the libcni driver: it reads the network lists in {self.conf_dir}")
        try:
            p = subprocess.run(cmd, env=base, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as t:
            call.expired(self.timeout, t.stdout, t.stderr)
            raise
        out = DriverOutcome(p.returncode, p.stdout, p.stderr, parse_doc(p.stdout))
        call.rc, call.stdout, call.stderr = out.rc, out.stdout, out.stderr
        return out

    def _invoke(self, verb: str, network: str, netns: str, ifname: str, container_id: str | None,
                args: str | dict[str, str] | list[tuple[str, str]] | None,
                cap_args: dict | None) -> DriverOutcome:
        env = {"CNI_IFNAME": ifname}
        if container_id is not None:
            if self.upstream and container_id != cnitool_container_id(netns):
                raise ValueError(f"upstream cnitool ({self.driver}) cannot take a container ID; it "
                                 f"always uses {cnitool_container_id(netns)!r}")
            env["CNI_CONTAINERID"] = container_id
        if args:
            pairs = args.items() if isinstance(args, dict) else args
            env["CNI_ARGS"] = args if isinstance(args, str) else ";".join(f"{k}={v}" for k, v in pairs)
        if cap_args is not None:
            env["CAP_ARGS"] = json.dumps(cap_args)
        return self._run([verb, network, netns], env)

    def add(self, network: str, netns: str, ifname: str = "eth0", container_id: str | None = None,
            args: str | dict[str, str] | list[tuple[str, str]] | None = None,
            cap_args: dict | None = None) -> DriverOutcome:
        """AddNetworkList: on success ``doc`` is the last plugin's result (its version).

        ``args`` is CNI_ARGS, as ``"K=V;K=V"`` or pairs; ``cap_args`` the capability
        arguments (libcni passes each plugin only those its ``capabilities`` enable).
        """
        return self._invoke("add", network, netns, ifname, container_id, args, cap_args)

    def check(self, network: str, netns: str, ifname: str = "eth0", container_id: str | None = None,
              args: str | dict[str, str] | list[tuple[str, str]] | None = None,
              cap_args: dict | None = None) -> DriverOutcome:
        """CheckNetworkList (prevResult is libcni's cached ADD result); prints nothing on success."""
        return self._invoke("check", network, netns, ifname, container_id, args, cap_args)

    def delete(self, network: str, netns: str, ifname: str = "eth0", container_id: str | None = None,
               args: str | dict[str, str] | list[tuple[str, str]] | None = None,
               cap_args: dict | None = None) -> DriverOutcome:
        """DelNetworkList (plugins in reverse order; removes the cache entry on success)."""
        return self._invoke("del", network, netns, ifname, container_id, args, cap_args)

    def _own_driver(self) -> str:
        return build() if self.upstream else self.driver

    def version(self, plugin_type: str) -> DriverOutcome:
        """GetVersionInfo: ``doc`` is ``{"cniVersion", "supportedVersions"}``."""
        return self._run(["version", plugin_type], {}, self._own_driver())

    def validate(self, network: str) -> DriverOutcome:
        """ValidateNetworkList (every plugin exists and supports the list's cniVersion):
        ``doc`` is ``{"cniVersion", "capabilities", "plugins": [{"type",
        "supportedVersions"}]}``, or the error."""
        return self._run(["validate", network], {}, self._own_driver())


def write_conflist(conf_dir: str, name: str, plugins: list[dict], cni_version: str = "1.0.0") -> str:
    """Write ``<conf_dir>/<name>.conflist`` for network ``name`` and return its path."""
    os.makedirs(conf_dir, exist_ok=True)
    path = os.path.join(conf_dir, f"{name}.conflist")
    doc = {"cniVersion": cni_version, "name": name, "plugins": plugins}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    return path
