"""Imports run one way: no two modules of cnilib import each other, directly or through a
chain, and cnilib imports neither the plugins nor the conformance harness; plugins reach
the firewall only through its public API (``cnilib.firewall``, ``cnilib.owner``).

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` counts, at module level or inside a function (a lazy import is still a
dependency), and so do ``__import__``/``importlib.import_module`` calls with a literal
name; imports under ``if TYPE_CHECKING:`` (or ``if False:``) do not, since they never run.
An import of ``a.b.c`` is an edge to the module ``a.b.c`` (``from a.b import c`` too, when
``c`` is a module), not to its parent packages: Python runs ``a/__init__.py`` and
``a/b/__init__.py`` first, but a package that is only a façade over its submodules (such as
``cnilib.firewall``) does not depend on them the other way round. The same rule as
import-linter's (grimp).

Written for any set of top-level packages, so the check can grow to the whole tree.
"""

from __future__ import annotations

import ast
import os

import pytest

from tests.helpers import ROOT

# ---- the graph ----

class Module:
    """One source file: its dotted name, path, the imports it makes (target, line) and the
    names it takes from modules (module, name, line)."""

    __slots__ = ("name", "path", "is_package", "imports", "names")

    def __init__(self, name: str, path: str, is_package: bool) -> None:
        self.name = name
        self.path = path
        self.is_package = is_package
        self.imports: list[tuple[str, int]] = []
        self.names: list[tuple[str, str, int]] = []


def find_modules(root: str, packages: list[str]) -> dict[str, Module]:
    """Every ``.py`` file under the top-level ``packages`` of ``root`` by dotted name
    (directories whose names are not identifiers, such as ``host-local``, included)."""
    out: dict[str, Module] = {}
    for top in packages:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            rel = os.path.relpath(d, root).replace(os.sep, ".")
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                is_pkg = f == "__init__.py"
                name = rel if is_pkg else f"{rel}.{f[:-3]}"
                out[name] = Module(name, os.path.join(d, f), is_pkg)
    return out


def _type_checking_only(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:``, ``if typing.TYPE_CHECKING:`` or ``if False:``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return isinstance(test, ast.Constant) and test.value is False


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: the bodies of type-checking-only ``if`` blocks are skipped
    (their ``else`` is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _type_checking_only(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _dynamic_target(node: ast.Call) -> str | None:
    """The literal module name of ``__import__("x")`` / ``importlib.import_module("x")``."""
    f = node.func
    named = (isinstance(f, ast.Name) and f.id in ("__import__", "import_module")) or \
        (isinstance(f, ast.Attribute) and f.attr == "import_module")
    if named and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def read_imports(mod: Module, modules: dict[str, Module]) -> None:
    """Fill ``mod.imports`` with the absolute names it imports (modules of the tree where
    ``from x import y`` names a submodule, else the name as written)."""
    with open(mod.path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), mod.path)
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            mod.imports += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:
                    mod.imports.append((sub, node.lineno))
                else:
                    mod.imports.append((base, node.lineno))
                    mod.names.append((base, a.name, node.lineno))
        elif isinstance(node, ast.Call):
            target = _dynamic_target(node)
            if target is not None:
                mod.imports.append((target, node.lineno))


def build_graph(root: str, packages: list[str]) -> dict[str, Module]:
    """The modules of ``packages`` with their imports read."""
    modules = find_modules(root, packages)
    for mod in modules.values():
        read_imports(mod, modules)
    return modules


def edges(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported module of the tree -> first line importing it}."""
    out: dict[str, dict[str, int]] = {}
    for name, mod in modules.items():
        targets: dict[str, int] = {}
        for target, line in mod.imports:
            if target in modules and target != name:
                targets.setdefault(target, line)
        out[name] = targets
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One import cycle per strongly connected component of more than one module, as the
    path ``[a, b, ..., a]`` (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        components.append(sorted(comp))
    return [_a_cycle(graph, comp) for comp in components]


def _a_cycle(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    inside, first = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in inside:
                    continue
                if w == first:
                    path = [v]
                    while path[-1] != first:
                        path.append(prev[path[-1]])
                    return [first] + path[::-1][1:] + [first] if len(path) > 1 else [first, first]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp  # unreachable for a real component


def describe(modules: dict[str, Module], graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """``a (a.py:12) -> b (b.py:3) -> a``: each step with the line that imports the next."""
    steps = []
    for a, b in zip(cycle, cycle[1:], strict=False):
        steps.append(f"{a} ({os.path.relpath(modules[a].path, ROOT)}:{graph[a][b]})")
    return " -> ".join(steps + [cycle[-1]])


def _forbidden(modules: dict[str, Module], prefixes: tuple[str, ...]) -> list[str]:
    """``module:line imports target`` for every import of a name starting with ``prefixes``."""
    out = set()
    for mod in modules.values():
        for target, line in mod.imports:
            if any(target == p or target.startswith(p + ".") for p in prefixes):
                out.add(f"{os.path.relpath(mod.path, ROOT)}:{line} imports {target}")
    return sorted(out)


# ---- the rules ----

@pytest.fixture(scope="module")
def cnilib_modules() -> dict[str, Module]:
    return build_graph(ROOT, ["cnilib"])


def test_cnilib_modules_never_import_each_other(cnilib_modules):
    graph = edges(cnilib_modules)
    found = [describe(cnilib_modules, graph, c) for c in cycles(graph)]
    assert not found, "import cycles in cnilib:\n" + "\n".join(found)


def test_cnilib_imports_neither_plugins_nor_the_harness(cnilib_modules):
    found = _forbidden(cnilib_modules, ("plugins", "conformance", "tests"))
    assert not found, "cnilib must not depend on what is built on it:\n" + "\n".join(found)


TREE = ["cnilib", "plugins", "conformance", "build"]


@pytest.fixture(scope="module")
def tree_modules() -> dict[str, Module]:
    return build_graph(ROOT, TREE)


def test_no_import_cycle_anywhere(tree_modules):
    """No two project modules (cnilib, plugins, conformance, build) import each other,
    directly or through a chain."""
    graph = edges(tree_modules)
    found = [describe(tree_modules, graph, c) for c in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_plugin_imports_another(tree_modules):
    """A plugin is one folder: it may use cnilib, never another plugin (nor the harness)."""
    found = []
    for name, mod in tree_modules.items():
        parts = name.split(".")
        if parts[0] != "plugins" or len(parts) < 2:
            continue
        own = f"plugins.{parts[1]}"
        for target, line in mod.imports:
            if target == "conformance" or target.startswith("conformance."):
                found.append(f"{os.path.relpath(mod.path, ROOT)}:{line} imports {target}")
            elif target.startswith("plugins.") and not (target == own or target.startswith(own + ".")):
                found.append(f"{os.path.relpath(mod.path, ROOT)}:{line} imports {target}")
    assert tree_modules and not found, "plugins must not import each other:\n" + "\n".join(found)


def test_plugins_use_only_the_public_firewall_api():
    """No plugin imports a module under cnilib.firewall (base, backends, runners, tools)
    nor a private name of it: the façade ``cnilib.firewall`` (and ``cnilib.owner``) is the API."""
    modules = build_graph(ROOT, ["cnilib", "plugins"])
    plugins = {n: m for n, m in modules.items() if n.startswith("plugins.")}
    found = _forbidden(plugins, tuple(n for n in modules if n.startswith("cnilib.firewall.")))
    found += [f"{os.path.relpath(m.path, ROOT)}:{line} imports {base}.{name}" for m in plugins.values()
              for base, name, line in m.names if base.startswith("cnilib.firewall") and name.startswith("_")]
    assert plugins and not found, "plugins must use cnilib.firewall's public API only:\n" + "\n".join(found)


# ---- the checker itself (it must be able to fail) ----

def _tree(tmp_path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from pkg.c import x\n",
        "pkg/c.py": "from . import a\nx = 1\n",
        "pkg/d.py": "import pkg.a\n",
    })
    graph = edges(build_graph(root, ["pkg"]))
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_checker_ignores_type_checking_imports_and_parent_packages(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "def api():\n    from pkg.sub.impl import run\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/impl.py": ("from pkg.sub import low\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
                            "    from pkg import api\nif False:\n    import pkg\nelse:\n    import os\n"),
        "pkg/sub/low.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.sub import impl\n",
    })
    modules = build_graph(root, ["pkg"])
    graph = edges(modules)
    assert cycles(graph) == []
    assert graph["pkg"] == {"pkg.sub.impl": 2} and graph["pkg.sub.impl"] == {"pkg.sub.low": 1}
    assert ("os", 8) in modules["pkg.sub.impl"].imports


def test_checker_sees_dynamic_imports_and_forbidden_packages(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    return __import__('pkg.b')\n",
        "pkg/b.py": "import importlib\nimportlib.import_module('pkg.a')\nfrom plugins.x import y\n",
    })
    modules = build_graph(root, ["pkg"])
    assert cycles(edges(modules)) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert [f.rsplit(" ", 1)[1] for f in _forbidden(modules, ("plugins",))] == ["plugins.x"]
