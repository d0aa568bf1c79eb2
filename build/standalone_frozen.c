/* cni-py standalone executables: CPython's frozen-module tables, empty until main() fills
 * them from the payload (build/standalone_main.c).
 *
 * libpython3.11.a's frozen.o points these tables at deepfreeze.o: the importlib bootstrap
 * and the start-up modules (os, io, codecs, ...) as ready-made static objects, ~0.9 MB of
 * every executable. Defining the tables (and deepfreeze's two hooks) here keeps both
 * objects out of the link; the payload carries those modules as marshalled code like every
 * other module instead (build/standalone.py), which costs well under a millisecond a start.
 */
#include <Python.h>

struct _module_alias {  /* as Include/internal/pycore_import.h */
    const char *name;
    const char *orig;
};

static const struct _frozen none[] = {{0, 0, 0, 0, 0}};
static const struct _module_alias aliases[] = {
    {"_frozen_importlib", "importlib._bootstrap"},
    {"_frozen_importlib_external", "importlib._bootstrap_external"},
    {0, 0},
};

const struct _frozen *_PyImport_FrozenBootstrap = none;
const struct _frozen *_PyImport_FrozenStdlib = none;
const struct _frozen *_PyImport_FrozenTest = none;
const struct _module_alias *_PyImport_FrozenAliases = aliases;
const struct _frozen *PyImport_FrozenModules = NULL;

int _Py_Deepfreeze_Init(void) { return 0; }
void _Py_Deepfreeze_Fini(void) {}
