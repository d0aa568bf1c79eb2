"""``__cnipy_main__``: the first module a standalone plugin executable runs (frozen into it).

build/standalone.py freezes this file once per plugin with PLUGIN set to the plugin's CNI
type name: the file carries the plugin it implements, whatever it is called. It loads
``plugins.<PLUGIN>.main`` and runs its ``main()``; if the plugin cannot even be loaded
(a module missing from the payload, a corrupt one), it answers with a CNI error document
(code 999) on stdout instead of a traceback, as the spec asks of a plugin.

It imports nothing but built-in modules before the plugin does: start-up is the product.
"""

import sys

PLUGIN = ""  # set by build/standalone.py
PYROUTE2 = False  # set by build/standalone.py: pyroute2 is in the payload


def _fail(msg: str) -> None:
    import posix

    text = "".join(c if c >= " " and c not in '"\\' else f"\\u{ord(c):04x}" for c in msg)
    doc = f'{{\n    "cniVersion": "1.0.0",\n    "code": 999,\n    "msg": "cni-py {PLUGIN}: {text}"\n}}\n'
    data = doc.encode("utf-8", "replace")
    while data:
        data = data[posix.write(1, data):]
    posix._exit(1)


class _FrozenPyroute2:
    """Serves cnilib.nl its pyroute2 package code from the payload.

    cnilib.nl imports pyroute2's message classes behind stand-ins for the package root,
    whose ``__init__`` it runs only on demand; it finds that code as a file on sys.path,
    and a frozen build has no such file. When cnilib.nl is imported, this finder points
    its two file helpers (``_pyroute2_dir``, ``_package_code``) at the frozen modules.
    """

    ROOT = "<frozen>/pyroute2"

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "cnilib.nl":
            return None
        sys.meta_path.remove(cls)
        from _frozen_importlib import FrozenImporter

        spec = FrozenImporter.find_spec(name)
        if spec is not None:
            spec.loader = cls
        return spec

    @staticmethod
    def create_module(spec):
        return None

    @classmethod
    def exec_module(cls, module):
        from _frozen_importlib import FrozenImporter

        FrozenImporter.exec_module(module)
        root = cls.ROOT
        module._pyroute2_dir = lambda: (root, root + "/__init__.pyc")
        module._package_code = cls.package_code

    @classmethod
    def package_code(cls, path: str):
        import _imp

        # "<root>/__init__.pyc" -> pyroute2, "<root>/config/__init__.pyc" -> pyroute2.config
        rel = path[len(cls.ROOT):].rsplit("/", 1)[0]
        return _imp.get_frozen_object("pyroute2" + rel.replace("/", "."))


def _run() -> None:
    if PYROUTE2:
        sys.meta_path.insert(0, _FrozenPyroute2)
    try:
        main = __import__(f"plugins.{PLUGIN}.main", fromlist=["main"]).main
    except Exception as e:  # noqa: BLE001 - anything here means the file is broken
        _fail(f"cannot load the plugin from this executable ({type(e).__name__}: {e}); the file may be "
              "corrupt or built wrongly: reinstall it")
    main()


_run()
