"""The plugin registry.

A plugin is one folder here: ``plugins/<name>/main.py`` defines ``PLUGIN =
skel.Plugin("<name>", "<kind>", add=..., ...)`` and ``main()``; the folder's name is the
CNI type name libcni execs. Nothing else lists plugins: the build (``build/standalone.py``:
one self-contained file per plugin), the source launchers (``build/launchers.py``),
``make install``, the tests and the conformance harness's plugin list all take them from
``names()`` / ``load()`` below.

This package is imported at every plugin start, so it imports nothing at module level.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnilib.skel import Plugin


def names() -> list[str]:
    """Every plugin folder (one holding a main.py), sorted."""
    import os

    base = os.path.dirname(os.path.abspath(__file__))
    return sorted(d for d in os.listdir(base)
                  if not d.startswith(("_", ".")) and os.path.isfile(os.path.join(base, d, "main.py")))


def load(name: str) -> "Plugin":
    """The ``PLUGIN`` that ``plugins/<name>/main.py`` declares (its verbs stay unimported)."""
    plugin = __import__(f"plugins.{name}.main", fromlist=["PLUGIN"]).PLUGIN
    if plugin.name != name:
        raise ValueError(f"plugins/{name}/main.py declares plugin {plugin.name!r}, not {name!r}")
    return plugin


def kinds() -> dict[str, str]:
    """name -> kind (skel.KINDS) of every plugin."""
    return {n: load(n).kind for n in names()}
