// ckpt_torch.c: torch.save archives (PyTorch >= 1.6): a zip of stored entries
//   PREFIX/data.pkl     the pickled object (a state dict: an OrderedDict of tensors)
//   PREFIX/data/KEY     the raw bytes of each storage, little-endian (PREFIX/byteorder says
//                       "big" when written on a big-endian host; absent before PyTorch 2.1)
//   PREFIX/version      the format version
// read by a restricted unpickler: it knows the few opcodes and globals a state dict needs,
// builds plain values (dicts, tuples, ints, strings, storages, tensors) and refuses every
// other global by name. Nothing in a pickle is ever run: a global is a name looked up in the
// table below, never imported or called.
#include "ckpt_internal.h"

#include <stdlib.h>
#include <string.h>

#define ZIP_MAX_CD (256u << 20)     // central directory bytes
#define PKL_MAX (64u << 20)         // data.pkl bytes
#define PKL_MAX_VALUES (1u << 22)   // objects one data.pkl may build
#define PKL_MAX_DEPTH 32            // nesting of dicts and lists holding tensors
#define VIEW_MAX_SPAN (256u << 20)  // bytes of storage a non-contiguous view may span

static uint32_t le16(const unsigned char *b) { return (uint32_t)b[0] | ((uint32_t)b[1] << 8); }
static uint32_t le32(const unsigned char *b) { return le16(b) | (le16(b + 2) << 16); }
static uint64_t le64(const unsigned char *b) { return (uint64_t)le32(b) | ((uint64_t)le32(b + 4) << 32); }

// ---------------------------------------------------------------------------------------
// Zip: the central directory (zip64 when counts or offsets overflow 32 bits), then each
// member's local header for where its bytes start.

typedef struct {
    char *name;
    uint64_t local;        // offset of the local header
    uint64_t size;         // stored (= uncompressed) size
    uint32_t crc;
    int method;
} ZipMember;

typedef struct {
    CkFile *f;
    ZipMember *m;          // (n) sorted by name
    size_t n;
    char prefix[1024];     // "archive/": what precedes data.pkl
} Zip;

static int cmp_member(const void *a, const void *b) { return strcmp(((const ZipMember *)a)->name, ((const ZipMember *)b)->name); }

static const ZipMember *zip_find(const Zip *z, const char *name) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->m[mid].name, name);
        if (c == 0) return &z->m[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void zip_free(Zip *z) {
    size_t i;
    for (i = 0; i < z->n; i++) free(z->m[i].name);
    free(z->m);
}

// The zip64 extra field (id 1) replaces, in this order, each of usize, csize, local offset
// that is 0xFFFFFFFF in the fixed fields.
static int zip64_extra(const CkFile *f, const unsigned char *x, size_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *local) {
    size_t at = 0;
    while (at + 4 <= xlen) {
        uint32_t id = le16(x + at), n = le16(x + at + 2);
        const unsigned char *p = x + at + 4;
        size_t used = 0;
        if (at + 4 + n > xlen) break;
        if (id == 1) {
            uint64_t *want[3];
            int k;
            want[0] = *usize == 0xFFFFFFFFu ? usize : NULL;
            want[1] = *csize == 0xFFFFFFFFu ? csize : NULL;
            want[2] = *local == 0xFFFFFFFFu ? local : NULL;
            for (k = 0; k < 3; k++) {
                if (!want[k]) continue;
                if (used + 8 > n) return mv_fail("%s: zip64 extra field too short", f->path);
                *want[k] = le64(p + used);
                used += 8;
            }
            return MV_OK;
        }
        at += 4 + n;
    }
    if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *local == 0xFFFFFFFFu)
        return mv_fail("%s: a zip member's size or offset needs a zip64 extra field, which is missing", f->path);
    return MV_OK;
}

static int zip_read_directory(Zip *z) {
    CkFile *f = z->f;
    unsigned char tail[22 + 65535 + 20], *cd = NULL;
    size_t tn = f->size < sizeof tail ? (size_t)f->size : sizeof tail, p, at, i;
    uint64_t tail_start = f->size - tn, count, cd_size, cd_off, eocd;
    int found = 0, rc = MV_ERR;
    if (ck_pread(f, tail_start, tail, tn)) return MV_ERR;
    // End of central directory: the last "PK\5\6" whose comment runs exactly to the file's end.
    for (p = tn >= 22 ? tn - 22 + 1 : 0; p-- > 0;)
        if (tail[p] == 'P' && tail[p + 1] == 'K' && tail[p + 2] == 5 && tail[p + 3] == 6 && p + 22 + le16(tail + p + 20) == tn) { found = 1; break; }
    if (!found) return mv_fail("%s: truncated or not a zip file: no end-of-central-directory record", f->path);
    eocd = tail_start + p;
    if (le16(tail + p + 4) || le16(tail + p + 6)) return mv_fail("%s: a multi-disk zip archive", f->path);
    count = le16(tail + p + 10);
    cd_size = le32(tail + p + 12);
    cd_off = le32(tail + p + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) { // zip64
        unsigned char rec[56];
        uint64_t z64;
        if (p < 20 || memcmp(tail + p - 20, "PK\6\7", 4)) return mv_fail("%s: zip64 sizes without a zip64 locator", f->path);
        z64 = le64(tail + p - 20 + 8);
        if (z64 > f->size || f->size - z64 < sizeof rec || z64 + sizeof rec > eocd) return mv_fail("%s: the zip64 end record's offset %llu lies outside the file", f->path, (unsigned long long)z64);
        if (ck_pread(f, z64, rec, sizeof rec)) return MV_ERR;
        if (memcmp(rec, "PK\6\6", 4)) return mv_fail("%s: no zip64 end record at offset %llu", f->path, (unsigned long long)z64);
        count = le64(rec + 32);
        cd_size = le64(rec + 40);
        cd_off = le64(rec + 48);
        eocd = z64;
    }
    if (cd_off > eocd || cd_size > eocd - cd_off)
        return mv_fail("%s: the zip central directory (%llu bytes at %llu) lies outside the file", f->path, (unsigned long long)cd_size, (unsigned long long)cd_off);
    if (cd_size > ZIP_MAX_CD) return mv_fail("%s: a zip central directory of %llu bytes (more than %u)", f->path, (unsigned long long)cd_size, ZIP_MAX_CD);
    if (count > cd_size / 46) return mv_fail("%s: the zip directory claims %llu members in %llu bytes", f->path, (unsigned long long)count, (unsigned long long)cd_size);
    cd = (unsigned char *)mv_malloc((size_t)cd_size, "zip central directory");
    z->m = (ZipMember *)mv_calloc((size_t)count + 1, sizeof(ZipMember), "zip members");
    if (!cd || !z->m || ck_pread(f, cd_off, cd, (size_t)cd_size)) goto done;
    for (i = 0, at = 0; i < count; i++) {
        ZipMember *m = &z->m[i];
        uint32_t nlen, xlen, clen, flags;
        uint64_t usize, csize, local;
        if (at + 46 > cd_size || memcmp(cd + at, "PK\1\2", 4)) { mv_fail("%s: zip central directory entry %lu is damaged", f->path, (unsigned long)i); goto done; }
        flags = le16(cd + at + 8);
        m->method = (int)le16(cd + at + 10);
        m->crc = le32(cd + at + 16);
        csize = le32(cd + at + 20);
        usize = le32(cd + at + 24);
        nlen = le16(cd + at + 28);
        xlen = le16(cd + at + 30);
        clen = le16(cd + at + 32);
        local = le32(cd + at + 42);
        if (at + 46 + nlen + xlen + clen > cd_size) { mv_fail("%s: zip central directory entry %lu runs past the directory", f->path, (unsigned long)i); goto done; }
        m->name = (char *)mv_malloc(nlen + 1, "zip member name");
        if (!m->name) goto done;
        memcpy(m->name, cd + at + 46, nlen);
        m->name[nlen] = '\0';
        z->n++;
        if (strlen(m->name) != nlen) { mv_fail("%s: a zip member name holds a NUL byte", f->path); goto done; }
        if (zip64_extra(f, cd + at + 46 + nlen, xlen, &usize, &csize, &local)) goto done;
        if (flags & 1) { mv_fail("%s: zip member '%s' is encrypted", f->path, m->name); goto done; }
        if (m->method == 0 && csize != usize) { mv_fail("%s: stored zip member '%s' has sizes %llu and %llu", f->path, m->name, (unsigned long long)csize, (unsigned long long)usize); goto done; }
        m->size = csize;
        m->local = local;
        at += 46 + nlen + xlen + clen;
    }
    qsort(z->m, z->n, sizeof *z->m, cmp_member);
    for (i = 1; i < z->n; i++)
        if (!strcmp(z->m[i].name, z->m[i - 1].name)) { mv_fail("%s: zip member '%s' appears twice", f->path, z->m[i].name); goto done; }
    rc = MV_OK;
done:
    free(cd);
    return rc;
}

// Where a member's bytes start (after its local header), checked against the file.
static int zip_data(const Zip *z, const ZipMember *m, uint64_t *off) {
    unsigned char h[30];
    const CkFile *f = z->f;
    if (m->method != 0)
        return mv_fail("%s: zip member '%s' is compressed (method %d); torch.save stores its members uncompressed, mavref reads only those",
                       f->path, m->name, m->method);
    if (m->local > f->size || f->size - m->local < sizeof h) return mv_fail("%s: zip member '%s': local header offset %llu lies outside the file", f->path, m->name, (unsigned long long)m->local);
    if (ck_pread(f, m->local, h, sizeof h)) return MV_ERR;
    if (memcmp(h, "PK\3\4", 4)) return mv_fail("%s: zip member '%s': no local header at offset %llu", f->path, m->name, (unsigned long long)m->local);
    *off = m->local + 30 + le16(h + 26) + le16(h + 28);
    if (*off > f->size || m->size > f->size - *off)
        return mv_fail("%s: truncated: zip member '%s' (%llu bytes at %llu) runs past the end of the file", f->path, m->name, (unsigned long long)m->size, (unsigned long long)*off);
    return MV_OK;
}

uint32_t ck_crc32(const unsigned char *b, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        c ^= b[i];
        for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

// A whole (small) member into memory.
static int zip_slurp(const Zip *z, const ZipMember *m, size_t max, unsigned char **out) {
    uint64_t off;
    *out = NULL;
    if (zip_data(z, m, &off)) return MV_ERR;
    if (m->size > max) return mv_fail("%s: zip member '%s' has %llu bytes (mavref reads at most %lu)", z->f->path, m->name, (unsigned long long)m->size, (unsigned long)max);
    *out = (unsigned char *)mv_malloc((size_t)m->size + 1, m->name);
    if (!*out) return MV_ERR;
    if (ck_pread(z->f, off, *out, (size_t)m->size)) { free(*out); *out = NULL; return MV_ERR; }
    (*out)[m->size] = 0;
    if (ck_crc32(*out, (size_t)m->size) != m->crc) {
        free(*out);
        *out = NULL;
        return mv_fail("%s: zip member '%s' fails its CRC-32 check (corrupt file)", z->f->path, m->name);
    }
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The restricted unpickler. Values live in a pool freed at once; the memo and the stack
// hold pointers into it.

typedef enum { PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT, PK_GLOBAL, PK_STORAGE, PK_TENSOR } PkKind;

typedef struct {
    StDtype dtype;
    size_t storage;               // index in the storages
    int ndim;
    uint64_t shape[MV_MAXDIM], stride[MV_MAXDIM], offset; // in elements
} PkTensor;

typedef struct PkVal PkVal;
struct PkVal {
    PkKind kind;
    int64_t i;          // BOOL, INT; GLOBAL: index in pk_globals; STORAGE: index in the storages
    char *s;            // STR, NUL-terminated (len bytes)
    size_t len;
    PkVal **items;      // TUPLE, LIST: n items; DICT: n/2 pairs, key then value
    size_t n, cap;
    PkTensor *t;        // TENSOR
};

typedef enum { G_ODICT, G_REBUILD_V2, G_REBUILD_V1, G_PARAM, G_PARAM_STATE, G_STORAGE } GlobalKind;
static const struct { const char *module, *name; GlobalKind kind; StDtype dtype; } pk_globals[] = {
    {"collections", "OrderedDict", G_ODICT, ST_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, ST_F32},
    {"torch._utils", "_rebuild_tensor", G_REBUILD_V1, ST_F32},
    {"torch._utils", "_rebuild_parameter", G_PARAM, ST_F32},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, ST_F32},
    {"torch", "FloatStorage", G_STORAGE, ST_F32},
    {"torch", "DoubleStorage", G_STORAGE, ST_F64},
    {"torch", "HalfStorage", G_STORAGE, ST_F16},
    {"torch", "BFloat16Storage", G_STORAGE, ST_BF16},
    {"torch", "LongStorage", G_STORAGE, ST_I64},
    {"torch", "IntStorage", G_STORAGE, ST_I32},
    {"torch", "ShortStorage", G_STORAGE, ST_I16},
    {"torch", "CharStorage", G_STORAGE, ST_I8},
    {"torch", "ByteStorage", G_STORAGE, ST_U8},
    {"torch", "BoolStorage", G_STORAGE, ST_BOOL},
};
#define N_GLOBALS (sizeof pk_globals / sizeof pk_globals[0])

typedef struct { char *key; StDtype dtype; uint64_t numel, offset; } PkStorage;

typedef struct {
    Zip *z;
    const CkFile *f;
    const unsigned char *p, *end;  // data.pkl
    PkVal **pool; size_t npool, cappool;
    PkVal **stack; size_t nstack, capstack;
    size_t *marks; size_t nmarks, capmarks;
    PkVal **memo; size_t capmemo, nmemo; // nmemo: distinct indices stored (MEMOIZE's next index)
    PkStorage *st; size_t nst, capst;
} Unpickler;

// Grow an array of `size`-byte items to hold at least need+1.
static int grow(void **arr, size_t *cap, size_t need, size_t size) {
    size_t ncap;
    void *na;
    if (need < *cap) return MV_OK;
    ncap = *cap ? *cap : 16;
    while (ncap <= need) ncap *= 2;
    na = realloc(*arr, ncap * size);
    if (!na) return mv_fail_oom("out of memory unpickling");
    *arr = na;
    *cap = ncap;
    return MV_OK;
}

static PkVal *pk_new(Unpickler *u, PkKind kind) {
    PkVal *v;
    if (u->npool >= PKL_MAX_VALUES) { mv_fail("%s: data.pkl builds more than %u objects; not a state dict mavref reads", u->f->path, PKL_MAX_VALUES); return NULL; }
    if (grow((void **)&u->pool, &u->cappool, u->npool, sizeof *u->pool)) return NULL;
    v = (PkVal *)calloc(1, sizeof *v);
    if (!v) { mv_fail_oom("out of memory unpickling"); return NULL; }
    v->kind = kind;
    u->pool[u->npool++] = v;
    return v;
}

static void pk_free(Unpickler *u) {
    size_t i;
    for (i = 0; i < u->npool; i++) { free(u->pool[i]->s); free(u->pool[i]->items); free(u->pool[i]->t); free(u->pool[i]); }
    for (i = 0; i < u->nst; i++) free(u->st[i].key);
    free(u->pool); free(u->stack); free(u->marks); free(u->memo); free(u->st);
}

static int push(Unpickler *u, PkVal *v) {
    if (!v || grow((void **)&u->stack, &u->capstack, u->nstack, sizeof *u->stack)) return MV_ERR;
    u->stack[u->nstack++] = v;
    return MV_OK;
}

static PkVal *pop(Unpickler *u) {
    if (u->nstack == 0 || (u->nmarks && u->nstack == u->marks[u->nmarks - 1])) { mv_fail("%s: data.pkl pops an empty stack (corrupt pickle)", u->f->path); return NULL; }
    return u->stack[--u->nstack];
}

static PkVal *top(Unpickler *u) {
    if (u->nstack == 0 || (u->nmarks && u->nstack == u->marks[u->nmarks - 1])) { mv_fail("%s: data.pkl reads an empty stack (corrupt pickle)", u->f->path); return NULL; }
    return u->stack[u->nstack - 1];
}

static int append_item(PkVal *c, PkVal *v) {
    if (grow((void **)&c->items, &c->cap, c->n, sizeof *c->items)) return MV_ERR;
    c->items[c->n++] = v;
    return MV_OK;
}

// Take n bytes of the pickle.
static const unsigned char *take(Unpickler *u, uint64_t n) {
    const unsigned char *b = u->p;
    if (n > (uint64_t)(u->end - u->p)) { mv_fail("%s: truncated data.pkl: an opcode's argument runs past its end", u->f->path); return NULL; }
    u->p += n;
    return b;
}

static PkVal *new_str(Unpickler *u, const unsigned char *b, uint64_t n) {
    PkVal *v = pk_new(u, PK_STR);
    if (!v) return NULL;
    v->s = (char *)mv_malloc((size_t)n + 1, "pickle string");
    if (!v->s) return NULL;
    memcpy(v->s, b, (size_t)n);
    v->s[n] = '\0';
    v->len = (size_t)n;
    return v;
}

static const char *kind_name(PkKind k) {
    static const char *names[] = {"None", "bool", "int", "float", "string", "tuple", "list", "dict", "global", "storage", "tensor"};
    return names[k];
}

static int expect_int(Unpickler *u, const PkVal *v, const char *what, uint64_t *out) {
    if (v->kind != PK_INT || v->i < 0) return mv_fail("%s: data.pkl: %s is a %s, not a non-negative int", u->f->path, what, kind_name(v->kind));
    *out = (uint64_t)v->i;
    return MV_OK;
}

// ('storage', StorageType, key, location, numel): the storage's bytes are PREFIX/data/KEY.
static PkVal *persistent_load(Unpickler *u, PkVal *pid) {
    char name[1200];
    const ZipMember *m;
    PkStorage *s;
    PkVal *v;
    uint64_t numel = 0, off = 0;
    size_t i;
    StDtype dt;
    if (pid->kind != PK_TUPLE || pid->n != 5 || pid->items[0]->kind != PK_STR || strcmp(pid->items[0]->s, "storage")) {
        mv_fail("%s: data.pkl: a persistent id that is not ('storage', type, key, location, numel)", u->f->path);
        return NULL;
    }
    if (pid->items[1]->kind != PK_GLOBAL || pk_globals[pid->items[1]->i].kind != G_STORAGE) { mv_fail("%s: data.pkl: a storage whose type is not a storage class", u->f->path); return NULL; }
    if (pid->items[2]->kind != PK_STR || pid->items[2]->len == 0 || pid->items[2]->len > 64 || strchr(pid->items[2]->s, '/')) { mv_fail("%s: data.pkl: a storage key that is not a short string", u->f->path); return NULL; }
    if (expect_int(u, pid->items[4], "a storage's size", &numel)) return NULL;
    dt = pk_globals[pid->items[1]->i].dtype;
    for (i = 0; i < u->nst; i++)
        if (!strcmp(u->st[i].key, pid->items[2]->s)) break;
    if (i == u->nst) {
        snprintf(name, sizeof name, "%sdata/%s", u->z->prefix, pid->items[2]->s);
        m = zip_find(u->z, name);
        if (!m) { mv_fail("%s: data.pkl names storage '%s', but the archive has no member '%s'", u->f->path, pid->items[2]->s, name); return NULL; }
        if (zip_data(u->z, m, &off)) return NULL;
        if (numel > UINT64_MAX / st_dtype_size(dt) || numel * st_dtype_size(dt) != m->size) {
            mv_fail("%s: storage '%s' holds %llu bytes, but %llu elements of %s need %llu", u->f->path, name, (unsigned long long)m->size,
                    (unsigned long long)numel, st_dtype_name(dt), numel > UINT64_MAX / st_dtype_size(dt) ? 0ull : (unsigned long long)(numel * st_dtype_size(dt)));
            return NULL;
        }
        if (grow((void **)&u->st, &u->capst, u->nst, sizeof *u->st)) return NULL;
        s = &u->st[u->nst];
        s->key = ck_strdup(pid->items[2]->s);
        if (!s->key) return NULL;
        s->dtype = dt;
        s->numel = numel;
        s->offset = off;
        u->nst++;
    } else if (u->st[i].dtype != dt || u->st[i].numel != numel) {
        mv_fail("%s: data.pkl names storage '%s' twice with different types or sizes", u->f->path, pid->items[2]->s);
        return NULL;
    }
    v = pk_new(u, PK_STORAGE);
    if (v) v->i = (int64_t)i;
    return v;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata]):
// a view of the storage, checked to lie inside it.
static PkVal *rebuild_tensor(Unpickler *u, const PkVal *args, int v1) {
    PkVal *v;
    PkTensor *t;
    const PkStorage *s;
    uint64_t last = 0;
    size_t k;
    int empty = 0;
    if (args->n < 4 || (v1 ? args->n != 4 : (args->n != 6 && args->n != 7))) { mv_fail("%s: data.pkl: _rebuild_tensor with %lu arguments", u->f->path, (unsigned long)args->n); return NULL; }
    if (args->items[0]->kind != PK_STORAGE) { mv_fail("%s: data.pkl: a tensor rebuilt from a %s, not a storage", u->f->path, kind_name(args->items[0]->kind)); return NULL; }
    if (args->items[2]->kind != PK_TUPLE || args->items[3]->kind != PK_TUPLE || args->items[2]->n != args->items[3]->n) {
        mv_fail("%s: data.pkl: a tensor's size and stride are not tuples of one length", u->f->path);
        return NULL;
    }
    if (args->items[2]->n > MV_MAXDIM) { mv_fail("%s: data.pkl: a tensor of rank %lu (mavref reads up to %d)", u->f->path, (unsigned long)args->items[2]->n, MV_MAXDIM); return NULL; }
    v = pk_new(u, PK_TENSOR);
    if (!v) return NULL;
    v->t = t = (PkTensor *)calloc(1, sizeof *t);
    if (!t) { mv_fail_oom("out of memory unpickling"); return NULL; }
    t->storage = (size_t)args->items[0]->i;
    s = &u->st[t->storage];
    t->dtype = s->dtype;
    t->ndim = (int)args->items[2]->n;
    if (expect_int(u, args->items[1], "a tensor's storage offset", &t->offset)) return NULL;
    for (k = 0; k < (size_t)t->ndim; k++) {
        if (expect_int(u, args->items[2]->items[k], "a tensor's size", &t->shape[k]) ||
            expect_int(u, args->items[3]->items[k], "a tensor's stride", &t->stride[k])) return NULL;
        if (t->shape[k] == 0) empty = 1;
    }
    // The last element's index, offset + sum (size_k - 1) * stride_k, must lie in the storage.
    last = t->offset;
    for (k = 0; !empty && k < (size_t)t->ndim; k++) {
        uint64_t reach = t->shape[k] - 1;
        if (t->stride[k] && reach > (UINT64_MAX - last) / t->stride[k]) { mv_fail("%s: data.pkl: a tensor's extent overflows", u->f->path); return NULL; }
        last += reach * t->stride[k];
    }
    if (!empty && last >= s->numel) {
        mv_fail("%s: data.pkl: a tensor reaches element %llu of storage '%s', which holds %llu", u->f->path, (unsigned long long)last, s->key, (unsigned long long)s->numel);
        return NULL;
    }
    return v;
}

static PkVal *reduce(Unpickler *u, PkVal *fn, PkVal *args) {
    if (fn->kind != PK_GLOBAL) { mv_fail("%s: data.pkl calls a %s", u->f->path, kind_name(fn->kind)); return NULL; }
    if (args->kind != PK_TUPLE) { mv_fail("%s: data.pkl calls %s.%s with a %s, not a tuple", u->f->path, pk_globals[fn->i].module, pk_globals[fn->i].name, kind_name(args->kind)); return NULL; }
    switch (pk_globals[fn->i].kind) {
    case G_ODICT:
        if (args->n) { mv_fail("%s: data.pkl: OrderedDict built from arguments", u->f->path); return NULL; }
        return pk_new(u, PK_DICT);
    case G_REBUILD_V2: return rebuild_tensor(u, args, 0);
    case G_REBUILD_V1: return rebuild_tensor(u, args, 1);
    case G_PARAM: case G_PARAM_STATE: // (data, requires_grad, backward_hooks[, state])
        if (args->n != (pk_globals[fn->i].kind == G_PARAM ? 3u : 4u) || args->items[0]->kind != PK_TENSOR) { mv_fail("%s: data.pkl: _rebuild_parameter of a non-tensor", u->f->path); return NULL; }
        return args->items[0];
    default:
        mv_fail("%s: data.pkl calls the storage class %s.%s; state dicts name it only in persistent ids", u->f->path, pk_globals[fn->i].module, pk_globals[fn->i].name);
        return NULL;
    }
}

// GLOBAL / STACK_GLOBAL: a name from the table, or a refusal naming it.
static PkVal *find_global(Unpickler *u, const char *module, const char *name) {
    size_t i;
    PkVal *v;
    for (i = 0; i < N_GLOBALS; i++)
        if (!strcmp(pk_globals[i].module, module) && !strcmp(pk_globals[i].name, name)) break;
    if (i == N_GLOBALS && !strcmp(module, "torch") && strlen(name) > 7 && !strcmp(name + strlen(name) - 7, "Storage")) {
        mv_fail("%s: data.pkl holds tensors of torch.%.200s, a type mavref does not read (float16/32/64, bfloat16, [u]int8, int16/32/64, bool)",
                u->f->path, name);
        return NULL;
    }
    if (i == N_GLOBALS) {
        mv_fail("%s: data.pkl names the global %.200s.%.200s, which a state dict never needs; refused (nothing in the pickle was run)", u->f->path, module, name);
        return NULL;
    }
    v = pk_new(u, PK_GLOBAL);
    if (v) v->i = (int64_t)i;
    return v;
}

static int memo_put(Unpickler *u, uint64_t idx) {
    PkVal *v = top(u);
    if (!v) return MV_ERR;
    if (idx >= PKL_MAX_VALUES) return mv_fail("%s: data.pkl: memo index %llu is out of range", u->f->path, (unsigned long long)idx);
    if (idx >= u->capmemo) {
        size_t old = u->capmemo;
        if (grow((void **)&u->memo, &u->capmemo, (size_t)idx, sizeof *u->memo)) return MV_ERR;
        memset(u->memo + old, 0, (u->capmemo - old) * sizeof *u->memo);
    }
    if (!u->memo[idx]) u->nmemo++;
    u->memo[idx] = v;
    return MV_OK;
}

static int memo_get(Unpickler *u, uint64_t idx) {
    if (idx >= u->capmemo || !u->memo[idx]) return mv_fail("%s: data.pkl reads memo entry %llu, which was never stored", u->f->path, (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

// The items above the last mark, as a new tuple or list (the mark is removed).
static PkVal *pop_mark(Unpickler *u, PkKind kind) {
    size_t m, i;
    PkVal *v;
    if (!u->nmarks) { mv_fail("%s: data.pkl: an opcode needs a mark and there is none", u->f->path); return NULL; }
    m = u->marks[--u->nmarks];
    v = pk_new(u, kind);
    if (!v) return NULL;
    for (i = m; i < u->nstack; i++)
        if (append_item(v, u->stack[i])) return NULL;
    u->nstack = m;
    return v;
}

static int setitem(Unpickler *u, PkVal *d, PkVal *k, PkVal *v) {
    if (d->kind != PK_DICT) return mv_fail("%s: data.pkl sets an item of a %s", u->f->path, kind_name(d->kind));
    if (k->kind != PK_STR) return mv_fail("%s: data.pkl: a dict key is a %s, not a string", u->f->path, kind_name(k->kind));
    return append_item(d, k) || append_item(d, v) ? MV_ERR : MV_OK;
}

// An integer of n little-endian two's-complement bytes (LONG1/LONG4), up to 8 bytes.
static int long_bytes(Unpickler *u, const unsigned char *b, uint64_t n, int64_t *out) {
    uint64_t v = 0;
    uint64_t k;
    if (n > 8) return mv_fail("%s: data.pkl: an integer of %llu bytes (a state dict needs at most 8)", u->f->path, (unsigned long long)n);
    for (k = n; k-- > 0;) v = (v << 8) | b[k];
    if (n && n < 8 && (b[n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n);
    *out = (v >> 63) ? (int64_t)(v - ((uint64_t)1 << 63)) - INT64_MAX - 1 : (int64_t)v;
    return MV_OK;
}

// The pickle machine: one case per opcode a state dict uses, every other opcode refused by
// name. Longer than 120 lines on purpose: the whole instruction set reads as one table here,
// each case a few lines against the same stack and memo.
static int unpickle(Unpickler *u, PkVal **result) {
    *result = NULL;
    while (u->p < u->end) {
        unsigned char op = *u->p++;
        const unsigned char *b;
        PkVal *v, *a, *c;
        uint64_t n;
        switch (op) {
        case 0x80: if (!(b = take(u, 1))) return MV_ERR; // PROTO
            if (*b < 2 || *b > 5) return mv_fail("%s: data.pkl: pickle protocol %d (mavref reads 2 to 5)", u->f->path, *b);
            break;
        case 0x95: if (!take(u, 8)) return MV_ERR; break; // FRAME: a length hint
        case '.': // STOP
            if (!(v = pop(u))) return MV_ERR;
            *result = v;
            return MV_OK;
        case '(': if (grow((void **)&u->marks, &u->capmarks, u->nmarks, sizeof *u->marks)) return MV_ERR; // MARK
            u->marks[u->nmarks++] = u->nstack;
            break;
        case '0': if (!pop(u)) return MV_ERR; break; // POP
        case '1': if (!pop_mark(u, PK_TUPLE)) return MV_ERR; break; // POP_MARK
        case '2': if (!(v = top(u)) || push(u, v)) return MV_ERR; break; // DUP
        case 'N': if (push(u, pk_new(u, PK_NONE))) return MV_ERR; break;
        case 0x88: case 0x89: if (!(v = pk_new(u, PK_BOOL))) return MV_ERR; // NEWTRUE, NEWFALSE
            v->i = op == 0x88;
            if (push(u, v)) return MV_ERR;
            break;
        case 'J': case 'K': case 'M': // BININT (4, signed), BININT1, BININT2 (unsigned)
            n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (!(b = take(u, n)) || !(v = pk_new(u, PK_INT))) return MV_ERR;
            v->i = op == 'J' ? (int64_t)(int32_t)le32(b) : op == 'K' ? (int64_t)b[0] : (int64_t)le16(b);
            if (push(u, v)) return MV_ERR;
            break;
        case 0x8a: case 0x8b: // LONG1, LONG4
            if (!(b = take(u, op == 0x8a ? 1 : 4))) return MV_ERR;
            n = op == 0x8a ? b[0] : le32(b);
            if (!(b = take(u, n)) || !(v = pk_new(u, PK_INT)) || long_bytes(u, b, n, &v->i) || push(u, v)) return MV_ERR;
            break;
        case 'G': if (!(b = take(u, 8)) || !(v = pk_new(u, PK_FLOAT)) || push(u, v)) return MV_ERR; break; // BINFLOAT (unused value)
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: { // strings and bytes
            int w = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            if (!(b = take(u, (uint64_t)w))) return MV_ERR;
            n = w == 1 ? b[0] : w == 4 ? le32(b) : le64(b);
            if (!(b = take(u, n)) || push(u, new_str(u, b, n))) return MV_ERR;
            break;
        }
        case '}': if (push(u, pk_new(u, PK_DICT))) return MV_ERR; break;
        case ']': if (push(u, pk_new(u, PK_LIST))) return MV_ERR; break;
        case ')': if (push(u, pk_new(u, PK_TUPLE))) return MV_ERR; break;
        case 't': if (push(u, pop_mark(u, PK_TUPLE))) return MV_ERR; break;
        case 'l': if (push(u, pop_mark(u, PK_LIST))) return MV_ERR; break;
        case 0x85: case 0x86: case 0x87: { // TUPLE1..3
            size_t k, cnt = (size_t)(op - 0x84);
            PkVal *items[3];
            for (k = cnt; k-- > 0;)
                if (!(items[k] = pop(u))) return MV_ERR;
            if (!(v = pk_new(u, PK_TUPLE))) return MV_ERR;
            for (k = 0; k < cnt; k++)
                if (append_item(v, items[k])) return MV_ERR;
            if (push(u, v)) return MV_ERR;
            break;
        }
        case 'q': if (!(b = take(u, 1)) || memo_put(u, b[0])) return MV_ERR; break;        // BINPUT
        case 'r': if (!(b = take(u, 4)) || memo_put(u, le32(b))) return MV_ERR; break;     // LONG_BINPUT
        case 0x94: if (memo_put(u, u->nmemo)) return MV_ERR; break; // MEMOIZE: at the memo's length
        case 'h': if (!(b = take(u, 1)) || memo_get(u, b[0])) return MV_ERR; break;        // BINGET
        case 'j': if (!(b = take(u, 4)) || memo_get(u, le32(b))) return MV_ERR; break;     // LONG_BINGET
        case 'c': { // GLOBAL "module\nname\n"
            const unsigned char *nl1 = memchr(u->p, '\n', (size_t)(u->end - u->p)), *nl2;
            char mod[256], name[256];
            if (!nl1 || !(nl2 = memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)))) return mv_fail("%s: truncated data.pkl in a GLOBAL", u->f->path);
            if (nl1 - u->p >= (long)sizeof mod || nl2 - nl1 - 1 >= (long)sizeof name) return mv_fail("%s: data.pkl: a global's name is too long", u->f->path);
            memcpy(mod, u->p, (size_t)(nl1 - u->p)); mod[nl1 - u->p] = '\0';
            memcpy(name, nl1 + 1, (size_t)(nl2 - nl1 - 1)); name[nl2 - nl1 - 1] = '\0';
            u->p = nl2 + 1;
            if (push(u, find_global(u, mod, name))) return MV_ERR;
            break;
        }
        case 0x93: // STACK_GLOBAL
            if (!(a = pop(u)) || !(v = pop(u))) return MV_ERR;
            if (a->kind != PK_STR || v->kind != PK_STR) return mv_fail("%s: data.pkl: STACK_GLOBAL of non-strings", u->f->path);
            if (push(u, find_global(u, v->s, a->s))) return MV_ERR;
            break;
        case 'Q': // BINPERSID
            if (!(v = pop(u)) || push(u, persistent_load(u, v))) return MV_ERR;
            break;
        case 'R': // REDUCE
            if (!(a = pop(u)) || !(v = pop(u)) || push(u, reduce(u, v, a))) return MV_ERR;
            break;
        case 'b': // BUILD: state for a dict (OrderedDict's _metadata) or a parameter: kept out
            if (!(a = pop(u)) || !(v = top(u))) return MV_ERR;
            if (v->kind != PK_DICT && v->kind != PK_TENSOR) return mv_fail("%s: data.pkl sets the state of a %s", u->f->path, kind_name(v->kind));
            break;
        case 's': // SETITEM
            if (!(v = pop(u)) || !(a = pop(u)) || !(c = top(u)) || setitem(u, c, a, v)) return MV_ERR;
            break;
        case 'u': { // SETITEMS
            size_t m, k;
            if (!u->nmarks) return mv_fail("%s: data.pkl: SETITEMS without a mark", u->f->path);
            m = u->marks[--u->nmarks];
            if ((u->nstack - m) % 2 || m == 0) return mv_fail("%s: data.pkl: SETITEMS with an odd item count or no dict", u->f->path);
            for (k = m; k < u->nstack; k += 2)
                if (setitem(u, u->stack[m - 1], u->stack[k], u->stack[k + 1])) return MV_ERR;
            u->nstack = m;
            break;
        }
        case 'a': // APPEND
            if (!(v = pop(u)) || !(c = top(u))) return MV_ERR;
            if (c->kind != PK_LIST) return mv_fail("%s: data.pkl appends to a %s", u->f->path, kind_name(c->kind));
            if (append_item(c, v)) return MV_ERR;
            break;
        case 'e': { // APPENDS
            size_t m, k;
            if (!u->nmarks) return mv_fail("%s: data.pkl: APPENDS without a mark", u->f->path);
            m = u->marks[--u->nmarks];
            if (m == 0 || u->stack[m - 1]->kind != PK_LIST) return mv_fail("%s: data.pkl: APPENDS to something not a list", u->f->path);
            for (k = m; k < u->nstack; k++)
                if (append_item(u->stack[m - 1], u->stack[k])) return MV_ERR;
            u->nstack = m;
            break;
        }
        default:
            return mv_fail("%s: data.pkl: pickle opcode 0x%02x ('%c') is not one a state dict needs; refused (nothing in the pickle was run)",
                           u->f->path, op, op >= 0x20 && op < 0x7f ? op : '?');
        }
    }
    return mv_fail("%s: truncated data.pkl: it ends without a STOP opcode", u->f->path);
}

// ---------------------------------------------------------------------------------------
// From the unpickled object to the index: every tensor in the nest of dicts (and lists), named
// by its keys joined with '/'.

static int add_tensor(CkFile *f, size_t *cap, const Unpickler *u, const char *name, const PkTensor *t, int big_endian) {
    const PkStorage *s = &u->st[t->storage];
    CkEntry *e = ck_add_entry(f, cap, name);
    uint64_t expect = 1, span = 1;
    int k, contiguous = 1;
    if (!e) return MV_ERR;
    e->dtype = t->dtype;
    e->big_endian = big_endian;
    if (ck_set_shape(f, e, t->ndim, t->shape)) return MV_ERR;
    for (k = t->ndim - 1; k >= 0; k--) { // C-contiguous: stride_k = prod of the sizes after k (any stride where size is 1)
        if (t->shape[k] != 1 && t->stride[k] != expect) contiguous = 0;
        expect *= t->shape[k];
    }
    if (contiguous || e->numel == 0) {
        e->offset = s->offset + t->offset * st_dtype_size(t->dtype); // inside the storage: checked at rebuild
        return MV_OK;
    }
    if ((uint64_t)e->numel > s->numel) // a stride-0 expansion: bounded by the file, as every other tensor is
        return mv_fail("%s: tensor '%s' has %lu elements, more than its storage's %llu (an expanded view); save it with .contiguous()",
                       f->path, name, (unsigned long)e->numel, (unsigned long long)s->numel);
    for (k = 0; k < t->ndim; k++) span += (t->shape[k] - 1) * t->stride[k]; // no overflow: checked at rebuild
    if (span > VIEW_MAX_SPAN / st_dtype_size(t->dtype))
        return mv_fail("%s: tensor '%s' is a non-contiguous view spanning %llu elements of its storage; mavref reads views up to %u bytes (save it with .contiguous())",
                       f->path, name, (unsigned long long)span, VIEW_MAX_SPAN);
    e->strided = 1;
    e->offset = s->offset;
    e->storage_offset = (size_t)t->offset;
    for (k = 0; k < t->ndim; k++) e->stride[k] = (size_t)t->stride[k];
    return MV_OK;
}

static int walk(CkFile *f, size_t *cap, const Unpickler *u, const PkVal *v, const char *prefix, int depth, int big_endian) {
    size_t i, step = v->kind == PK_DICT ? 2 : 1;
    if (v->kind != PK_DICT && v->kind != PK_LIST && v->kind != PK_TUPLE) return MV_OK;
    if (depth >= PKL_MAX_DEPTH) return mv_fail("%s: data.pkl: '%s' is nested deeper than %d levels", f->path, prefix, PKL_MAX_DEPTH);
    for (i = 0; i < v->n; i += step) {
        const PkVal *child = v->items[i + step - 1];
        char idx[32], *name;
        const char *key = idx;
        size_t a = strlen(prefix), bl;
        int rc = MV_OK;
        if (step == 2) key = v->items[i]->s;
        else sprintf(idx, "%lu", (unsigned long)i);
        if (child->kind != PK_TENSOR && child->kind != PK_DICT && child->kind != PK_LIST && child->kind != PK_TUPLE) continue; // ints, strings: not tensors
        bl = strlen(key);
        name = (char *)mv_malloc(a + bl + 2, "tensor name");
        if (!name) return MV_ERR;
        memcpy(name, prefix, a);
        if (a) name[a++] = '/';
        memcpy(name + a, key, bl + 1);
        if (child->kind == PK_TENSOR) rc = add_tensor(f, cap, u, name, child->t, big_endian);
        else rc = walk(f, cap, u, child, name, depth + 1, big_endian);
        free(name);
        if (rc) return MV_ERR;
    }
    return MV_OK;
}

int ck_open_torch_zip(CkFile *f) {
    Zip z;
    Unpickler u;
    PkVal *root = NULL;
    unsigned char *pkl = NULL, *order = NULL;
    char name[1100];
    const ZipMember *m = NULL, *bo;
    size_t i, cap = 0;
    int big_endian = 0, rc = MV_ERR;
    memset(&z, 0, sizeof z);
    memset(&u, 0, sizeof u);
    z.f = f;
    if (zip_read_directory(&z)) goto done;
    // PREFIX/data.pkl, PREFIX a single folder ("archive/" or the file's stem)
    for (i = 0; i < z.n; i++) {
        const char *s = z.m[i].name, *slash = strchr(s, '/');
        if (slash && !strcmp(slash + 1, "data.pkl")) {
            if (m) { mv_fail("%s: the zip holds two torch archives ('%s' and '%s')", f->path, m->name, s); goto done; }
            m = &z.m[i];
        }
    }
    if (!m) { mv_fail("%s: a zip file but not a torch.save archive: no PREFIX/data.pkl member", f->path); goto done; }
    if (strlen(m->name) - 8 >= sizeof z.prefix) { mv_fail("%s: archive name too long", f->path); goto done; }
    memcpy(z.prefix, m->name, strlen(m->name) - 8);
    z.prefix[strlen(m->name) - 8] = '\0';
    snprintf(name, sizeof name, "%sbyteorder", z.prefix);
    if ((bo = zip_find(&z, name)) != NULL) {
        if (zip_slurp(&z, bo, 16, &order)) goto done;
        if (!strcmp((char *)order, "big")) big_endian = 1;
        else if (strcmp((char *)order, "little")) { mv_fail("%s: %s says '%.16s', neither 'little' nor 'big'", f->path, name, (char *)order); goto done; }
    }
    if (zip_slurp(&z, m, PKL_MAX, &pkl)) goto done;
    u.z = &z;
    u.f = f;
    u.p = pkl;
    u.end = pkl + m->size;
    if (unpickle(&u, &root)) goto done;
    if (u.p != u.end) { mv_fail("%s: data.pkl has %lu bytes after its STOP opcode", f->path, (unsigned long)(u.end - u.p)); goto done; }
    if (root->kind != PK_DICT) { mv_fail("%s: data.pkl holds a %s, not a state dict", f->path, kind_name(root->kind)); goto done; }
    rc = walk(f, &cap, &u, root, "", 0, big_endian);
done:
    pk_free(&u);
    zip_free(&z);
    free(pkl);
    free(order);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Reading a non-contiguous view: the storage span it touches, then a gather in C order.

int ck_read_strided(const CkFile *f, const CkEntry *e, CkSink s) {
    size_t esz = st_dtype_size(e->dtype), span = 1, idx[MV_MAXDIM] = {0}, i, pos;
    unsigned char *buf;
    int k, rc = MV_OK;
    for (k = 0; k < e->ndim; k++) span += (e->shape[k] - 1) * e->stride[k];
    buf = (unsigned char *)mv_malloc(span * esz, e->name);
    if (!buf) return MV_ERR;
    if (ck_pread(f, e->offset + (uint64_t)e->storage_offset * esz, buf, span * esz)) { free(buf); return mv_fail_prefix("%s: tensor '%s'", f->path, e->name); }
    for (i = 0; i < e->numel && rc == MV_OK; i++) {
        for (pos = 0, k = 0; k < e->ndim; k++) pos += idx[k] * e->stride[k];
        rc = ck_emit(f, e, buf + pos * esz, i, s);
        for (k = e->ndim - 1; k >= 0; k--) { // next index, last axis fastest
            if (++idx[k] < e->shape[k]) break;
            idx[k] = 0;
        }
    }
    free(buf);
    return rc;
}
