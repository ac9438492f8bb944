// ckpt_internal.h: what the checkpoint readers (checkpoint.c, ckpt_torch.c) share; not an API.
#ifndef MAVREF_CKPT_INTERNAL_H
#define MAVREF_CKPT_INTERNAL_H

#include "checkpoint.h"

char *ck_strdup(const char *s);
// n bytes at a 64-bit file offset (the caller has checked the range against f->size).
int ck_pread(const CkFile *f, uint64_t off, void *dst, size_t n);
// Append an entry named `name` (copied) to f->entries, growing it; *cap is its capacity.
CkEntry *ck_add_entry(CkFile *f, size_t *cap, const char *name);
// Set ndim, shape and numel (e->dtype already set), checking numel * element size for overflow.
int ck_set_shape(const CkFile *f, CkEntry *e, int ndim, const uint64_t *shape);
// Where decoded elements go: reals, doubles, or (b) the raw elements as little-endian bytes.
typedef struct { real *r; double *d; unsigned char *b; } CkSink;
// Decode one stored element (honouring e->big_endian) into element idx of the sink.
int ck_emit(const CkFile *f, const CkEntry *e, const unsigned char *b, size_t idx, CkSink s);

// ckpt_torch.c
int ck_open_torch_zip(CkFile *f);
int ck_read_strided(const CkFile *f, const CkEntry *e, CkSink s);

#endif
