// error.c: one message buffer for the last error, and checked allocation.
//
// The message is per process, not per thread: worker threads never report errors (they run
// only arithmetic whose inputs were validated before the threads started).
#include "mavref.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_msg[2048];
static int g_oom; // the last error is a failed allocation (mv_fail_oom), not a bad input

int mv_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_oom = 0;
    return MV_ERR;
}

int mv_fail_oom(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_oom = 1;
    return MV_ERR;
}

int mv_error_is_oom(void) { return g_oom; }

int mv_fail_prefix(const char *fmt, ...) {
    char prefix[1024], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    // "<prefix>: <old>", cut to fit the buffer.
    g_msg[0] = '\0';
    strncat(g_msg, prefix, sizeof g_msg - 1);
    strncat(g_msg, ": ", sizeof g_msg - 1 - strlen(g_msg));
    strncat(g_msg, old, sizeof g_msg - 1 - strlen(g_msg));
    return MV_ERR;
}

const char *mv_error(void) { return g_msg; }

void mv_clear_error(void) {
    g_msg[0] = '\0';
    g_oom = 0;
}

int mv_mul_size(size_t *out, size_t a, size_t b) {
    if (a != 0 && b > (size_t)-1 / a)
        return mv_fail("size overflow: %llu x %llu does not fit in size_t (%u bits)", // long is 32 bits on Windows
                       (unsigned long long)a, (unsigned long long)b, (unsigned)(sizeof(size_t) * 8));
    *out = a * b;
    return MV_OK;
}

int mv_add_size(size_t *out, size_t a, size_t b) {
    if (b > (size_t)-1 - a)
        return mv_fail("size overflow: %llu + %llu does not fit in size_t",
                       (unsigned long long)a, (unsigned long long)b);
    *out = a + b;
    return MV_OK;
}

void *mv_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) mv_fail_oom("out of memory allocating %llu bytes for %s", (unsigned long long)bytes, what);
    return p;
}

void *mv_calloc(size_t count, size_t size, const char *what) {
    size_t bytes = 0;
    void *p;
    if (mv_mul_size(&bytes, count, size)) { mv_fail_prefix("allocating %s", what); return NULL; }
    p = calloc(bytes ? count : 1, bytes ? size : 1);
    if (!p) mv_fail_oom("out of memory allocating %llu bytes for %s", (unsigned long long)bytes, what);
    return p;
}

int mv_parse_int_list(const char *s, int *out, int max) {
    int n = 0;
    char *end;
    if (!s || !*s) return -1;
    while (*s) {
        long v;
        if (n == max) return -1;
        v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 100000) return -1;
        out[n++] = (int)v;
        if (*end == ',' && end[1]) end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}
