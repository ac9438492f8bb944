// checkpoint.h: one tensor index over every weight file mavref reads: safetensors, Flax msgpack
// (flax.serialization.to_bytes), and torch.save zip archives (a restricted unpickler).
//
// ck_open sniffs the format from the file's first bytes (never its name), indexes every tensor
// by its byte offsets (nothing is read into memory but the small index, so a 4.4 GB file costs
// kilobytes), and validates the whole index against the file's size before returning: a file
// that opens can be read. Names:
//   safetensors  the names as stored;
//   msgpack      nested map keys joined with '/', e.g. down_blocks_0/resnets_0/conv1/spatial_conv/kernel
//                (arrays inside the tree are named by their index; flax's chunked arrays are
//                one tensor; native ints/floats/bools are 0-d tensors; nil leaves are skipped);
//   torch zip    the state dict's keys as stored, e.g. down_blocks.0.resnets.0.conv1.weight
//                (nested dicts, as in an LDM .ckpt's 'state_dict', joined with '/'; leaves that
//                are not tensors, such as 'epoch', are skipped).
// Shapes are as stored: no layout change here (the name and layout mapping is a separate layer).
// All data is decoded from explicit little-endian (big-endian for msgpack's own lengths) bytes,
// so the readers are correct on big-endian hosts too.
#ifndef MAVREF_CHECKPOINT_H
#define MAVREF_CHECKPOINT_H

#include <stdio.h>

#include "safetensors.h"

typedef enum { CK_SAFETENSORS, CK_MSGPACK, CK_TORCH_ZIP } CkFormat;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    size_t shape[MV_MAXDIM];
    size_t numel;
    // private: where the elements are
    uint64_t offset;           // file offset of the first element (torch: of the storage)
    size_t seg, nseg;          // chunked msgpack arrays: pieces f->segs[seg .. seg+nseg), else nseg 0
    int strided;               // torch: element (i..) at offset + esize*(storage_offset + sum_k i_k*stride[k])
    size_t storage_offset;     // in elements
    size_t stride[MV_MAXDIM];  // in elements
    int big_endian;            // torch archives written on a big-endian host (their 'byteorder' record)
    int inline_value;          // msgpack native scalars: the value is `value` (little-endian), not in the file
    unsigned char value[8];
} CkEntry;

typedef struct { uint64_t offset; size_t numel; } CkSegment; // one chunk of a chunked msgpack array

typedef struct {
    char *path;
    CkFormat format;
    size_t count;
    CkEntry *entries;   // (count) in file order
    // private
    FILE *fp;
    uint64_t size;      // the file's size in bytes
    size_t nsegs;
    CkSegment *segs;    // (nsegs)
    CkEntry **by_name;  // (count) sorted by name, for ck_find
} CkFile;

// Sniff the format by content, index it, validate everything; every error names the file.
int ck_open(CkFile *f, const char *path);
void ck_close(CkFile *f);
const char *ck_format_name(CkFormat fmt); // "safetensors", "Flax msgpack", "torch zip"
const CkEntry *ck_find(const CkFile *f, const char *name); // NULL if absent
// numel reals in C order, the dtype widened exactly (F16/BF16/F32; F64 rounded in float32
// builds); integer and BOOL values only when `real` holds them exactly, else an error naming
// the value. Errors name the file and the tensor.
int ck_read_into(const CkFile *f, const CkEntry *e, real *dst);
// The same as doubles (exact for every float dtype; integers beyond 2^53 refused), for tools and tests.
int ck_read_f64(const CkFile *f, const CkEntry *e, double *dst);
// The elements as stored, numel * st_dtype_size(e->dtype) bytes in C order, little-endian
// whatever the file's or the host's byte order (mavref convert copies them unchanged).
int ck_read_raw(const CkFile *f, const CkEntry *e, unsigned char *dst);
// The zip CRC-32 (polynomial 0xEDB88320) of n bytes: torch.save members are checked with it;
// the tests and the fuzzer build archives with it.
uint32_t ck_crc32(const unsigned char *b, size_t n);

#endif
