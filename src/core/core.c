/*
 * core.c — error state, logging, aligned memory, file mapping, timing.
 */
#define _GNU_SOURCE
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ status ---- */

const char *opc_status_str(opc_status st) {
    switch (st) {
    case OPC_OK: return "OK";
    case OPC_ERR_IO: return "IO";
    case OPC_ERR_CORRUPT: return "CORRUPT";
    case OPC_ERR_NOMEM: return "NOMEM";
    case OPC_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case OPC_ERR_INVALID_ARG: return "INVALID_ARG";
    case OPC_ERR_NOT_FOUND: return "NOT_FOUND";
    case OPC_ERR_CUDA: return "CUDA";
    case OPC_ERR_INTERRUPTED: return "INTERRUPTED";
    case OPC_ERR_INTERNAL: return "INTERNAL";
    }
    return "UNKNOWN";
}

const char *opc_version(void) { return OPC_VERSION_STRING; }

static _Thread_local char g_err[1024];

opc_status opc_error(opc_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return st;
}

opc_status opc_error_wrap(opc_status st, const char *fmt, ...) {
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0) return st;
    size_t plen = strlen(prefix);
    size_t olen = strnlen(g_err, sizeof g_err - 1);
    if (plen > sizeof g_err - 1) plen = sizeof g_err - 1;
    if (plen + olen > sizeof g_err - 1) olen = sizeof g_err - 1 - plen;
    /* shift the old message right, then put the prefix in front */
    memmove(g_err + plen, g_err, olen);
    memcpy(g_err, prefix, plen);
    g_err[plen + olen] = '\0';
    return st;
}

void opc_error_clear(void) { g_err[0] = '\0'; }

const char *opc_last_error(void) { return g_err; }

/* ------------------------------------------------------------ logging --- */

static opc_log_fn g_log_fn;
static void *g_log_user;
static opc_log_level g_log_min = OPC_LOG_WARN;

void opc_set_log(opc_log_fn fn, void *user, opc_log_level min_level) {
    g_log_fn = fn;
    g_log_user = user;
    g_log_min = min_level;
}

void opc_log(opc_log_level level, const char *fmt, ...) {
    if (level < g_log_min) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, buf, g_log_user);
    } else {
        static const char *names[] = {"debug", "info", "warning", "error"};
        fprintf(stderr, "opacc1ty: %s: %s\n", names[level < 4 ? level : 3], buf);
    }
}

void opc_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "opacc1ty: internal error: assertion `%s` failed at %s:%d\n", expr, file,
            line);
    abort();
}

/* ------------------------------------------------------------ memory ---- */

void *opc_aligned_alloc(size_t size) {
    if (size == 0) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0) return NULL;
    return p;
}

void opc_aligned_free(void *p) { free(p); }

/* ------------------------------------------------------------ files ----- */

opc_status opc_map_open(const char *path, opc_map *m) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return opc_error(OPC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return opc_error(OPC_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return opc_error(OPC_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return opc_error(OPC_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (uint64_t)st.st_size;
    }
    close(fd); /* the mapping keeps the file alive */
    return OPC_OK;
}

void opc_map_close(opc_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, (size_t)m->size);
    m->data = NULL;
    m->size = 0;
}

opc_status opc_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return opc_error(OPC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return opc_error(OPC_ERR_IO, "%s: cannot seek", path);
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        return opc_error(OPC_ERR_IO, "%s: cannot tell size", path);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, n);
    }
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return opc_error(OPC_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = (size_t)n;
    return OPC_OK;
}

bool opc_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool opc_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------------ time ------ */

double opc_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
