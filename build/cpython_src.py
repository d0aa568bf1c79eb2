"""The CPython sources of the few C modules Debian ships only as shared objects.

Debian's ``libpython3.11.a`` holds the interpreter and most C modules, but ``_json``,
``_ctypes`` and ``_typing`` are built as ``lib-dynload/*.so`` only. A standalone plugin
file cannot load a shared object from inside itself without a temporary file, so
build/cext.py compiles these modules from the upstream source of the installed version
and links them in. The source is Debian's own ``python3.11`` source package's upstream
tarball, fetched once with ``apt-get source --download-only`` through a private apt
configuration (deb-src entries for the machine's Debian suites, in .cache/apt: the
machine's apt setup is left alone), verified by apt against the signed index and here
against the SHA-256 pinned below, and cached in .cache/.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
# Upstream tarballs we have checked (Debian's orig.tar.gz of that upstream version).
PINNED_SHA256 = {
    "3.11.2": "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849",
}
# What build/cext.py compiles (paths inside the tarball's top directory).
MEMBERS = ("Modules/_json.c", "Modules/_typingmodule.c", "Modules/_ctypes/", "Modules/clinic/")


def python_version() -> str:
    """The installed interpreter's upstream version (the one libpython3.11.a is)."""
    return ".".join(str(n) for n in sys.version_info[:3])


def _deb_src_lines() -> list[str]:
    """deb-src entries for the machine's Debian suites (from its deb entries)."""
    codename = ""
    try:
        with open("/etc/os-release") as f:
            codename = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line).get(
                "VERSION_CODENAME", "").strip('"')
    except OSError:
        pass
    entries: list[tuple[str, str, str]] = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" not in fields.get("Types", "").split():
                    continue
                for uri in fields.get("URIs", "").split():
                    for suite in fields.get("Suites", "").split():
                        entries.append((uri, suite, fields.get("Components", "main")))
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
                if m:
                    entries.append(m.groups())  # type: ignore[arg-type]
    lines = [f"deb-src {uri} {suite} {comps}" for uri, suite, comps in entries
             if codename and suite.split("-")[0] == codename]
    return lines or [f"deb-src http://deb.debian.org/debian {codename or 'bookworm'} main"]


def _fetch(version: str, dest: str) -> None:
    apt = os.path.join(CACHE, "apt")
    for d in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, d), exist_ok=True)
    sources = os.path.join(apt, "sources.list")
    with open(sources, "w") as f:
        f.write("\n".join(_deb_src_lines()) + "\n")
    opts = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache", "-o", "APT::Sandbox::User=root"]
    subprocess.run(["apt-get", *opts, "-qq", "update"], check=True)
    # Only the upstream tarball is needed; a .dsc missing from a mirror does not matter.
    subprocess.run(["apt-get", *opts, "-qq", "source", "--download-only", "python3.11"], cwd=apt,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = os.path.join(apt, os.path.basename(dest))
    if not os.path.exists(got):
        sys.exit(f"could not fetch {os.path.basename(dest)} with apt-get source (needed once to build "
                 "the standalone plugins; see build/cpython_src.py)")
    os.replace(got, dest)


def source_dir() -> str:
    """A directory holding MEMBERS of the installed CPython version's source (cached)."""
    version = python_version()
    top = f"Python-{version}"
    out = os.path.join(CACHE, f"cpython-{version}")
    if os.path.isdir(os.path.join(out, top, "Modules", "_ctypes")):
        return os.path.join(out, top)
    os.makedirs(CACHE, exist_ok=True)
    tarball = os.path.join(CACHE, f"python3.11_{version}.orig.tar.gz")
    if not os.path.exists(tarball):
        _fetch(version, tarball)
    with open(tarball, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    pinned = PINNED_SHA256.get(version)
    if pinned and digest != pinned:
        os.unlink(tarball)
        sys.exit(f"{tarball}: sha256 {digest}, expected {pinned}")
    tmp = out + ".tmp"
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers()
                   if any(m.name.startswith(f"{top}/{p}") for p in MEMBERS) and (m.isfile() or m.isdir())]
        tar.extractall(tmp, members=members)  # Debian's own source package, hash-checked
    os.replace(tmp, out)
    return os.path.join(out, top)


if __name__ == "__main__":
    print(source_dir())
