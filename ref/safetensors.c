// safetensors.c: a validating reader and an atomic writer for safetensors files.
#include "safetensors.h"
#include "json.h"
#include "port.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1024u * 1024u) // the format's own limit

static const char *dtype_names[ST_NDTYPES] = {"F32", "F64", "F16", "BF16", "I32", "I64", "U8",
                                              "I8", "I16", "U16", "U32", "U64", "BOOL"};
static const size_t dtype_sizes[ST_NDTYPES] = {4, 8, 2, 2, 4, 8, 1, 1, 2, 2, 4, 8, 1};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_names[d] : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtype_sizes[d] : 0; }

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)mv_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}

// ---------------------------------------------------------------------------------------
// Byte decoding, independent of the host's byte order.

static uint32_t le32(const unsigned char *b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static uint64_t le64(const unsigned char *b) { return (uint64_t)le32(b) | ((uint64_t)le32(b + 4) << 32); }
static void put_le32(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16); b[3] = (unsigned char)(v >> 24);
}
static void put_le64(unsigned char *b, uint64_t v) { put_le32(b, (uint32_t)v); put_le32(b + 4, (uint32_t)(v >> 32)); }

static double f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return (double)f; }
static double f64_from_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

// IEEE half -> double, exactly (subnormals, infinities and NaN included).
double st_f16_to_double(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { // subnormal: renormalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3FF;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    return f32_from_bits(bits);
}

static uint16_t le16(const unsigned char *b) { return (uint16_t)(b[0] | (b[1] << 8)); }

double st_decode(const unsigned char *b, StDtype d) {
    switch (d) {
    case ST_F32: return f32_from_bits(le32(b));
    case ST_F64: return f64_from_bits(le64(b));
    case ST_F16: return st_f16_to_double((uint16_t)(b[0] | (b[1] << 8)));
    case ST_BF16: return f32_from_bits((uint32_t)(b[0] | (b[1] << 8)) << 16);
    case ST_I32: return (double)(int32_t)le32(b);
    case ST_I64: return (double)(int64_t)le64(b);
    case ST_U8: case ST_BOOL: return (double)b[0];
    case ST_I8: return (double)(signed char)b[0];
    case ST_I16: return (double)(int16_t)le16(b);
    case ST_U16: return (double)le16(b);
    case ST_U32: return (double)le32(b);
    case ST_U64: return (double)le64(b);
    default: return 0.0;
    }
}

// ---------------------------------------------------------------------------------------
// Seeking to 64-bit offsets (port.c: past 4 GiB on every platform, Windows included).

int st_seek(FILE *fp, uint64_t off) { return mv_seek(fp, off); }

// ---------------------------------------------------------------------------------------
// Reading

static int parse_entry(StFile *f, StEntry *e, const char *name, const JsonValue *v) {
    const JsonValue *dt, *sh, *off;
    uint64_t numel = 1, nbytes, b, en;
    size_t i;
    int k;
    if (v->type != JSON_OBJECT) return mv_fail("%s: tensor '%s': header entry is not an object", f->path, name);
    for (i = 0; i < v->count; i++)
        if (strcmp(v->keys[i], "dtype") && strcmp(v->keys[i], "shape") && strcmp(v->keys[i], "data_offsets"))
            return mv_fail("%s: tensor '%s': unknown header field '%s'", f->path, name, v->keys[i]);
    dt = json_get(v, "dtype");
    sh = json_get(v, "shape");
    off = json_get(v, "data_offsets");
    if (!dt || dt->type != JSON_STRING) return mv_fail("%s: tensor '%s': missing or non-string dtype", f->path, name);
    if (!sh || sh->type != JSON_ARRAY) return mv_fail("%s: tensor '%s': missing or non-array shape", f->path, name);
    if (!off || off->type != JSON_ARRAY || off->count != 2)
        return mv_fail("%s: tensor '%s': data_offsets must be an array of two integers", f->path, name);
    e->name = dup_str(name);
    if (!e->name) return MV_ERR;
    for (k = 0; k < ST_NDTYPES; k++)
        if (strcmp(dt->text, dtype_names[k]) == 0) break;
    if (k == ST_NDTYPES)
        return mv_fail("%s: tensor '%s': unsupported dtype '%s' (mavref reads F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, BOOL)",
                       f->path, name, dt->text);
    e->dtype = (StDtype)k;
    if (sh->count > MV_MAXDIM) return mv_fail("%s: tensor '%s': rank %lu exceeds %d", f->path, name, (unsigned long)sh->count, MV_MAXDIM);
    e->ndim = (int)sh->count;
    for (i = 0; i < sh->count; i++) {
        uint64_t d;
        if (json_as_u64(&sh->items[i], &d)) return mv_fail_prefix("%s: tensor '%s': shape[%lu]", f->path, name, (unsigned long)i);
        if (d > (uint64_t)(size_t)-1) return mv_fail("%s: tensor '%s': dimension %llu does not fit this machine's size_t", f->path, name, (unsigned long long)d);
        if (d != 0 && numel > UINT64_MAX / d) return mv_fail("%s: tensor '%s': element count overflows", f->path, name);
        numel *= d;
        e->shape[i] = (size_t)d;
    }
    if (numel > (uint64_t)(size_t)-1) return mv_fail("%s: tensor '%s': %llu elements do not fit this machine's size_t", f->path, name, (unsigned long long)numel);
    e->numel = (size_t)numel;
    if (numel > UINT64_MAX / dtype_sizes[k]) return mv_fail("%s: tensor '%s': byte size overflows", f->path, name);
    nbytes = numel * dtype_sizes[k];
    if (nbytes > (uint64_t)(size_t)-1)
        return mv_fail("%s: tensor '%s': %llu bytes do not fit this machine's size_t", f->path, name, (unsigned long long)nbytes);
    if (json_as_u64(&off->items[0], &b) || json_as_u64(&off->items[1], &en))
        return mv_fail_prefix("%s: tensor '%s': data_offsets", f->path, name);
    if (en < b) return mv_fail("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", f->path, name, (unsigned long long)b, (unsigned long long)en);
    if (en - b != nbytes)
        return mv_fail("%s: tensor '%s': data_offsets span %llu bytes but dtype %s and shape need %llu", f->path, name,
                       (unsigned long long)(en - b), dtype_names[k], (unsigned long long)nbytes);
    e->begin = b;
    e->end = en;
    return MV_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

int st_open(StFile *f, const char *path) {
    unsigned char lenbuf[8];
    uint64_t n, data_len = 0;
    char *header = NULL;
    JsonValue root;
    StEntry **order = NULL;
    size_t i, ne = 0, nm = 0;
    int rc = MV_ERR;
    memset(f, 0, sizeof *f);
    memset(&root, 0, sizeof root);
    f->path = dup_str(path);
    if (!f->path) return MV_ERR;
    f->fp = fopen(path, "rb");
    if (!f->fp) { mv_fail("%s: cannot open for reading", path); goto done; }
    if (fread(lenbuf, 1, 8, f->fp) != 8) { mv_fail("%s: not a safetensors file: shorter than its 8-byte header length", path); goto done; }
    n = le64(lenbuf);
    if (n < 2 || n > ST_MAX_HEADER) {
        mv_fail("%s: not a safetensors file: header length %llu is outside 2..%u bytes", path, (unsigned long long)n, ST_MAX_HEADER);
        goto done;
    }
    header = (char *)mv_malloc((size_t)n, "safetensors header");
    if (!header) goto done;
    if (fread(header, 1, (size_t)n, f->fp) != (size_t)n) { mv_fail("%s: truncated: the header says %llu bytes but the file ends first", path, (unsigned long long)n); goto done; }
    if (header[0] != '{') { mv_fail("%s: not a safetensors file: header does not start with '{'", path); goto done; }
    if (json_parse(&root, header, (size_t)n)) { mv_fail_prefix("%s: header", path); goto done; }
    if (root.type != JSON_OBJECT) { mv_fail("%s: header is not a JSON object", path); goto done; }
    f->data_start = 8 + n;
    for (i = 0; i < root.count; i++) {
        if (strcmp(root.keys[i], "__metadata__") == 0) nm++;
        else ne++;
    }
    (void)nm;
    f->entries = (StEntry *)mv_calloc(ne ? ne : 1, sizeof(StEntry), "safetensors entries");
    if (!f->entries) goto done;
    for (i = 0; i < root.count; i++) {
        const JsonValue *v = &root.items[i];
        if (strcmp(root.keys[i], "__metadata__") == 0) {
            size_t j;
            if (v->type != JSON_OBJECT) { mv_fail("%s: __metadata__ is not an object", path); goto done; }
            f->meta_keys = (char **)mv_calloc(v->count + 1, sizeof(char *), "metadata");
            f->meta_values = (char **)mv_calloc(v->count + 1, sizeof(char *), "metadata");
            if (!f->meta_keys || !f->meta_values) goto done;
            for (j = 0; j < v->count; j++) {
                if (v->items[j].type != JSON_STRING) { mv_fail("%s: __metadata__ value '%s' is not a string", path, v->keys[j]); goto done; }
                f->meta_keys[j] = dup_str(v->keys[j]);
                f->meta_values[j] = dup_str(v->items[j].text);
                f->nmeta++;
                if (!f->meta_keys[j] || !f->meta_values[j]) goto done;
            }
            continue;
        }
        f->count++; // counted first so st_close frees a half-parsed entry
        if (parse_entry(f, &f->entries[f->count - 1], root.keys[i], v)) goto done;
        if (f->entries[f->count - 1].end > data_len) data_len = f->entries[f->count - 1].end;
    }
    // Lying offsets: two tensors must never share bytes.
    order = (StEntry **)mv_calloc(f->count + 1, sizeof(StEntry *), "offset check");
    if (!order) goto done;
    for (i = 0; i < f->count; i++) order[i] = &f->entries[i];
    qsort(order, f->count, sizeof(StEntry *), cmp_begin);
    for (i = 1; i < f->count; i++)
        if (order[i]->begin < order[i - 1]->end && order[i]->begin != order[i]->end) {
            mv_fail("%s: tensors '%s' and '%s' overlap in the data region", path, order[i - 1]->name, order[i]->name);
            goto done;
        }
    // The file must hold every byte the header promises.
    if (data_len > 0) {
        if (data_len > UINT64_MAX - f->data_start || st_seek(f->fp, f->data_start + data_len - 1) || fgetc(f->fp) == EOF) {
            mv_fail("%s: truncated: the header promises %llu data bytes after byte %llu, the file is shorter", path,
                    (unsigned long long)data_len, (unsigned long long)f->data_start);
            goto done;
        }
    }
    rc = MV_OK;
done:
    free(order);
    free(header);
    json_free(&root);
    if (rc != MV_OK) st_close(f);
    return rc;
}

void st_close(StFile *f) {
    size_t i;
    if (f->fp) fclose(f->fp);
    for (i = 0; i < f->count; i++) free(f->entries[i].name);
    for (i = 0; i < f->nmeta; i++) { free(f->meta_keys[i]); free(f->meta_values[i]); }
    free(f->entries);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StEntry *st_find(const StFile *f, const char *name) {
    size_t i;
    for (i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    size_t i;
    for (i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

// Stream the entry's bytes in chunks and hand each decoded element to the sink.
typedef struct { real *r; double *d; int64_t *i; } Sink;

static int read_entry(const StFile *f, const StEntry *e, Sink s) {
    unsigned char buf[1 << 16];
    size_t esz = dtype_sizes[e->dtype], per = sizeof buf / esz, done = 0;
    if (st_seek(f->fp, f->data_start + e->begin)) return mv_fail("%s: tensor '%s': seek failed", f->path, e->name);
    while (done < e->numel) {
        size_t k = e->numel - done < per ? e->numel - done : per, j;
        if (fread(buf, esz, k, f->fp) != k) return mv_fail("%s: tensor '%s': read failed (file truncated?)", f->path, e->name);
        for (j = 0; j < k; j++) {
            const unsigned char *b = buf + j * esz;
            if (s.r) s.r[done + j] = (real)st_decode(b, e->dtype);
            if (s.d) s.d[done + j] = st_decode(b, e->dtype);
            if (s.i) {
                if (e->dtype == ST_U64 && le64(b) > (uint64_t)INT64_MAX)
                    return mv_fail("%s: tensor '%s': U64 value %llu does not fit int64", f->path, e->name, (unsigned long long)le64(b));
                s.i[done + j] = e->dtype == ST_I64 || e->dtype == ST_U64 ? (int64_t)le64(b) : (int64_t)st_decode(b, e->dtype);
            }
        }
        done += k;
    }
    return MV_OK;
}

int st_read(const StFile *f, const char *name, Tensor *out) {
    const StEntry *e = st_find(f, name);
    Sink s = {NULL, NULL, NULL};
    memset(out, 0, sizeof *out);
    if (!e) return mv_fail("%s: missing tensor '%s'", f->path, name);
    if (tensor_alloc(out, e->ndim, e->shape)) return mv_fail_prefix("%s: tensor '%s'", f->path, name);
    s.r = out->data;
    if (read_entry(f, e, s)) { tensor_free(out); return MV_ERR; }
    return MV_OK;
}

int st_read_into(const StFile *f, const char *name, const Tensor *dst) {
    const StEntry *e = st_find(f, name);
    Sink s = {NULL, NULL, NULL};
    char a[128], b[128];
    int i, same;
    if (!e) return mv_fail("%s: missing tensor '%s'", f->path, name);
    same = e->ndim == dst->ndim;
    for (i = 0; same && i < e->ndim; i++) same = e->shape[i] == dst->shape[i];
    if (!same)
        return mv_fail("%s: tensor '%s' has shape %s, expected %s", f->path, name, shape_str(a, sizeof a, e->ndim, e->shape),
                       shape_str(b, sizeof b, dst->ndim, dst->shape));
    s.r = dst->data;
    return read_entry(f, e, s);
}

int st_read_f64(const StFile *f, const StEntry *e, double *out) {
    Sink s = {NULL, NULL, NULL};
    s.d = out;
    return read_entry(f, e, s);
}

int st_read_i64(const StFile *f, const char *name, int64_t **out, size_t *numel) {
    const StEntry *e = st_find(f, name);
    Sink s = {NULL, NULL, NULL};
    *out = NULL;
    if (!e) return mv_fail("%s: missing tensor '%s'", f->path, name);
    if (e->dtype == ST_F32 || e->dtype == ST_F64 || e->dtype == ST_F16 || e->dtype == ST_BF16)
        return mv_fail("%s: tensor '%s' has dtype %s, expected an integer dtype", f->path, name, dtype_names[e->dtype]);
    s.i = (int64_t *)mv_calloc(e->numel ? e->numel : 1, sizeof(int64_t), e->name);
    if (!s.i) return MV_ERR;
    if (read_entry(f, e, s)) { free(s.i); return MV_ERR; }
    *out = s.i;
    *numel = e->numel;
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Writing

struct StWriterItem {
    char *name;
    StDtype dtype;
    int ndim;
    size_t shape[MV_MAXDIM];
    size_t nbytes;
    unsigned char *bytes; // little-endian, ready to write
};

void st_writer_init(StWriter *w) { memset(w, 0, sizeof *w); }

// A new item; its bytes are allocated unless `declare_only` (st_writer_declare: they are streamed).
static StWriterItem *writer_new_item(StWriter *w, const char *name, StDtype dtype, int ndim, const size_t *shape, int declare_only) {
    StWriterItem *it;
    size_t numel, i;
    for (i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0) { mv_fail("tensor '%s' added twice", name); return NULL; }
    if (w->count == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        StWriterItem *items = (StWriterItem *)realloc(w->items, ncap * sizeof *items);
        if (!items) { mv_fail_oom("out of memory"); return NULL; }
        w->items = items;
        w->cap = ncap;
    }
    if (shape_numel(&numel, ndim, shape)) return NULL;
    it = &w->items[w->count];
    memset(it, 0, sizeof *it);
    if (mv_mul_size(&it->nbytes, numel, dtype_sizes[dtype])) return NULL;
    it->name = dup_str(name);
    it->bytes = declare_only ? NULL : (unsigned char *)mv_malloc(it->nbytes, name);
    if (!it->name || (!declare_only && !it->bytes)) { free(it->name); free(it->bytes); return NULL; }
    it->dtype = dtype;
    it->ndim = ndim;
    for (i = 0; i < (size_t)ndim; i++) it->shape[i] = shape[i];
    w->count++;
    return it;
}

// double -> IEEE half, rounded to nearest, ties to even (as numpy's astype(float16)):
// overflow gives infinity, tiny values subnormals or zero; NaN stays NaN.
uint16_t st_f16_from_double(double x) {
    uint16_t sign = (uint16_t)(signbit(x) ? 0x8000u : 0u);
    double a = fabs(x), m, r;
    int e;
    if (a != a) return (uint16_t)(sign | 0x7e00u);
    if (a >= 65520.0) return (uint16_t)(sign | 0x7c00u); // 65504 + half an ulp rounds up to inf
    m = frexp(a, &e);                                      // a = m 2^e, m in [0.5, 1)
    if (a == 0.0) return sign;
    if (e < -13) { // subnormal: units of 2^-24
        r = nearbyint(ldexp(a, 24));                       // the default rounding: ties to even
        return (uint16_t)(sign | (uint16_t)r);            // r = 1024 is the smallest normal: still right
    }
    r = nearbyint(ldexp(m, 11));                           // 11 significant bits, in [1024, 2048]
    if (r == 2048.0) { r = 1024.0; e++; }
    if (e + 14 >= 31) return (uint16_t)(sign | 0x7c00u);
    return (uint16_t)(sign | (uint16_t)((e + 14) << 10) | (uint16_t)((int)r - 1024));
}

int st_writer_add(StWriter *w, const char *name, const Tensor *t, StDtype dtype) {
    StWriterItem *it;
    size_t i;
    if (dtype != ST_F32 && dtype != ST_F64 && dtype != ST_F16) return mv_fail("tensor '%s': can only write F32, F64 or F16 from reals", name);
    it = writer_new_item(w, name, dtype, t->ndim, t->shape, 0);
    if (!it) return MV_ERR;
    for (i = 0; i < t->numel; i++) {
        if (dtype == ST_F16) {
            uint16_t h = st_f16_from_double((double)t->data[i]);
            it->bytes[2 * i] = (unsigned char)(h & 0xff);
            it->bytes[2 * i + 1] = (unsigned char)(h >> 8);
        } else if (dtype == ST_F32) {
            float v = (float)t->data[i];
            uint32_t u;
            memcpy(&u, &v, 4);
            put_le32(it->bytes + 4 * i, u);
        } else {
            double v = (double)t->data[i];
            uint64_t u;
            memcpy(&u, &v, 8);
            put_le64(it->bytes + 8 * i, u);
        }
    }
    return MV_OK;
}

int st_writer_add_u8(StWriter *w, const char *name, const unsigned char *v, int ndim, const size_t *shape) {
    StWriterItem *it = writer_new_item(w, name, ST_U8, ndim, shape, 0);
    if (!it) return MV_ERR;
    memcpy(it->bytes, v, it->nbytes);
    return MV_OK;
}

int st_writer_add_i64(StWriter *w, const char *name, const int64_t *v, int ndim, const size_t *shape) {
    StWriterItem *it = writer_new_item(w, name, ST_I64, ndim, shape, 0);
    size_t i;
    if (!it) return MV_ERR;
    for (i = 0; i < it->nbytes / 8; i++) put_le64(it->bytes + 8 * i, (uint64_t)v[i]);
    return MV_OK;
}

int st_writer_declare(StWriter *w, const char *name, StDtype dtype, int ndim, const size_t *shape) {
    if ((int)dtype < 0 || dtype >= ST_NDTYPES) return mv_fail("tensor '%s': no such dtype", name);
    return writer_new_item(w, name, dtype, ndim, shape, 1) ? MV_OK : MV_ERR;
}

int st_writer_meta(StWriter *w, const char *key, const char *value) {
    char **k = (char **)realloc(w->meta_keys, (w->nmeta + 1) * sizeof(char *));
    char **v;
    if (!k) return mv_fail_oom("out of memory");
    w->meta_keys = k;
    v = (char **)realloc(w->meta_values, (w->nmeta + 1) * sizeof(char *));
    if (!v) return mv_fail_oom("out of memory");
    w->meta_values = v;
    w->meta_keys[w->nmeta] = dup_str(key);
    w->meta_values[w->nmeta] = dup_str(value);
    if (!w->meta_keys[w->nmeta] || !w->meta_values[w->nmeta]) return MV_ERR;
    w->nmeta++;
    return MV_OK;
}

// Growable text buffer for the header.
typedef struct { char *s; size_t len, cap; int failed; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = (b->cap ? b->cap : 256);
        char *p;
        while (ncap < b->len + n + 1) ncap *= 2;
        p = (char *)realloc(b->s, ncap);
        if (!p) { b->failed = 1; return; }
        b->s = p;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_json_string(Buf *b, const char *s) {
    buf_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; buf_put(b, esc, 2); }
        else if (c < 0x20) { sprintf(esc, "\\u%04x", c); buf_put(b, esc, 6); }
        else buf_put(b, (const char *)&c, 1);
    }
    buf_str(b, "\"");
}

// The header: {"__metadata__": {...}, "NAME": {"dtype", "shape", "data_offsets"}, ...} with
// the tensors' bytes one after another in the order added, padded with spaces to 8 bytes.
static int build_header(Buf *b, const StWriter *w, const char *path) {
    char num[64];
    uint64_t off = 0;
    size_t i;
    buf_str(b, "{");
    if (w->nmeta) {
        buf_str(b, "\"__metadata__\":{");
        for (i = 0; i < w->nmeta; i++) {
            if (i) buf_str(b, ",");
            buf_json_string(b, w->meta_keys[i]);
            buf_str(b, ":");
            buf_json_string(b, w->meta_values[i]);
        }
        buf_str(b, "}");
    }
    for (i = 0; i < w->count; i++) {
        const StWriterItem *it = &w->items[i];
        int d;
        if (i || w->nmeta) buf_str(b, ",");
        buf_json_string(b, it->name);
        buf_str(b, ":{\"dtype\":\"");
        buf_str(b, dtype_names[it->dtype]);
        buf_str(b, "\",\"shape\":[");
        for (d = 0; d < it->ndim; d++) {
            sprintf(num, d ? ",%llu" : "%llu", (unsigned long long)it->shape[d]); // not long: 32 bits on Windows
            buf_str(b, num);
        }
        sprintf(num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + it->nbytes));
        buf_str(b, num);
        off += it->nbytes;
    }
    buf_str(b, "}");
    while (!b->failed && b->len % 8) buf_str(b, " "); // keep the data region 8-byte aligned
    if (b->failed) { free(b->s); b->s = NULL; return mv_fail_oom("%s: out of memory building the header", path); }
    return MV_OK;
}

int st_stream_begin(StStream *s, const StWriter *w, const char *path) {
    Buf b = {NULL, 0, 0, 0};
    unsigned char lenbuf[8];
    size_t plen = strlen(path);
    int ok;
    memset(s, 0, sizeof *s);
    if (build_header(&b, w, path)) return MV_ERR;
    put_le64(lenbuf, (uint64_t)b.len);
    s->path = (char *)mv_malloc(plen + 1, "path");
    s->tmp = (char *)mv_malloc(plen + 5, "path");
    if (!s->path || !s->tmp) { free(b.s); free(s->path); free(s->tmp); memset(s, 0, sizeof *s); return MV_ERR; }
    memcpy(s->path, path, plen + 1);
    memcpy(s->tmp, path, plen);
    memcpy(s->tmp + plen, ".tmp", 5);
    s->w = w;
    s->fp = fopen(s->tmp, "wb");
    if (!s->fp) {
        free(b.s);
        mv_fail("%s: cannot open for writing", s->tmp);
        free(s->path); free(s->tmp); memset(s, 0, sizeof *s);
        return MV_ERR;
    }
    ok = fwrite(lenbuf, 1, 8, s->fp) == 8 && fwrite(b.s, 1, b.len, s->fp) == b.len;
    free(b.s);
    if (!ok) { mv_fail("%s: write failed (disk full?); nothing was written", path); st_stream_abort(s); return MV_ERR; }
    return MV_OK;
}

int st_stream_put(StStream *s, const unsigned char *bytes, size_t nbytes) {
    const StWriterItem *it;
    if (!s->fp) return mv_fail("safetensors stream: not open");
    if (s->next >= s->w->count) { mv_fail("%s: more tensors written than declared", s->path); st_stream_abort(s); return MV_ERR; }
    it = &s->w->items[s->next];
    if (nbytes != it->nbytes) {
        mv_fail("%s: tensor '%s': %llu bytes written, %llu declared", s->path, it->name, (unsigned long long)nbytes,
                (unsigned long long)it->nbytes);
        st_stream_abort(s);
        return MV_ERR;
    }
    if (fwrite(bytes, 1, nbytes, s->fp) != nbytes) {
        mv_fail("%s: write failed (disk full?); nothing was written", s->path);
        st_stream_abort(s);
        return MV_ERR;
    }
    s->next++;
    return MV_OK;
}

int st_stream_end(StStream *s) {
    int ok;
    if (!s->fp) return mv_fail("safetensors stream: not open");
    if (s->next != s->w->count) {
        mv_fail("%s: %lu of %lu declared tensors written", s->path, (unsigned long)s->next, (unsigned long)s->w->count);
        st_stream_abort(s);
        return MV_ERR;
    }
    ok = fclose(s->fp) == 0;
    s->fp = NULL;
    if (!ok) { mv_fail("%s: write failed (disk full?); nothing was written", s->path); st_stream_abort(s); return MV_ERR; }
    if (mv_replace_file(s->tmp, s->path) != 0) {
        mv_fail("%s: cannot rename the finished file into place", s->path);
        st_stream_abort(s);
        return MV_ERR;
    }
    free(s->path); free(s->tmp);
    memset(s, 0, sizeof *s);
    return MV_OK;
}

void st_stream_abort(StStream *s) {
    if (s->fp) fclose(s->fp);
    if (s->tmp) remove(s->tmp);
    free(s->path); free(s->tmp);
    memset(s, 0, sizeof *s);
}

int st_writer_save(const StWriter *w, const char *path) {
    StStream s;
    size_t i;
    for (i = 0; i < w->count; i++)
        if (!w->items[i].bytes) return mv_fail("%s: tensor '%s' was declared for streaming (st_stream_begin)", path, w->items[i].name);
    if (st_stream_begin(&s, w, path)) return MV_ERR;
    for (i = 0; i < w->count; i++)
        if (st_stream_put(&s, w->items[i].bytes, w->items[i].nbytes)) return MV_ERR;
    return st_stream_end(&s);
}

void st_writer_free(StWriter *w) {
    size_t i;
    for (i = 0; i < w->count; i++) { free(w->items[i].name); free(w->items[i].bytes); }
    for (i = 0; i < w->nmeta; i++) { free(w->meta_keys[i]); free(w->meta_values[i]); }
    free(w->items);
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}
