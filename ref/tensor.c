// tensor.c: allocation and shape helpers for the tiny tensor.
#include "tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int shape_numel(size_t *numel, int ndim, const size_t *shape) {
    size_t n = 1;
    int i;
    if (ndim < 0 || ndim > MV_MAXDIM) return mv_fail("tensor rank %d is outside 0..%d", ndim, MV_MAXDIM);
    for (i = 0; i < ndim; i++)
        if (mv_mul_size(&n, n, shape[i])) return MV_ERR;
    *numel = n;
    return MV_OK;
}

int tensor_alloc(Tensor *t, int ndim, const size_t *shape) {
    size_t n = 0, bytes;
    int i;
    memset(t, 0, sizeof *t);
    if (shape_numel(&n, ndim, shape)) return MV_ERR;
    if (mv_mul_size(&bytes, n, sizeof(real))) return MV_ERR;
    t->data = (real *)mv_calloc(n ? n : 1, sizeof(real), "tensor");
    if (!t->data) return MV_ERR;
    t->ndim = ndim;
    for (i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    t->owned = 1;
    return MV_OK;
}

int tensor_alloc_v(Tensor *t, int ndim, ...) {
    size_t shape[MV_MAXDIM];
    va_list ap;
    int i;
    if (ndim < 0 || ndim > MV_MAXDIM) return mv_fail("tensor rank %d is outside 0..%d", ndim, MV_MAXDIM);
    va_start(ap, ndim);
    for (i = 0; i < ndim; i++) shape[i] = va_arg(ap, size_t);
    va_end(ap);
    return tensor_alloc(t, ndim, shape);
}

void tensor_free(Tensor *t) {
    if (t->owned) free(t->data);
    memset(t, 0, sizeof *t);
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
    int i;
    if (a->ndim != b->ndim) return 0;
    for (i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *shape_str(char *buf, size_t cap, int ndim, const size_t *shape) {
    size_t len = 0;
    int i;
    if (cap == 0) return buf;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, cap - len, "(");
    for (i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %llu" : "%llu", (unsigned long long)shape[i]); // not long: 32 bits on Windows
    if (len < cap) snprintf(buf + len, cap - len, ")");
    return buf;
}

int tensor_expect_shape(const Tensor *t, const char *what, int ndim, ...) {
    size_t want[MV_MAXDIM];
    char a[128], b[128];
    va_list ap;
    int i, ok = (t->ndim == ndim);
    if (ndim < 0 || ndim > MV_MAXDIM) return mv_fail("%s: rank %d is outside 0..%d", what, ndim, MV_MAXDIM);
    va_start(ap, ndim);
    for (i = 0; i < ndim; i++) want[i] = va_arg(ap, size_t);
    va_end(ap);
    for (i = 0; ok && i < ndim; i++) ok = (t->shape[i] == want[i]);
    if (ok) return MV_OK;
    return mv_fail("%s has shape %s, expected %s", what, shape_str(a, sizeof a, t->ndim, t->shape),
                   shape_str(b, sizeof b, ndim, want));
}
