// checkpoint.c: the tensor index of ck_open (ref/checkpoint.h) and the one reader behind it.
//
// Sections: common helpers; the index (names, sorting, validation); safetensors; Flax
// msgpack; torch zip archives and their restricted unpickler (ckpt_torch.c); reading.
#include "checkpoint.h"
#include "ckpt_internal.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Common helpers

char *ck_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)mv_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}

const char *ck_format_name(CkFormat fmt) {
    switch (fmt) {
    case CK_SAFETENSORS: return "safetensors";
    case CK_MSGPACK: return "Flax msgpack";
    case CK_TORCH_ZIP: return "torch zip";
    }
    return "?";
}

// Read n bytes at a 64-bit offset; the caller has checked off + n <= f->size.
int ck_pread(const CkFile *f, uint64_t off, void *dst, size_t n) {
    if (st_seek(f->fp, off) || fread(dst, 1, n, f->fp) != n)
        return mv_fail("%s: read of %lu bytes at offset %llu failed", f->path, (unsigned long)n, (unsigned long long)off);
    return MV_OK;
}

// The file's size: ftell where a long holds it, then confirmed (or found) by probing bytes,
// so it is right for files beyond 2 GB where long is 32 bits.
static int probe(FILE *fp, uint64_t off) { return st_seek(fp, off) == MV_OK && fgetc(fp) != EOF; }

#define CK_MAX_FILE ((uint64_t)1 << 46) // 64 TiB: beyond any checkpoint, and st_seek's steps stay few

static int file_size(FILE *fp, uint64_t *size) {
    uint64_t lo = 0, hi = 1; // the byte at lo-1 exists (or lo == 0), the byte at hi does not
    long t = -1;
    if (fseek(fp, 0, SEEK_END) == 0) t = ftell(fp);
    // (a directory may report any size: it is trusted only when its last byte reads)
    if (t >= 0 && (uint64_t)t <= CK_MAX_FILE && (t == 0 || probe(fp, (uint64_t)t - 1)) && !probe(fp, (uint64_t)t)) { *size = (uint64_t)t; return MV_OK; }
    while (probe(fp, hi)) {
        lo = hi + 1;
        if (hi >= CK_MAX_FILE) return MV_ERR;
        hi *= 2;
    }
    while (lo < hi) { // invariant: bytes below lo exist, byte hi does not
        uint64_t mid = lo + (hi - lo) / 2;
        if (probe(fp, mid)) lo = mid + 1;
        else hi = mid;
    }
    *size = lo;
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The index: entries are appended by the format readers, then sorted by name for ck_find and
// for the duplicate check.

CkEntry *ck_add_entry(CkFile *f, size_t *cap, const char *name) {
    CkEntry *e;
    if (f->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        CkEntry *ne = (CkEntry *)realloc(f->entries, ncap * sizeof *ne);
        if (!ne) { mv_fail_oom("%s: out of memory indexing tensors", f->path); return NULL; }
        f->entries = ne;
        *cap = ncap;
    }
    e = &f->entries[f->count];
    memset(e, 0, sizeof *e);
    e->name = ck_strdup(name);
    if (!e->name) return NULL;
    f->count++;
    return e;
}

// Element count and byte size of a shape, checked for overflow of size_t and uint64.
int ck_set_shape(const CkFile *f, CkEntry *e, int ndim, const uint64_t *shape) {
    uint64_t numel = 1, nbytes;
    int k;
    if (ndim > MV_MAXDIM) return mv_fail("%s: tensor '%s': rank %d exceeds %d", f->path, e->name, ndim, MV_MAXDIM);
    e->ndim = ndim;
    for (k = 0; k < ndim; k++) { // in 64 bits first, so the message is the same on every machine
        if (shape[k] != 0 && numel > UINT64_MAX / shape[k])
            return mv_fail("%s: tensor '%s': element count overflows", f->path, e->name);
        numel *= shape[k];
    }
    if (numel > UINT64_MAX / st_dtype_size(e->dtype)) return mv_fail("%s: tensor '%s': byte size overflows", f->path, e->name);
    for (k = 0; k < ndim; k++) {
        if (shape[k] > (uint64_t)(size_t)-1) return mv_fail("%s: tensor '%s': dimension %llu does not fit this machine's size_t", f->path, e->name, (unsigned long long)shape[k]);
        e->shape[k] = (size_t)shape[k];
    }
    nbytes = numel * st_dtype_size(e->dtype);
    if (nbytes > (uint64_t)(size_t)-1 || numel > (uint64_t)(size_t)-1)
        return mv_fail("%s: tensor '%s': %llu bytes do not fit this machine's size_t", f->path, e->name, (unsigned long long)nbytes);
    e->numel = (size_t)numel;
    return MV_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const CkEntry *const *)a)->name, (*(const CkEntry *const *)b)->name);
}

static int build_name_index(CkFile *f) {
    size_t i;
    f->by_name = (CkEntry **)mv_calloc(f->count + 1, sizeof(CkEntry *), "name index");
    if (!f->by_name) return MV_ERR;
    for (i = 0; i < f->count; i++) f->by_name[i] = &f->entries[i];
    qsort(f->by_name, f->count, sizeof(CkEntry *), cmp_name);
    for (i = 1; i < f->count; i++)
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
            return mv_fail("%s: two tensors are named '%s'", f->path, f->by_name[i]->name);
    return MV_OK;
}

const CkEntry *ck_find(const CkFile *f, const char *name) {
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// ---------------------------------------------------------------------------------------
// safetensors: st_open validates; its entries become absolute offsets.

static int open_safetensors(CkFile *f) {
    StFile st;
    size_t i, cap = 0;
    if (st_open(&st, f->path)) return MV_ERR;
    for (i = 0; i < st.count; i++) {
        const StEntry *s = &st.entries[i];
        CkEntry *e = ck_add_entry(f, &cap, s->name);
        if (!e) { st_close(&st); return MV_ERR; }
        e->dtype = s->dtype;
        e->ndim = s->ndim;
        memcpy(e->shape, s->shape, sizeof e->shape);
        e->numel = s->numel;
        e->offset = st.data_start + s->begin;
    }
    st_close(&st);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Flax msgpack (flax.serialization.to_bytes): one msgpack map, nested maps of parameters;
// each array leaf is ext type 1 whose payload is itself msgpack [shape, dtype name, C-order
// bytes] (ext 3: the same for a numpy scalar). Arrays above flax's MAX_CHUNK_SIZE are stored
// as a map {"__msgpack_chunked_array__": true, "shape": {"0": d0, ..}, "chunks": {"0": a0, ..}}
// of 1-D arrays that concatenate to the flattened array. msgpack's own lengths and numbers are
// big-endian; the array bytes are numpy's (little-endian on every machine that writes them).
// The parser streams the file through a buffer and seeks over array bytes.

#define MP_MAX_DEPTH 64
#define MP_MAX_KEY 4096

typedef struct {
    CkFile *f;
    size_t cap;          // of f->entries
    size_t segcap;       // of f->segs
    uint64_t pos;        // file offset of buf[0]
    unsigned char *buf;  // (MP_BUF)
    size_t len, at;      // bytes in buf, next byte
} MpReader;

#define MP_BUF (1u << 16)

static uint64_t mp_tell(const MpReader *r) { return r->pos + r->at; }

static int mp_fail_eof(MpReader *r) {
    return mv_fail("%s: truncated: the msgpack data ends at byte %llu inside a value", r->f->path, (unsigned long long)r->f->size);
}

// n bytes (n <= MP_BUF) into dst.
static int mp_get(MpReader *r, void *dst, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    if (n > r->f->size || mp_tell(r) > r->f->size - n) return mp_fail_eof(r);
    while (n > 0) {
        size_t k;
        if (r->at == r->len) { // refill at the current offset
            uint64_t left = r->f->size - mp_tell(r);
            r->pos += r->len;
            r->at = 0;
            r->len = left < MP_BUF ? (size_t)left : MP_BUF;
            if (ck_pread(r->f, r->pos, r->buf, r->len)) return MV_ERR;
        }
        k = r->len - r->at < n ? r->len - r->at : n;
        memcpy(d, r->buf + r->at, k);
        r->at += k;
        d += k;
        n -= k;
    }
    return MV_OK;
}

// Move forward n bytes without reading them (array data).
static int mp_skip(MpReader *r, uint64_t n) {
    if (n > r->f->size - mp_tell(r)) return mp_fail_eof(r);
    if (n <= r->len - r->at) { r->at += (size_t)n; return MV_OK; }
    r->pos = mp_tell(r) + n; // the next mp_get refills from here
    r->len = r->at = 0;
    return MV_OK;
}

static uint64_t be(const unsigned char *b, int n) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++) v = (v << 8) | b[i];
    return v;
}

static int mp_be(MpReader *r, int n, uint64_t *v) {
    unsigned char b[8];
    if (mp_get(r, b, (size_t)n)) return MV_ERR;
    *v = be(b, n);
    return MV_OK;
}

// One msgpack header: the kinds the reader distinguishes.
typedef enum { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_F32, MP_F64, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT } MpKind;
typedef struct {
    MpKind kind;
    uint64_t u;      // MP_UINT value, MP_BOOL 0/1, MP_STR/BIN/EXT byte length, MP_ARRAY/MAP item count
    int64_t i;       // MP_INT value (negative)
    unsigned char raw[8]; // MP_F32/F64 big-endian bits
    int ext_type;    // MP_EXT
} MpHead;

static int mp_head(MpReader *r, MpHead *h, const char *where) {
    unsigned char c;
    uint64_t v;
    memset(h, 0, sizeof *h);
    if (mp_get(r, &c, 1)) return MV_ERR;
    if (c <= 0x7f) { h->kind = MP_UINT; h->u = c; return MV_OK; }
    if (c >= 0xe0) { h->kind = MP_INT; h->i = (int64_t)(signed char)c; return MV_OK; }
    if (c >= 0x80 && c <= 0x8f) { h->kind = MP_MAP; h->u = c & 0x0f; return MV_OK; }
    if (c >= 0x90 && c <= 0x9f) { h->kind = MP_ARRAY; h->u = c & 0x0f; return MV_OK; }
    if (c >= 0xa0 && c <= 0xbf) { h->kind = MP_STR; h->u = c & 0x1f; return MV_OK; }
    switch (c) {
    case 0xc0: h->kind = MP_NIL; return MV_OK;
    case 0xc2: case 0xc3: h->kind = MP_BOOL; h->u = c == 0xc3; return MV_OK;
    case 0xc4: case 0xc5: case 0xc6: h->kind = MP_BIN; return mp_be(r, 1 << (c - 0xc4), &h->u);
    case 0xc7: case 0xc8: case 0xc9: {
        unsigned char t;
        h->kind = MP_EXT;
        if (mp_be(r, 1 << (c - 0xc7), &h->u) || mp_get(r, &t, 1)) return MV_ERR;
        h->ext_type = (signed char)t;
        return MV_OK;
    }
    case 0xca: h->kind = MP_F32; return mp_get(r, h->raw, 4);
    case 0xcb: h->kind = MP_F64; return mp_get(r, h->raw, 8);
    case 0xcc: case 0xcd: case 0xce: case 0xcf: h->kind = MP_UINT; return mp_be(r, 1 << (c - 0xcc), &h->u);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (c - 0xd0);
        if (mp_be(r, n, &v)) return MV_ERR;
        // sign-extend an n-byte two's complement number
        if (n < 8 && (v >> (8 * n - 1))) v |= ~(uint64_t)0 << (8 * n);
        if (v >> 63) { h->kind = MP_INT; h->i = (int64_t)(v - ((uint64_t)1 << 63)) - INT64_MAX - 1; }
        else { h->kind = MP_UINT; h->u = v; }
        return MV_OK;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
        unsigned char t;
        h->kind = MP_EXT;
        h->u = (uint64_t)1 << (c - 0xd4);
        if (mp_get(r, &t, 1)) return MV_ERR;
        h->ext_type = (signed char)t;
        return MV_OK;
    }
    case 0xd9: case 0xda: case 0xdb: h->kind = MP_STR; return mp_be(r, 1 << (c - 0xd9), &h->u);
    case 0xdc: case 0xdd: h->kind = MP_ARRAY; return mp_be(r, 2 << (c - 0xdc), &h->u);
    case 0xde: case 0xdf: h->kind = MP_MAP; return mp_be(r, 2 << (c - 0xde), &h->u);
    default:
        return mv_fail("%s: %s: byte 0x%02x at offset %llu is not a msgpack value", r->f->path, where, c,
                       (unsigned long long)(mp_tell(r) - 1));
    }
}

static const char *mp_kind_name(MpKind k) {
    static const char *names[] = {"nil", "bool", "integer", "integer", "float", "float", "string", "binary", "array", "map", "extension"};
    return names[k];
}

// A string (or binary, as older writers stored names) of at most `cap - 1` bytes, NUL-terminated.
static int mp_text(MpReader *r, const MpHead *h, char *dst, size_t cap, const char *where) {
    if (h->kind != MP_STR && h->kind != MP_BIN)
        return mv_fail("%s: %s: expected a string, found a msgpack %s", r->f->path, where, mp_kind_name(h->kind));
    if (h->u >= cap) return mv_fail("%s: %s: a string of %llu bytes is longer than %lu", r->f->path, where, (unsigned long long)h->u, (unsigned long)(cap - 1));
    if (mp_get(r, dst, (size_t)h->u)) return MV_ERR;
    dst[h->u] = '\0';
    if (strlen(dst) != (size_t)h->u) return mv_fail("%s: %s: a string holds a NUL byte", r->f->path, where);
    return MV_OK;
}

// numpy dtype names (dtype.name, as flax writes them) and the StDtype each one is.
static const struct { const char *name; StDtype dtype; } np_dtypes[] = {
    {"float32", ST_F32}, {"float64", ST_F64}, {"float16", ST_F16}, {"bfloat16", ST_BF16},
    {"int8", ST_I8}, {"int16", ST_I16}, {"int32", ST_I32}, {"int64", ST_I64},
    {"uint8", ST_U8}, {"uint16", ST_U16}, {"uint32", ST_U32}, {"uint64", ST_U64}, {"bool", ST_BOOL},
};

// The payload of ext 1 / ext 3 (`len` bytes from here): [shape, dtype name, bytes]. Sets the
// entry's dtype, shape and data offset, and leaves the reader after the payload.
static int mp_ndarray(MpReader *r, CkEntry *e, uint64_t len) {
    uint64_t start = mp_tell(r), shape[MV_MAXDIM];
    char dname[64];
    MpHead h;
    size_t k;
    int ndim;
    if (len > r->f->size - start)
        return mv_fail("%s: truncated: tensor '%s' (%llu bytes at offset %llu) runs past the end of the file", r->f->path, e->name,
                       (unsigned long long)len, (unsigned long long)start);
    if (mp_head(r, &h, e->name)) return MV_ERR;
    if (h.kind != MP_ARRAY || h.u != 3)
        return mv_fail("%s: tensor '%s': array payload is not [shape, dtype, bytes]", r->f->path, e->name);
    if (mp_head(r, &h, e->name)) return MV_ERR;
    if (h.kind != MP_ARRAY) return mv_fail("%s: tensor '%s': array shape is a msgpack %s, not an array", r->f->path, e->name, mp_kind_name(h.kind));
    if (h.u > MV_MAXDIM) return mv_fail("%s: tensor '%s': rank %llu exceeds %d", r->f->path, e->name, (unsigned long long)h.u, MV_MAXDIM);
    ndim = (int)h.u;
    for (k = 0; k < (size_t)ndim; k++) {
        MpHead d;
        if (mp_head(r, &d, e->name)) return MV_ERR;
        if (d.kind != MP_UINT) return mv_fail("%s: tensor '%s': shape[%lu] is not a non-negative integer", r->f->path, e->name, (unsigned long)k);
        shape[k] = d.u;
    }
    if (mp_head(r, &h, e->name) || mp_text(r, &h, dname, sizeof dname, e->name)) return MV_ERR;
    for (k = 0; k < sizeof np_dtypes / sizeof np_dtypes[0]; k++)
        if (strcmp(dname, np_dtypes[k].name) == 0) break;
    if (k == sizeof np_dtypes / sizeof np_dtypes[0])
        return mv_fail("%s: tensor '%s': dtype '%s' is not one mavref reads (float16/32/64, bfloat16, [u]int8..64, bool)",
                       r->f->path, e->name, dname);
    e->dtype = np_dtypes[k].dtype;
    if (ck_set_shape(r->f, e, ndim, shape)) return MV_ERR;
    if (mp_head(r, &h, e->name)) return MV_ERR;
    if (h.kind != MP_BIN && h.kind != MP_STR) return mv_fail("%s: tensor '%s': array data is a msgpack %s, not bytes", r->f->path, e->name, mp_kind_name(h.kind));
    if (h.u != (uint64_t)e->numel * st_dtype_size(e->dtype))
        return mv_fail("%s: tensor '%s': %llu data bytes, but dtype %s and its shape need %llu", r->f->path, e->name,
                       (unsigned long long)h.u, dname, (unsigned long long)e->numel * st_dtype_size(e->dtype));
    e->offset = mp_tell(r);
    if (mp_tell(r) - start > len || len - (mp_tell(r) - start) != h.u)
        return mv_fail("%s: tensor '%s': the array payload's length (%llu bytes) disagrees with its contents", r->f->path, e->name, (unsigned long long)len);
    return mp_skip(r, h.u);
}

// A leaf that is not an array: native numbers become 0-d tensors held in the entry.
static int mp_scalar(MpReader *r, const MpHead *h, const char *name) {
    CkEntry *e;
    uint64_t bits;
    int k;
    if (h->kind == MP_NIL) return MV_OK; // an empty leaf (None): no tensor
    if (h->kind != MP_BOOL && h->kind != MP_UINT && h->kind != MP_INT && h->kind != MP_F32 && h->kind != MP_F64)
        return mv_fail("%s: '%s' is a msgpack %s, not an array or a number", r->f->path, name, mp_kind_name(h->kind));
    e = ck_add_entry(r->f, &r->cap, name);
    if (!e) return MV_ERR;
    e->numel = 1;
    e->inline_value = 1;
    switch (h->kind) {
    case MP_BOOL: e->dtype = ST_BOOL; bits = h->u; break;
    case MP_UINT: e->dtype = h->u > (uint64_t)INT64_MAX ? ST_U64 : ST_I64; bits = h->u; break;
    case MP_INT: e->dtype = ST_I64; bits = (uint64_t)h->i; break;
    case MP_F32: e->dtype = ST_F32; bits = be(h->raw, 4); break;
    default: e->dtype = ST_F64; bits = be(h->raw, 8); break;
    }
    for (k = 0; k < 8; k++) e->value[k] = (unsigned char)(bits >> (8 * k)); // little-endian, like file data
    return MV_OK;
}

static int mp_node(MpReader *r, const char *name, int depth);

// Join "prefix/key" into a fresh string.
static char *join_name(const char *prefix, const char *key) {
    size_t a = strlen(prefix), b = strlen(key);
    char *s = (char *)mv_malloc(a + b + 2, "tensor name");
    if (!s) return NULL;
    memcpy(s, prefix, a);
    if (a) s[a++] = '/';
    memcpy(s + a, key, b + 1);
    return s;
}

// flax's chunked array; the reader stands after the marker key. Keys "shape" and "chunks" in
// either order; each holds a map keyed "0", "1", ... in order.
static int mp_chunked(MpReader *r, const char *name, uint64_t nkeys) {
    MpHead h;
    CkEntry *e;
    uint64_t shape[MV_MAXDIM], total = 0;
    size_t entry_index, i, first_seg = r->f->nsegs;
    int have_shape = 0, have_chunks = 0, ndim = 0;
    StDtype dt = ST_F32;
    char key[32];
    if (mp_head(r, &h, name)) return MV_ERR;
    if (h.kind != MP_BOOL || !h.u) return mv_fail("%s: '%s': __msgpack_chunked_array__ is not true", r->f->path, name);
    e = ck_add_entry(r->f, &r->cap, name);
    if (!e) return MV_ERR;
    entry_index = r->f->count - 1;
    for (i = 1; i < nkeys; i++) {
        uint64_t n, j;
        if (mp_head(r, &h, name) || mp_text(r, &h, key, sizeof key, name)) return MV_ERR;
        if (strcmp(key, "shape") && strcmp(key, "chunks"))
            return mv_fail("%s: '%s': a chunked array has an unexpected key '%s'", r->f->path, name, key);
        if ((!strcmp(key, "shape") && have_shape) || (!strcmp(key, "chunks") && have_chunks))
            return mv_fail("%s: '%s': chunked array key '%s' appears twice", r->f->path, name, key);
        if (mp_head(r, &h, name)) return MV_ERR;
        if (h.kind != MP_MAP) return mv_fail("%s: '%s': chunked array '%s' is not a map", r->f->path, name, key);
        n = h.u;
        if (!strcmp(key, "shape")) {
            have_shape = 1;
            if (n > MV_MAXDIM) return mv_fail("%s: '%s': rank %llu exceeds %d", r->f->path, name, (unsigned long long)n, MV_MAXDIM);
            ndim = (int)n;
        } else have_chunks = 1;
        for (j = 0; j < n; j++) {
            char idx[32], want[32];
            sprintf(want, "%llu", (unsigned long long)j);
            if (mp_head(r, &h, name) || mp_text(r, &h, idx, sizeof idx, name)) return MV_ERR;
            if (strcmp(idx, want)) return mv_fail("%s: '%s': chunked array '%s' has key '%s' where '%s' belongs", r->f->path, name, key, idx, want);
            if (mp_head(r, &h, name)) return MV_ERR;
            if (!strcmp(key, "shape")) {
                if (h.kind != MP_UINT) return mv_fail("%s: '%s': shape[%llu] is not a non-negative integer", r->f->path, name, (unsigned long long)j);
                shape[j] = h.u;
            } else {
                CkEntry piece;
                CkSegment *seg;
                if (h.kind != MP_EXT || h.ext_type != 1)
                    return mv_fail("%s: '%s': chunk %llu is not an array (ext type 1)", r->f->path, name, (unsigned long long)j);
                memset(&piece, 0, sizeof piece);
                piece.name = r->f->entries[entry_index].name;
                if (mp_ndarray(r, &piece, h.u)) return MV_ERR;
                if (piece.ndim != 1) return mv_fail("%s: '%s': chunk %llu is not 1-D", r->f->path, name, (unsigned long long)j);
                if (j > 0 && piece.dtype != dt) return mv_fail("%s: '%s': chunk %llu has dtype %s, chunk 0 has %s", r->f->path, name,
                                                             (unsigned long long)j, st_dtype_name(piece.dtype), st_dtype_name(dt));
                dt = piece.dtype;
                if (r->f->nsegs == r->segcap) {
                    size_t ncap = r->segcap ? r->segcap * 2 : 16;
                    CkSegment *ns = (CkSegment *)realloc(r->f->segs, ncap * sizeof *ns);
                    if (!ns) return mv_fail_oom("%s: out of memory indexing chunks", r->f->path);
                    r->f->segs = ns;
                    r->segcap = ncap;
                }
                seg = &r->f->segs[r->f->nsegs++];
                seg->offset = piece.offset;
                seg->numel = piece.numel;
                total += piece.numel; // no overflow: each piece is inside the file
            }
        }
    }
    e = &r->f->entries[entry_index];
    if (!have_shape || !have_chunks) return mv_fail("%s: '%s': a chunked array needs both 'shape' and 'chunks'", r->f->path, name);
    if (r->f->nsegs == first_seg) return mv_fail("%s: '%s': a chunked array with no chunks", r->f->path, name);
    e->dtype = dt;
    if (ck_set_shape(r->f, e, ndim, shape)) return MV_ERR;
    if (total != (uint64_t)e->numel)
        return mv_fail("%s: '%s': chunks hold %llu elements, the shape needs %llu", r->f->path, name, (unsigned long long)total, (unsigned long long)e->numel);
    e->seg = first_seg;
    e->nseg = r->f->nsegs - first_seg;
    e->offset = r->f->segs[first_seg].offset;
    return MV_OK;
}

// A map or array whose children are named prefix/key.
static int mp_container(MpReader *r, const MpHead *h, const char *name, int depth) {
    uint64_t i;
    char *key = (char *)mv_malloc(MP_MAX_KEY, "msgpack key");
    int rc = MV_ERR;
    if (!key) return MV_ERR;
    if (depth >= MP_MAX_DEPTH) { mv_fail("%s: '%s': nested deeper than %d levels", r->f->path, name, MP_MAX_DEPTH); goto done; }
    for (i = 0; i < h->u; i++) {
        char *child;
        int crc;
        if (h->kind == MP_MAP) {
            MpHead kh;
            if (mp_head(r, &kh, name)) goto done;
            if (kh.kind == MP_UINT) sprintf(key, "%llu", (unsigned long long)kh.u);
            else if (mp_text(r, &kh, key, MP_MAX_KEY, name[0] ? name : "top-level map")) goto done;
            if (i == 0 && !strcmp(key, "__msgpack_chunked_array__")) { rc = mp_chunked(r, name, h->u); goto done; }
            if (!strcmp(key, "__msgpack_chunked_array__")) { mv_fail("%s: '%s': __msgpack_chunked_array__ is not its map's first key", r->f->path, name); goto done; }
            if (!key[0] || strchr(key, '/')) { mv_fail("%s: '%s': key '%s' is empty or holds '/', the name separator", r->f->path, name, key); goto done; }
        } else sprintf(key, "%llu", (unsigned long long)i);
        child = join_name(name, key);
        if (!child) goto done;
        crc = mp_node(r, child, depth + 1);
        free(child);
        if (crc) goto done;
    }
    rc = MV_OK;
done:
    free(key);
    return rc;
}

static int mp_node(MpReader *r, const char *name, int depth) {
    MpHead h;
    CkEntry *e;
    if (mp_head(r, &h, name)) return MV_ERR;
    if (h.kind == MP_MAP || h.kind == MP_ARRAY) return mp_container(r, &h, name, depth);
    if (h.kind != MP_EXT) return mp_scalar(r, &h, name);
    if (h.ext_type == 2) return mv_fail("%s: '%s' is a complex number (msgpack ext 2); mavref reads real tensors", r->f->path, name);
    if (h.ext_type != 1 && h.ext_type != 3)
        return mv_fail("%s: '%s': msgpack extension type %d is not one flax writes (1 array, 3 scalar)", r->f->path, name, h.ext_type);
    e = ck_add_entry(r->f, &r->cap, name);
    if (!e) return MV_ERR;
    if (mp_ndarray(r, e, h.u)) return MV_ERR;
    if (h.ext_type == 3 && e->ndim != 0) return mv_fail("%s: '%s': a numpy scalar (ext 3) of rank %d", r->f->path, name, e->ndim);
    return MV_OK;
}

static int open_msgpack(CkFile *f) {
    MpReader r;
    MpHead h;
    int rc;
    memset(&r, 0, sizeof r);
    r.f = f;
    r.buf = (unsigned char *)mv_malloc(MP_BUF, "msgpack buffer");
    if (!r.buf) return MV_ERR;
    rc = mp_head(&r, &h, "top level");
    if (rc == MV_OK && h.kind != MP_MAP) rc = mv_fail("%s: not a Flax msgpack file: the top level is a msgpack %s, not a map", f->path, mp_kind_name(h.kind));
    if (rc == MV_OK) rc = mp_container(&r, &h, "", 0);
    if (rc == MV_OK && mp_tell(&r) != f->size)
        rc = mv_fail("%s: %llu bytes follow the msgpack map (a second object or garbage)", f->path, (unsigned long long)(f->size - mp_tell(&r)));
    free(r.buf);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Opening: sniff the first bytes.

int ck_open(CkFile *f, const char *path) {
    unsigned char head[16];
    size_t n;
    int rc;
    memset(f, 0, sizeof *f);
    f->path = ck_strdup(path);
    if (!f->path) return MV_ERR;
    f->fp = fopen(path, "rb");
    if (!f->fp) { mv_fail("%s: cannot open for reading", path); ck_close(f); return MV_ERR; }
    if (file_size(f->fp, &f->size)) { mv_fail("%s: cannot determine the file's size", path); ck_close(f); return MV_ERR; }
    if (f->size == 0) { mv_fail("%s: empty, or not a regular file", path); ck_close(f); return MV_ERR; }
    n = f->size < sizeof head ? (size_t)f->size : sizeof head;
    if (ck_pread(f, 0, head, n)) { ck_close(f); return MV_ERR; }
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) {
        f->format = CK_TORCH_ZIP;
        rc = ck_open_torch_zip(f);
    } else if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
        rc = mv_fail("%s: a bare pickle (protocol %d): the legacy torch.save format (before PyTorch 1.6) or a pickled object, "
                     "which mavref does not read; re-save it with torch.save (the zip format) or as safetensors", path, head[1]);
    } else if (n >= 9 && head[8] == '{' && !head[5] && !head[6] && !head[7]) {
        f->format = CK_SAFETENSORS;
        rc = open_safetensors(f);
    } else if (n >= 1 && ((head[0] & 0xf0) == 0x80 || head[0] == 0xde || head[0] == 0xdf)) {
        f->format = CK_MSGPACK;
        rc = open_msgpack(f);
    } else if (n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) {
        rc = mv_fail("%s: a numpy .npy file; mavref reads safetensors, Flax msgpack and torch.save zip files", path);
    } else {
        rc = mv_fail("%s: not a checkpoint mavref reads (safetensors, Flax msgpack, torch.save zip): unrecognised first bytes", path);
    }
    if (rc == MV_OK) rc = build_name_index(f);
    if (rc != MV_OK) { ck_close(f); return MV_ERR; }
    return MV_OK;
}

void ck_close(CkFile *f) {
    size_t i;
    if (f->fp) fclose(f->fp);
    for (i = 0; i < f->count; i++) free(f->entries[i].name);
    free(f->entries);
    free(f->segs);
    free(f->by_name);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// ---------------------------------------------------------------------------------------
// Reading: every format ends as runs of little-endian (or byte-swapped) elements in the file.


// The value at b as a double, or an error when the destination cannot hold it exactly:
// integers need at most `mant` significant bits (24 for float, 53 for double).
static int decode_checked(const CkFile *f, const CkEntry *e, const unsigned char *b, size_t idx, int mant, double *out) {
    uint64_t mag = 0;
    int neg = 0, bits = 0;
    switch (e->dtype) {
    case ST_F32: case ST_F64: case ST_F16: case ST_BF16: *out = st_decode(b, e->dtype); return MV_OK;
    case ST_I64: { uint64_t u = 0; int k; for (k = 7; k >= 0; k--) u = (u << 8) | b[k];
                   neg = (u >> 63) != 0; mag = neg ? ~u + 1 : u; break; }
    case ST_U64: { uint64_t u = 0; int k; for (k = 7; k >= 0; k--) u = (u << 8) | b[k]; mag = u; break; }
    default: *out = st_decode(b, e->dtype); return MV_OK; // at most 32 bits: exact in double, checked below for float
    }
    {
        uint64_t m = mag;
        int tz = 0;
        while (m && !(m & 1)) { m >>= 1; tz++; } // significant bits: from the lowest set bit ...
        while (m) { m >>= 1; bits++; }           // ... to the highest
        if (bits > mant)
            return mv_fail("%s: tensor '%s': %s value %s%llu at element %lu is not exact in %s", f->path, e->name, st_dtype_name(e->dtype),
                           neg ? "-" : "", (unsigned long long)mag, (unsigned long)idx, mant == 24 ? "float32" : "float64");
    }
    *out = neg ? -(double)mag : (double)mag;
    return MV_OK;
}

static int emit(const CkFile *f, const CkEntry *e, const unsigned char *b, size_t idx, CkSink s) {
    unsigned char sw[8];
    size_t esz = st_dtype_size(e->dtype), k;
    int mant = s.d ? 53 : (int)(sizeof(real) == 4 ? 24 : 53);
    double v = 0.0;
    if (e->big_endian) {
        for (k = 0; k < esz; k++) sw[k] = b[esz - 1 - k];
        b = sw;
    }
    if (s.b) { // raw: the little-endian bytes as they are
        memcpy(s.b + idx * esz, b, esz);
        return MV_OK;
    }
    if (decode_checked(f, e, b, idx, mant, &v)) return MV_ERR;
    if (s.r && e->dtype != ST_F32 && e->dtype != ST_F64 && e->dtype != ST_F16 && e->dtype != ST_BF16 && (double)(real)v != v)
        return mv_fail("%s: tensor '%s': %s value %.17g at element %lu is not exact in " REAL_NAME, f->path, e->name,
                       st_dtype_name(e->dtype), v, (unsigned long)idx);
    if (s.r) s.r[idx] = (real)v;
    if (s.d) s.d[idx] = v;
    return MV_OK;
}

// n elements stored contiguously from `off`, to elements first.. of the sink.
static int read_run(const CkFile *f, const CkEntry *e, uint64_t off, size_t n, size_t first, CkSink s) {
    unsigned char buf[1 << 16];
    size_t esz = st_dtype_size(e->dtype), per = sizeof buf / esz, done = 0;
    if (st_seek(f->fp, off)) return mv_fail("%s: tensor '%s': seek failed", f->path, e->name);
    while (done < n) {
        size_t k = n - done < per ? n - done : per, j;
        if (fread(buf, esz, k, f->fp) != k) return mv_fail("%s: tensor '%s': read failed (file truncated?)", f->path, e->name);
        if (s.b && !e->big_endian) {
            memcpy(s.b + (first + done) * esz, buf, k * esz);
        } else if (!e->big_endian && (e->dtype == ST_F32 || e->dtype == ST_F16 || e->dtype == ST_BF16 || e->dtype == ST_F64)) {
            // floats need no range check: decode the block in one loop (the 4.4 GB UNet is all F32)
            real *r = s.r ? s.r + first + done : NULL;
            double *d = s.d ? s.d + first + done : NULL;
            for (j = 0; j < k; j++) {
                double v = st_decode(buf + j * esz, e->dtype);
                if (r) r[j] = (real)v;
                if (d) d[j] = v;
            }
        } else {
            for (j = 0; j < k; j++)
                if (emit(f, e, buf + j * esz, first + done + j, s)) return MV_ERR;
        }
        done += k;
    }
    return MV_OK;
}

static int read_entry(const CkFile *f, const CkEntry *e, CkSink s) {
    size_t i;
    if (e->inline_value) return emit(f, e, e->value, 0, s);
    if (e->nseg) { // a chunked array: its pieces in order
        size_t at = 0;
        for (i = 0; i < e->nseg; i++) {
            const CkSegment *g = &f->segs[e->seg + i];
            if (read_run(f, e, g->offset, g->numel, at, s)) return MV_ERR;
            at += g->numel;
        }
        return MV_OK;
    }
    if (e->strided) return ck_read_strided(f, e, s);
    return read_run(f, e, e->offset, e->numel, 0, s);
}

int ck_read_into(const CkFile *f, const CkEntry *e, real *dst) {
    CkSink s = {NULL, NULL, NULL};
    s.r = dst;
    return read_entry(f, e, s);
}

int ck_read_f64(const CkFile *f, const CkEntry *e, double *dst) {
    CkSink s = {NULL, NULL, NULL};
    s.d = dst;
    return read_entry(f, e, s);
}

int ck_read_raw(const CkFile *f, const CkEntry *e, unsigned char *dst) {
    CkSink s = {NULL, NULL, NULL};
    s.b = dst;
    return read_entry(f, e, s);
}

// Strided (torch view) elements: the storage span the view touches is read once into memory
// (bounded: ck_open has checked it lies inside the storage), then gathered in C order.
int ck_emit(const CkFile *f, const CkEntry *e, const unsigned char *b, size_t idx, CkSink s) { return emit(f, e, b, idx, s); }
