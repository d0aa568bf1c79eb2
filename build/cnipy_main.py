"""The one entry point of the frozen build: a multi-call binary, like busybox.

Every plugin in ``/opt/cni/bin`` (``bridge``, ``host-local``, ...) is a symlink to this one
executable; the name it was called by (argv[0]) picks the plugin, which is the CNI type name
libcni execs. Called by any other name it lists the plugins it carries.
"""

import sys

# The plugin names, filled in by build/freeze.py from the registry (plugins.names()) when it
# writes the frozen entry point from this template; empty when run as it is.
PLUGINS: tuple[str, ...] = ()


def main() -> None:
    name = sys.argv[0].rsplit("/", 1)[-1]
    if name in PLUGINS:
        __import__(f"plugins.{name}.main", fromlist=["main"]).main()
        return
    sys.stderr.write(f"cni-py multi-call binary; call it as one of: {', '.join(PLUGINS)}\n"
                     "(install with `make install`, which links each plugin name to it)\n")
    sys.exit(2)


main()
