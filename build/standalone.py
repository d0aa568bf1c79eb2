"""Build the drop-in binaries: ``python build/standalone.py OUT_DIR [PLUGIN...]``.

One self-contained executable per plugin, named by its CNI type (``OUT_DIR/bridge``,
``OUT_DIR/host-local``, ...). A file needs nothing of ours next to it and no Python on the
machine, unpacks nothing, and carries the plugin it implements, so it runs under any name
and from anywhere (``cp -L bridge /opt/cni/bin/10-bridge``). Each file is:

- one executable image, the same in every file: build/standalone_main.c linked with
  Debian's ``libpython3.11.a`` (statically, not position-independent: Python code runs
  10-20% faster than through a shared libpython), a generated table of built-in modules
  (build/cext.py: only the C modules the plugins import, so the linker leaves the rest of
  the archive out, e.g. unicodedata's tables), the three C modules Debian ships only as
  shared objects compiled in (``_json``, ``_ctypes`` with a static libffi, ``_typing``), and
  zlib, and CPython's frozen-module tables replaced by empty ones of ours
  (build/standalone_frozen.c: libpython's deep-frozen copy of importlib and the start-up
  modules, ~0.9 MB, stays out; the payload carries them like every other module); sections
  the program never references are dropped (``--gc-sections``) and the result is
  stripped. It links nothing but glibc (libc, libm).
- the plugin's payload appended to it (build/payload.py): its Python modules as marshalled
  code objects (the plugin's package, the cnilib modules it can import, the standard
  library subset and, for the plugins that use netlink, pyroute2's message modules),
  found by static analysis (build/modules.py), and ``__cnipy_main__``
  (build/standalone_boot.py) naming the plugin; compiled without docstrings and column
  positions (``_compile``). The executable maps its own payload and serves it to the
  interpreter as frozen modules: no module file is read.

Build needs gcc, libc6-dev, libpython3.11-dev, libffi-dev and zlib1g-dev (build/setup.sh),
and, once, the upstream CPython source of the installed version (build/cpython_src.py).
Figures behind the design: README "Binaries".
"""

from __future__ import annotations

import ast
import hashlib
import marshal
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[0:0] = [HERE, ROOT]

import cext
import cpython_src
import modules
import payload

MAIN_C = os.path.join(HERE, "standalone_main.c")
FROZEN_C = os.path.join(HERE, "standalone_frozen.c")
BOOT = os.path.join(HERE, "standalone_boot.py")
# Names the old layout (build/freeze.py: a PyInstaller bundle plus links) left in OUT_DIR.
OLD_BUNDLE = "cni-py"


def plugin_names() -> list[str]:
    """The registry's plugins (plugins/__init__.py)."""
    from plugins import names

    return names()


def _check_interpreter() -> str:
    """libpython3.11.a of the interpreter running us: its marshal format and stdlib are the
    ones the payload is made with."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"build/standalone.py needs Debian's python3.11 (the project's .venv), not {sys.version}")
    lib = os.path.join(sysconfig.get_config_var("LIBPL"), sysconfig.get_config_var("LIBRARY"))
    if not os.path.exists(lib):
        sys.exit(f"{lib} missing: install libpython3.11-dev (build/setup.sh)")
    return lib


def _link(work: str, builtin: set[str], extension: set[str]) -> str:
    """The executable image shared by every plugin file; its build id is written into it."""
    libpython = _check_interpreter()
    src = cpython_src.source_dir() if extension else ""
    objects, libs = cext.compile_extensions(extension, src, work)
    config_c = os.path.join(work, "config.c")
    cext.write_inittab(builtin | extension, config_c)
    # The build id: a hash of everything linked, so a payload names the exact image it was
    # made for (standalone_main.c refuses another one).
    h = hashlib.sha256()
    for path in [MAIN_C, FROZEN_C, config_c, *objects, *libs, libpython]:
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    build_id = h.digest()[:16]
    with open(os.path.join(work, "build_id.h"), "w") as f:
        escaped = "".join(f"\\x{b:02x}" for b in build_id)
        f.write(f'#define CNIPY_BUILD_ID "{escaped}"\n')
    exe = os.path.join(work, "cnipy-standalone")
    libdir = cext.libdir()
    subprocess.run(["gcc", *cext.CFLAGS, "-no-pie", "-s", "-o", exe, f"-I{work}", *cext.includes(),
                    MAIN_C, FROZEN_C, config_c, *objects, libpython, *libs, os.path.join(libdir, "libz.a"),
                    "-Wl,--gc-sections", "-Wl,-O1", "-Wl,--as-needed", "-lm", "-ldl", "-lpthread", "-lutil"],
                   check=True)
    with open(os.path.join(work, "build_id"), "wb") as f:
        f.write(build_id)
    return exe


def _compile(source: bytes, filename: str) -> bytes:
    """Marshalled code without docstrings (as ``python -OO`` leaves them out, but keeping
    ``assert``: the plugins run as they do from source) and, since the builder runs with
    ``-X no_debug_ranges``, without column positions: 24% less payload; tracebacks keep
    their line numbers. No plugin reads a ``__doc__``."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                if len(body) == 1:
                    body[0] = ast.copy_location(ast.Pass(), body[0])
                else:
                    del body[0]
    return marshal.dumps(compile(tree, filename, "exec", dont_inherit=True, optimize=0))


def _code(name: str, path: str, is_package: bool) -> bytes:
    """The module's code, marshalled as the interpreter unmarshals frozen modules. Its file
    name is the module's path relative to its root (``cnilib/skel.py``): what a traceback
    shows."""
    with open(path, "rb") as f:
        source = f.read()
    return _compile(source, name.replace(".", "/") + ("/__init__.py" if is_package else ".py"))


def _bootstrap() -> list[tuple[str, bytes, int]]:
    """importlib's bootstrap, frozen under the names the interpreter loads it by at start
    (build/standalone_frozen.c: CPython's deep-frozen copy is left out of the link)."""
    stdlib = modules.stdlib_dir()
    return [(name, _compile(open(os.path.join(stdlib, rel), "rb").read(), f"<frozen {orig}>"), payload.BOOTSTRAP)
            for name, orig, rel in (("_frozen_importlib", "importlib._bootstrap", "importlib/_bootstrap.py"),
                                    ("_frozen_importlib_external", "importlib._bootstrap_external",
                                     "importlib/_bootstrap_external.py"),
                                    ("zipimport", "zipimport", "zipimport.py"))]


def _boot(plugin: str) -> bytes:
    with open(BOOT) as f:
        text = f.read()
    old = 'PLUGIN = ""'
    if text.count(old) != 1:
        sys.exit(f"{BOOT}: the line {old!r} is missing")
    text = text.replace(old, f"PLUGIN = {plugin!r}", 1)
    return _compile(text.encode(), "__cnipy_main__.py")


def _payload(plugin: str, found: modules.ModuleSet, build_id: bytes) -> bytes:
    mods = _bootstrap()
    mods += [(name, _code(name, path, pkg), payload.PACKAGE if pkg else 0)
             for name, (path, pkg) in sorted(found.python.items()) if name != "zipimport"]
    mods.append(("__cnipy_main__", _boot(plugin), 0))
    return payload.build(mods, build_id, plugin)


def _is_ours(path: str) -> bool:
    """A standalone plugin file (ends with our payload's magic)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(payload.MAGIC), os.SEEK_END)
            return f.read() == payload.MAGIC
    except OSError:
        return False


def _write(path: str, image: bytes, data: bytes) -> None:
    """Atomically: a runtime exec'ing ``path`` meanwhile runs the old file or the new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(image)
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def build(out: str, only: list[str] | None = None) -> None:
    names = plugin_names()
    chosen = only or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        sys.exit(f"unknown plugins: {', '.join(unknown)} (known: {', '.join(names)})")
    found = {n: modules.find(n) for n in chosen}
    builtin = set().union(*(f.builtin for f in found.values()))
    extension = set().union(*(f.extension for f in found.values()))
    work = tempfile.mkdtemp(prefix="cnipy-standalone-")
    try:
        exe = _link(work, builtin, extension)
        with open(exe, "rb") as f:
            image = f.read()
        with open(os.path.join(work, "build_id"), "rb") as f:
            build_id = f.read()
        os.makedirs(out, exist_ok=True)
        # The previous layout (a PyInstaller bundle and links into it) goes.
        if os.path.isdir(os.path.join(out, OLD_BUNDLE)) and not os.path.islink(os.path.join(out, OLD_BUNDLE)):
            shutil.rmtree(os.path.join(out, OLD_BUNDLE))
        for name in os.listdir(out):
            path = os.path.join(out, name)
            if os.path.islink(path) or (only is None and name not in names and _is_ours(path)):
                os.unlink(path)  # a link of the old layout, or the file of a plugin that is gone
        for name in chosen:
            data = _payload(name, found[name], build_id)
            path = os.path.join(out, name)
            if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
                os.unlink(path)
            _write(path, image, data)
            print(f"  {path}  {(len(image) + len(data)) / 1e6:.1f} MB "
                  f"({len(found[name].python)} modules, {len(data) / 1e6:.2f} MB of them)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if "no_debug_ranges" not in sys._xoptions:  # see _compile
        os.execv(sys.executable, [sys.executable, "-X", "no_debug_ranges", *sys.argv])
    build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist", "bin"), sys.argv[2:] or None)
