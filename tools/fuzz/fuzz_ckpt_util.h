// fuzz_ckpt_util.h: what the checkpoint harnesses (fuzz_msgpack, fuzz_torchzip, fuzz_pickle)
// check after ck_open: a failure names the file; an opened index is consistent (names unique
// and found by ck_find, every stored byte inside the file), and every tensor reads both ways
// or fails with a message.
#ifndef MAVREF_FUZZ_CKPT_UTIL_H
#define MAVREF_FUZZ_CKPT_UTIL_H

#include "fuzz_util.h"
#include "../../ref/checkpoint.h"

static inline void fuzz_check_checkpoint(const char *path, size_t size) {
    CkFile f;
    size_t i;
    mv_clear_error();
    if (ck_open(&f, path) != MV_OK) {
        fuzz_expect_message("ck_open");
        if (!strstr(mv_error(), path)) abort();
        return;
    }
    for (i = 0; i < f.count; i++) {
        const CkEntry *e = &f.entries[i];
        size_t esz = st_dtype_size(e->dtype);
        double *d;
        real *r;
        unsigned char *b;
        int d_ok, b_ok;
        if (ck_find(&f, e->name) != e) abort();
        if (!e->inline_value && !e->strided && !e->nseg && e->numel && (e->offset > size || (uint64_t)e->numel * esz > size - e->offset)) abort();
        if (e->numel > size + 1) abort(); // every element is backed by the file's bytes
        d = (double *)malloc((e->numel + 1) * sizeof *d);
        r = (real *)malloc((e->numel + 1) * sizeof *r);
        b = (unsigned char *)malloc((e->numel + 1) * esz);
        if (!d || !r || !b) abort();
        mv_clear_error();
        if (!(d_ok = ck_read_f64(&f, e, d) == MV_OK)) fuzz_expect_message("ck_read_f64");
        mv_clear_error();
        if (ck_read_into(&f, e, r) != MV_OK) fuzz_expect_message("ck_read_into");
        mv_clear_error();
        if (!(b_ok = ck_read_raw(&f, e, b) == MV_OK)) fuzz_expect_message("ck_read_raw");
        if (d_ok && b_ok) { // the raw little-endian bytes decode to the values read
            size_t k;
            for (k = 0; k < e->numel; k++) {
                double x = st_decode(b + k * esz, e->dtype);
                if (!(x == d[k] || (x != x && d[k] != d[k]))) abort();
            }
        }
        free(d);
        free(r);
        free(b);
    }
    ck_close(&f);
}

#endif
