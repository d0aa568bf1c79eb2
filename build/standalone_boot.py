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


def _fail(msg: str) -> None:
    import posix

    text = "".join(c if c >= " " and c not in '"\\' else f"\\u{ord(c):04x}" for c in msg)
    doc = f'{{\n    "cniVersion": "1.0.0",\n    "code": 999,\n    "msg": "cni-py {PLUGIN}: {text}"\n}}\n'
    data = doc.encode("utf-8", "replace")
    while data:
        data = data[posix.write(1, data):]
    posix._exit(1)


def _run() -> None:
    try:
        main = __import__(f"plugins.{PLUGIN}.main", fromlist=["main"]).main
    except Exception as e:  # noqa: BLE001 - anything here means the file is broken
        _fail(f"cannot load the plugin from this executable ({type(e).__name__}: {e}); the file may be "
              "corrupt or built wrongly: reinstall it")
    main()


_run()
