/* cni-py standalone plugin executable: the C main of every file build/standalone.py makes.
 *
 * One file = this program (libpython and the few C extension modules the plugins need,
 * linked in statically) + a payload appended after the ELF image: the plugin's Python
 * modules as marshalled code objects, an index, and a trailer (build/payload.py writes it,
 * the format is described there). At start the payload is mapped read-only from our own
 * executable and handed to the interpreter as its frozen-module table
 * (PyImport_FrozenModules): imports are served from memory, nothing is unpacked, no file
 * other than this one is read, and no environment variable (PYTHONPATH, PYTHONHOME, ...)
 * changes what runs. The module ``__cnipy_main__`` in the payload names the plugin and
 * runs it, so the file works under any name (cp bridge /opt/cni/bin/10-bridge).
 *
 * Whatever goes wrong before the plugin's own code runs (a truncated or foreign payload, an
 * interpreter that cannot start) is reported as a CNI error document on stdout (code 999)
 * and exit status 1, as the CNI spec asks of a plugin, instead of a bare interpreter error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Written by build/standalone.py into the generated build_id.h: 16 bytes every payload
 * made for this executable carries in its trailer. */
#include "build_id.h"

#define MAGIC "CNIPYPL1"
#define FORMAT 1

/* The trailer: the last bytes of the file (little-endian, as written by build/payload.py). */
struct trailer {
    unsigned char build_id[16];
    uint64_t payload_len;  /* from the payload's first byte to the trailer's last */
    uint64_t index_off;    /* from the payload's first byte */
    uint32_t index_len;
    uint32_t index_crc;    /* zlib crc32 of the index */
    uint32_t count;        /* index entries */
    uint32_t format;
    char plugin[32];       /* NUL-padded: for error messages only */
    char magic[8];
};

/* One index entry; offsets from the payload's first byte. */
struct entry {
    uint32_t name_off;
    uint32_t data_off;
    uint32_t data_len;
    uint32_t flags;
};
#define F_PACKAGE 1u
#define F_BOOTSTRAP 2u  /* importlib's bootstrap: CPython's table of modules it always takes frozen */

/* build/standalone_frozen.c: CPython's frozen-module tables, ours to fill. */
extern const struct _frozen *_PyImport_FrozenBootstrap;

static char plugin_name[33] = "plugin";

/* A CNI error document (code 999) on stdout, then exit 1. ``msg`` is escaped for JSON. */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char msg[1024], out[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = (size_t)snprintf(out, sizeof out, "{\n    \"cniVersion\": \"1.0.0\",\n    \"code\": 999,\n"
                                "    \"msg\": \"cni-py %s: ", plugin_name);
    for (const unsigned char *p = (const unsigned char *)msg; *p && n < sizeof out - 16; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, 8, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "\"\n}\n");
    for (size_t done = 0; done < n;) {
        ssize_t w = write(1, out + done, n - done);
        if (w <= 0 && errno != EINTR)
            break;
        if (w > 0)
            done += (size_t)w;
    }
    _exit(1);
}

/* Our own executable, opened: /proc/self/exe is exactly the file the kernel ran (even if
 * `make install` renamed a new build over its path meanwhile); without /proc (a chroot),
 * the path we were exec'd by, checked against our build id below. */
static int open_self(const char **path)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    *path = "/proc/self/exe";
    if (fd >= 0)
        return fd;
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    if (execfn == NULL)
        fail("cannot open its own executable: /proc/self/exe: %s, and no AT_EXECFN", strerror(errno));
    fd = open(execfn, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open its own executable (%s): %s", execfn, strerror(errno));
    *path = execfn;
    return fd;
}

/* Map the payload and turn its index into the frozen-module tables (bootstrap, the rest). */
static void load_payload(void)
{
    const char *path;
    int fd = open_self(&path);
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail("cannot stat its own executable %s: %s", path, strerror(errno));
    struct trailer t;
    if ((size_t)st.st_size < sizeof t ||
        pread(fd, &t, sizeof t, st.st_size - (off_t)sizeof t) != (ssize_t)sizeof t ||
        memcmp(t.magic, MAGIC, 8) != 0)
        fail("%s has no module payload at its end: the file is truncated or corrupt "
             "(reinstall it; copy the file itself, e.g. cp -L)", path);
    memcpy(plugin_name, t.plugin, 32);
    plugin_name[32] = '\0';
    if (t.format != FORMAT || memcmp(t.build_id, CNIPY_BUILD_ID, 16) != 0)
        fail("the module payload of %s was made for another build of the executable "
             "(format %u): the file is corrupt or was assembled from different builds", path, t.format);
    if (t.payload_len > (uint64_t)st.st_size || t.payload_len < sizeof t ||
        t.index_off + t.index_len > t.payload_len - sizeof t ||
        (uint64_t)t.count * sizeof(struct entry) > t.index_len)
        fail("%s: the module payload's trailer is inconsistent (file size %lld): the file is corrupt",
             path, (long long)st.st_size);
    off_t start = st.st_size - (off_t)t.payload_len;
    long page = sysconf(_SC_PAGESIZE);
    off_t base = start & ~((off_t)page - 1);
    size_t len = (size_t)(st.st_size - base);
    const unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, base);
    if (map == MAP_FAILED)
        fail("cannot map the module payload of %s: %s", path, strerror(errno));
    close(fd);
    const unsigned char *payload = map + (start - base);
    const unsigned char *index = payload + t.index_off;
    if ((uint32_t)crc32(0L, index, t.index_len) != t.index_crc)
        fail("%s: the module index fails its checksum: the file is corrupt", path);
    /* Two zero-terminated tables in one allocation: the rest, then the bootstrap. */
    struct _frozen *table = calloc(t.count + 2, sizeof *table);
    if (table == NULL)
        fail("out of memory");
    struct _frozen *boot = table + t.count + 1;
    const struct entry *e = (const struct entry *)index;
    uint64_t limit = t.payload_len - sizeof t;
    size_t n = 0, nboot = 0;
    for (uint32_t i = 0; i < t.count; i++) {
        if (e[i].name_off >= limit || (uint64_t)e[i].data_off + e[i].data_len > limit ||
            e[i].data_len > INT32_MAX || memchr(payload + e[i].name_off, 0, limit - e[i].name_off) == NULL)
            fail("%s: module index entry %u is out of bounds: the file is corrupt", path, i);
        struct _frozen *f = (e[i].flags & F_BOOTSTRAP) ? --boot : &table[n++];
        f->name = (const char *)payload + e[i].name_off;
        f->code = payload + e[i].data_off;
        f->size = (int)e[i].data_len;
        f->is_package = (e[i].flags & F_PACKAGE) != 0;
        f->get_code = NULL;
        nboot += (e[i].flags & F_BOOTSTRAP) != 0;
    }
    if (nboot == 0)
        fail("%s: the module payload has no importlib bootstrap: the file is corrupt", path);
    /* table[n] stays zero: the end of the rest; the bootstrap entries sit just before the
     * allocation's last slot, which stays zero too. */
    memset(&table[n], 0, sizeof table[n]);
    PyImport_FrozenModules = table;
    _PyImport_FrozenBootstrap = boot;
}

static void check(PyStatus status, const char *what)
{
    if (!PyStatus_Exception(status))
        return;
    if (PyStatus_IsExit(status))
        _exit(status.exitcode);
    fail("cannot start the embedded Python interpreter (%s): %s%s%s", what,
         status.func ? status.func : "", status.func ? ": " : "", status.err_msg ? status.err_msg : "?");
}

int main(int argc, char **argv)
{
    load_payload();

    /* The interpreter as `python -I -S` runs it: no PYTHON* variable, no user site, no
     * site, no current directory on sys.path; UTF-8 whatever the locale (what CPython picks
     * in the C locale libcni gives plugins anyway). */
    PyPreConfig pre;
    PyPreConfig_InitPythonConfig(&pre);
    pre.isolated = 1;
    pre.use_environment = 0;
    pre.utf8_mode = 1;
    check(Py_PreInitialize(&pre), "pre-initialization");

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.isolated = 1;
    config.use_environment = 0;
    config.user_site_directory = 0;
    config.site_import = 0;
    config.safe_path = 1;
    config.write_bytecode = 0;
    config.parse_argv = 0;           /* argv is the plugin's (`dhcp daemon ...`), not Python options */
    config.pathconfig_warnings = 0;
    config.install_signal_handlers = 1;  /* as python3: SIGPIPE ignored, SIGINT -> KeyboardInterrupt */
    /* No search path: every module comes from the frozen table (or is built in). `home`
     * set skips getpath's search for a stdlib, pyvenv.cfg and ._pth files next to us. */
    config.module_search_paths_set = 1;
    check(PyConfig_SetString(&config, &config.home, L"/nonexistent/cni-py-frozen"), "home");
    check(PyConfig_SetBytesString(&config, &config.program_name, argc > 0 ? argv[0] : "cni-py"), "program name");
    check(PyConfig_SetBytesString(&config, &config.executable, argc > 0 ? argv[0] : "cni-py"), "executable");
    check(PyConfig_SetBytesArgv(&config, argc, argv), "argv");
    check(Py_InitializeFromConfig(&config), "initialization");
    PyConfig_Clear(&config);

    /* __cnipy_main__ loads the plugin (a failure there is a code-999 document too, written
     * by that module) and runs it; the plugin exits by itself (skel: os._exit after the
     * answer), the dhcp daemon returns. */
    PyObject *m = PyImport_ImportModule("__cnipy_main__");
    if (m == NULL) {
        PyErr_Print();  /* SystemExit: exits with its code here */
        return 1;
    }
    Py_DECREF(m);
    return Py_FinalizeEx() < 0 ? 120 : 0;
}
