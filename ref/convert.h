// convert.h: `mavref convert`: one network's weights, in any format mavref reads, rewritten as
// a safetensors file by mavref's Flax names, so that a backend author has the real weights in
// one plain format.
//
// The names and layouts are those the loaders map to (ref/ckpt_map.h, the same ckm_plan): the
// output holds exactly the parameters of the network's table (ref/unet_params.c, vae.c,
// clip.c), each with its Flax name and shape, and loads with params_load (`--weights`,
// `--unet`, `--vae`, `--clip`) to the same values --model loads. Buffers (position_ids, ...)
// and a single file's other components are left out. The dtype is kept as stored (float16
// stays float16, bfloat16 stays bfloat16) unless widen asks for float32, which is exact.
//
// The file is written tensor by tensor: the header is computed from the plan first, then each
// tensor is read, permuted and written in turn, so memory holds one tensor (twice, when it is
// permuted), never the network. Output goes to OUT.tmp, renamed to OUT when complete; on any
// failure OUT.tmp is removed and OUT is left as it was.
#ifndef MAVREF_CONVERT_H
#define MAVREF_CONVERT_H

#include "checkpoint.h"

typedef struct {
    const char *in;        // a weight file (safetensors, Flax msgpack, torch zip; a single-file
                           // LDM checkpoint) or a model folder (then component is needed)
    const char *out;       // the safetensors file to write
    const char *component; // "unet" (pseudo-3D if the file has temporal layers, else 2-D),
                           // "unet2d", "vae", "text_encoder"; NULL: inferred from the names
    const char *config;    // the component's config.json; NULL: DIR/<component>/config.json for
                           // a folder, config.json beside a file, else the published model's
    int stored_names;      // 1: every tensor with its stored name, shape and layout (no mapping;
                           // component only picks a folder's weight file)
    int torch_names;       // 1: the network's parameters by their PyTorch (diffusers, transformers)
                           // names and in PyTorch's layouts (ckm_torch_name): the other direction
    int widen;             // 1: float16 and bfloat16 written as float32 (exact); other dtypes kept
} ConvertOptions;

typedef struct {
    char weights[4096];    // the file read
    char config[4096];     // the config.json used, "" for the built-in defaults
    const char *component; // as resolved: "unet", "unet2d", "vae", "text_encoder" ("" stored names)
    int ldm;               // read as a single-file LDM checkpoint
    CkFormat format;       // of the file read
    size_t tensors;        // written
    size_t skipped;        // stored tensors not written (buffers, other components)
    int writing;           // the failure, if any, was in writing OUT (not in reading the input)
} ConvertResult;

// 0, or MV_ERR with a message naming the file and the problem (r->writing tells a bad input
// from a failed write).
int convert_checkpoint(const ConvertOptions *o, ConvertResult *r);

#endif
