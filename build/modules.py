"""Which modules a standalone plugin executable carries (build/standalone.py).

Static analysis: ``modulefinder`` from ``plugins.<name>.main`` and every module of the
plugin's folder, which follows imports anywhere in a module, including the lazy ones
inside functions that the plugins use for every verb. Its closure over the standard
library is far wider than what runs (``os`` mentions ``subprocess``, ``traceback``
mentions ``ast``, ...), so EXCLUDES names the packages no plugin reaches at run time;
the test suite (tests/test_binaries.py, tests/test_standalone.py, the conformance harness)
runs every verb of every plugin from the built files and fails on a missing module.

Two pyroute2 package roots are carried but not followed: cnilib.nl replaces
``pyroute2/__init__`` and ``pyroute2.config`` with stand-ins and runs their real code only
if something asks them for more than the message classes need, which no plugin does (the
real ``__init__`` imports all of pyroute2: asyncio, multiprocessing, ...).
"""

from __future__ import annotations

import modulefinder
import os
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Standard-library packages no plugin imports at run time: they are reached only through
# optional or lazy paths of other stdlib modules (os.popen -> subprocess, traceback's
# caret display -> ast -> inspect, pprint -> dataclasses, ...) or are fallbacks that the
# built-in modules make unnecessary (hashlib -> _sha256/_sha512, ctypes -> _ctypes).
EXCLUDES = [
    "__main__", "asyncio", "email", "http", "urllib", "xml", "xmlrpc", "html", "unittest", "doctest", "pydoc",
    "pydoc_data", "pdb", "bdb", "cmd", "code", "codeop", "lib2to3", "distutils", "test", "concurrent", "ssl",
    "ftplib", "plistlib", "socketserver", "webbrowser", "mimetypes", "tarfile", "zipfile", "zipimport", "lzma",
    "bz2", "gzip", "_compression", "sqlite3", "tkinter", "decimal", "_pydecimal", "multiprocessing", "ctypes",
    "hashlib", "importlib.metadata", "importlib.resources", "pkgutil", "sysconfig", "_osx_support",
    "_aix_support", "_sysconfigdata__linux_x86_64-linux-gnu", "argparse", "getopt", "gettext", "inspect", "dis",
    "opcode", "ast", "pickle", "_compat_pickle", "pprint", "dataclasses", "tracemalloc", "subprocess", "shutil",
    "tempfile", "glob", "fnmatch", "platform", "calendar", "_strptime", "datetime", "locale", "difflib",
    "statistics", "fractions", "decimal", "numbers", "uuid", "runpy", "py_compile", "getpass", "netrc", "tty",
    "pty", "readline", "rlcompleter", "queue", "_threading_local", "win_inet_pton", "_winapi", "_winreg",
    "winreg", "msvcrt", "nt", "ntpath", "nturl2path", "_overlapped", "_scproxy", "java", "org", "vms_lib", "_bootlocale",
    "encodings.idna", "encodings.mbcs", "encodings.oem", "stringprep", "unicodedata", "_dummy_thread", "dummy_threading",
]
# Package roots carried without following their imports (see the module docstring).
NOT_FOLLOWED = {"pyroute2", "pyroute2.config"}
# Standard modules whose imports inside functions are not followed (their module-level ones
# are): functools imports typing only in singledispatch's annotation-based register, which
# no carried module uses; warnings imports linecache and tracemalloc only to print a
# warning's source line, inside ``try: ... except Exception`` (it prints the warning
# without them). ~240 KB less per file (typing, traceback, linecache, tokenize, ...).
FUNCTIONS_NOT_FOLLOWED = {"functools", "warnings"}
# A function's code object (CO_NEWLOCALS); a class body's runs at import, so it is scanned.
_CO_NEWLOCALS = 0x2
# Plugins that never load pyroute2 on any verb: their netlink requests are packed by hand
# (cnilib.rawlink, cnilib.rawaddr, cnilib.tc) or they need none. Static analysis cannot see
# that (those modules import cnilib.nl for its socket, and nl.load() names the message
# modules), so it is stated here, and each is a test: tests/test_install_and_startup.py
# (host-local, loopback), tests/test_static.py, tests/test_tuning.py and
# tests/test_bandwidth.py check with -X importtime that no verb imports pyroute2. Leaving
# pyroute2 and what only it needs (logging, threading, typing, ...) out of these files
# saves ~0.9 MB each.
NO_PYROUTE2 = {"host-local", "loopback", "static", "tuning", "bandwidth"}
# What the interpreter imports by itself at start-up: the stdio and file-system codecs, io,
# and what CPython's own frozen set holds (build/standalone_frozen.c leaves that set out).
STARTUP = ["encodings", "encodings.aliases", "encodings.utf_8", "encodings.utf_8_sig", "encodings.ascii",
           "encodings.latin_1", "abc", "codecs", "io", "os", "stat", "posixpath", "genericpath", "_collections_abc"]


class _Finder(modulefinder.ModuleFinder):
    def scan_code(self, co, m):
        if m.__name__ in NOT_FOLLOWED:
            return None
        if m.__name__ in FUNCTIONS_NOT_FOLLOWED:
            co = co.replace(co_consts=tuple(None if isinstance(c, type(co)) and c.co_flags & _CO_NEWLOCALS else c
                                            for c in co.co_consts))
        return super().scan_code(co, m)


class ModuleSet:
    """One plugin's modules: ``python`` (name -> (source path, is_package)), ``builtin``
    (C modules it imports that CPython links in), ``extension`` (C modules that Debian
    ships as shared objects: they must be compiled in, see build/cext.py)."""

    def __init__(self, python: dict[str, tuple[str, bool]], builtin: set[str], extension: set[str]) -> None:
        self.python = python
        self.builtin = builtin
        self.extension = extension


def stdlib_dir() -> str:
    """The standard library of the interpreter running the build (Debian's python3.11)."""
    return sysconfig.get_paths()["stdlib"]


def search_path() -> list[str]:
    """The project, the standard library and the virtualenv's site-packages (pyroute2)."""
    return [ROOT, stdlib_dir(), stdlib_dir() + "/lib-dynload", sysconfig.get_paths()["purelib"]]


def find(plugin: str) -> ModuleSet:
    """The modules ``plugins.<plugin>`` can import (see the module docstring)."""
    mf = _Finder(path=search_path(), excludes=EXCLUDES + (["pyroute2"] if plugin in NO_PYROUTE2 else []))
    mf.import_hook(f"plugins.{plugin}.main")
    folder = os.path.join(ROOT, "plugins", plugin)
    for f in sorted(os.listdir(folder)):
        if f.endswith(".py") and f != "__init__.py":
            mf.import_hook(f"plugins.{plugin}.{f[:-3]}")
    for name in STARTUP:
        mf.import_hook(name)
    python: dict[str, tuple[str, bool]] = {}
    builtin: set[str] = set()
    extension: set[str] = set()
    for name, m in mf.modules.items():
        path = m.__file__
        if path is None:
            builtin.add(name)
        elif path.endswith(".py"):
            python[name] = (path, m.__path__ is not None)
        else:
            extension.add(name)
    return ModuleSet(python, builtin, extension)


if __name__ == "__main__":  # python build/modules.py PLUGIN: what it carries
    sys.path.insert(0, ROOT)
    s = find(sys.argv[1])
    print("\n".join(sorted(s.python)))
    print("built-in:", " ".join(sorted(s.builtin)))
    print("extension:", " ".join(sorted(s.extension)))
