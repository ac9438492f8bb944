// ckpt_map.h: one mapping from the names and layouts a checkpoint is published in to the
// Flax names mavref's parameter tables use, applied while loading.
//
// Stored names come in four families:
//   Flax       the Flax path joined with '.' (mavref's safetensors) or '/' (Flax msgpack)
//   diffusers  PyTorch UNet / AutoencoderKL names, "down_blocks.0.resnets.1.conv1.weight"
//   transformers  PyTorch CLIPTextModel names, "text_model.encoder.layers.0.mlp.fc1.weight"
//   LDM        the single-file original checkpoint, "model.diffusion_model.input_blocks.1.0..."
//              (first rewritten to diffusers names as diffusers' own converter does).
// The rules are those of the libraries' PyTorch-to-Flax loaders (diffusers and transformers
// modeling_flax_pytorch_utils.py): "a.N" -> "a_N" (diffusers only), norm `weight`/`gamma` ->
// `scale` where the model has a scale, `weight` -> `embedding` where it has one (CLIP),
// 4-D conv `weight` (O,I,H,W) -> `kernel` (H,W,I,O), any other `weight` -> `kernel` with its
// axes reversed (Linear (O,I) -> (I,O); the temporal Conv1d (O,I,3) -> (3,I,O)), the VAE
// attention's `to_q/to_k/to_v/to_out.0` -> `query/key/value/proj_attn` (also as 1x1 convs
// (C,C,1,1)). Buffers (`position_ids`, ...) are skipped by name. mavref's UNet nests every
// 2-D conv as `X.spatial_conv`; a Flax or PyTorch `X.kernel` of SD 1.5 finds it there.
#ifndef MAVREF_CKPT_MAP_H
#define MAVREF_CKPT_MAP_H

#include "checkpoint.h"
#include "params.h"

typedef enum {
    CKM_DIFFUSERS,    // UNet (pseudo-3D or 2-D) and AutoencoderKL
    CKM_TRANSFORMERS  // CLIPTextModel
} CkmFamily;

// How a stored tensor becomes its Flax view.
typedef struct {
    int ndim;               // axes of the stored tensor that are kept (a (C,C,1,1) 1x1 conv as (C,C) has 2)
    int perm[MV_MAXDIM];    // Flax axis i is stored axis perm[i]
    int identity;           // perm is the identity: the stored bytes are the Flax bytes
} CkmLayout;

// Map one stored name (shape `shape`, ndim axes) to the Flax name of a parameter of pt.
// Returns 1 and fills flax/layout when it maps to a parameter with the right shape; 0 when the
// name is a buffer to skip (flax gets ""), and MV_ERR with a message naming both the stored
// and the Flax name when it maps to no parameter or to one of another shape.
int ckm_map(char *flax, size_t cap, CkmLayout *layout, const ParamTable *pt, CkmFamily fam,
            const char *stored, int ndim, const size_t *shape, const char *path);

// The other direction, for mavref convert --names torch: the PyTorch name of parameter p
// (diffusers: "down_blocks_0" -> "down_blocks.0" for its ModuleLists and Sequentials; every
// family: kernel, scale, embedding -> weight; strip_spatial: SD 1.5's 2-D UNet has no
// "spatial_conv" level) and the layout that takes the Flax tensor to PyTorch's (Flax HWIO ->
// OIHW, other kernels' axes reversed). The VAE attention keeps the names query/key/value/
// proj_attn, as diffusers 0.16 (upstream's) writes them; transformers' CLIP names need only the
// leaf. Loading the result maps it back to p exactly.
int ckm_torch_name(char *out, size_t cap, CkmLayout *layout, const Param *p, CkmFamily fam, int strip_spatial);

// Rewrite an LDM single-file name to its diffusers name (UNet, VAE or CLIP, as
// scripts/convert_original_stable_diffusion_to_diffusers.py does). Returns 1 with the
// component ('u' UNet, 'v' VAE, 'c' CLIP) and the name; 0 for a name of no component
// (EMA copies, the LDM's own buffers); MV_ERR on a malformed name. The UNet layout needs
// the number of layers per block and of blocks (input_blocks indices depend on them).
int ckm_ldm_name(char *out, size_t cap, char *component, const char *ldm, int layers_per_block, int n_blocks);

// A checkpoint as a list of stored tensors and a way to read one in its stored layout (C order,
// widened exactly to `real`). Format readers (safetensors, msgpack, torch zip) provide it.
typedef struct {
    const char *name;
    int ndim;
    size_t shape[MV_MAXDIM];
    size_t numel;
} CkmTensor;

typedef struct {
    const char *path;  // for messages
    size_t count;
    CkmTensor *t;      // (count)
    void *ctx;
    int (*read)(void *ctx, size_t i, real *dst); // (t[i].numel) stored layout
} CkmSource;

// Load every parameter of pt from src through the mapping (pt declared; allocated here if it is
// not yet, after the mapping was checked, so that a wrong file costs no memory): each tensor is read into the arena
// view directly when the layout is the identity, else through one scratch buffer of its size
// and permuted into the view (the arena is never held twice). A parameter no tensor maps to,
// two tensors mapping to one parameter, or (unless allow_extra) a tensor that maps to no
// parameter: MV_ERR naming the file, the stored and the Flax name. `prefix` (may be NULL)
// selects and strips stored names that start with it; `ldm` != 0 first rewrites LDM names,
// keeping those of component `ldm` ('u', 'v', 'c'), with the UNet sizes given.
typedef struct {
    CkmFamily family;
    const char *prefix;
    char ldm;
    int ldm_layers, ldm_blocks;
    int allow_extra;
} CkmOptions;
int ckm_load(ParamTable *pt, const CkmSource *src, const CkmOptions *opt);

// What ckm_load does, decided from the names and shapes alone (nothing is read, pt need not be
// allocated): stored tensor i fills parameter param[i] (CKM_NONE: skipped, a buffer or another
// component's) through layout[i], and parameter k is filled from stored tensor source[k].
// The same checks and messages as ckm_load. mavref convert writes a file by this plan.
#define CKM_NONE ((size_t)-1)
typedef struct {
    size_t *param;      // (src->count)
    CkmLayout *layout;  // (src->count)
    size_t *source;     // (pt->count)
} CkmPlan;
int ckm_plan(CkmPlan *plan, const ParamTable *pt, const CkmSource *src, const CkmOptions *opt);
void ckm_plan_free(CkmPlan *plan);
// dst (the Flax shape) <- src (the stored shape `shape`), elements of esize bytes: Flax axis i
// is stored axis l->perm[i].
void ckm_permute(void *dst, const void *src, size_t esize, const CkmLayout *l, const size_t *shape);

// Any checkpoint file ck_open reads (safetensors, Flax msgpack, torch zip) as a CkmSource.
// ckm_close frees what ckm_open made; the struct must not move while open.
typedef struct {
    CkFile f;
    CkmSource src;
} CkmFile;
int ckm_open(CkmFile *s, const char *path);
void ckm_close(CkmFile *s);

#endif
