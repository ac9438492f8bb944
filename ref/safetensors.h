// safetensors.h: reading and writing the safetensors format in plain C.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
//   {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the data region; offsets are relative to its start. Everything is little-endian;
// this code decodes bytes explicitly, so it is correct on big-endian hosts too.
#ifndef MAVREF_SAFETENSORS_H
#define MAVREF_SAFETENSORS_H

#include <stdio.h>

#include "tensor.h"

// The first seven values are fixed (files and tests name them); the others were added for the
// checkpoint readers (ref/checkpoint.h), which meet every dtype numpy and torch can store.
typedef enum { ST_F32, ST_F64, ST_F16, ST_BF16, ST_I32, ST_I64, ST_U8,
               ST_I8, ST_I16, ST_U16, ST_U32, ST_U64, ST_BOOL, ST_NDTYPES } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    size_t shape[MV_MAXDIM];
    size_t numel;
    uint64_t begin, end; // byte offsets within the data region
} StEntry;

typedef struct {
    char *path;
    FILE *fp;
    uint64_t data_start; // 8 + N
    size_t count;
    StEntry *entries;    // (count) in header order
    size_t nmeta;
    char **meta_keys;    // (nmeta)
    char **meta_values;  // (nmeta)
} StFile;

// Open and validate a file: header JSON, dtypes, shapes, offsets against the file's size.
// Every error names the file.
int st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StEntry *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key); // NULL if absent
const char *st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);

// Read a tensor, converting its dtype to `real`. Errors name the file and the tensor.
int st_read(const StFile *f, const char *name, Tensor *out);
// Read into existing memory of exactly the expected shape (an arena view).
int st_read_into(const StFile *f, const char *name, const Tensor *dst);
// Read a tensor as doubles (exact for every dtype but I64 beyond 2^53), for tools.
int st_read_f64(const StFile *f, const StEntry *e, double *out);
// Read an integer tensor (any integer dtype or BOOL; U64 beyond 2^63 refused) exactly.
int st_read_i64(const StFile *f, const char *name, int64_t **out, size_t *numel);

// One element of dtype d stored little-endian at b, as a double (exact but for 64-bit
// integers beyond 2^53). Shared with the checkpoint readers.
double st_decode(const unsigned char *b, StDtype d);
// double -> IEEE half bits, rounded to nearest (ties to even); st_decode widens it back exactly.
uint16_t st_f16_from_double(double x);
double st_f16_to_double(uint16_t h); // exact
// Seek to a 64-bit offset, past 4 GiB on every platform (mv_seek, port.h).
int st_seek(FILE *fp, uint64_t off);

// Writer: collects tensors (copied) and metadata, then writes to PATH.tmp and renames it
// to PATH, so a failure never leaves a partial file under the final name.
typedef struct StWriterItem StWriterItem;
typedef struct {
    size_t count, cap;
    StWriterItem *items;
    size_t nmeta;
    char **meta_keys, **meta_values;
} StWriter;

void st_writer_init(StWriter *w);
// Adds a tensor stored as `dtype` (ST_F32, ST_F64 or ST_F16 for reals; F16 rounds to nearest even).
int st_writer_add(StWriter *w, const char *name, const Tensor *t, StDtype dtype);
int st_writer_add_i64(StWriter *w, const char *name, const int64_t *v, int ndim, const size_t *shape);
int st_writer_add_u8(StWriter *w, const char *name, const unsigned char *v, int ndim, const size_t *shape);
int st_writer_meta(StWriter *w, const char *key, const char *value);
int st_writer_save(const StWriter *w, const char *path);
void st_writer_free(StWriter *w);

// Streaming, for files too large to hold (mavref convert): declare every tensor (name, dtype,
// shape) first, so the header can be written; then st_stream_begin writes PATH.tmp's header
// and st_stream_put each tensor's little-endian bytes in the order declared; st_stream_end
// checks that all were written and renames PATH.tmp to PATH. Any failure (and
// st_stream_abort) removes PATH.tmp and leaves PATH as it was.
int st_writer_declare(StWriter *w, const char *name, StDtype dtype, int ndim, const size_t *shape);
typedef struct {
    const StWriter *w; // the declarations (must outlive the stream)
    FILE *fp;
    char *path, *tmp;
    size_t next;       // the next tensor to put
} StStream;
int st_stream_begin(StStream *s, const StWriter *w, const char *path);
int st_stream_put(StStream *s, const unsigned char *bytes, size_t nbytes);
int st_stream_end(StStream *s);
void st_stream_abort(StStream *s);

// The build's natural storage dtype (F32 or F64).
#if MAVREF_PRECISION == 64
#define ST_REAL ST_F64
#else
#define ST_REAL ST_F32
#endif

#endif
