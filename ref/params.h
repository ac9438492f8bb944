// params.h: one parameter arena with named views.
//
// A model first declares every parameter it has (name and shape) with params_add; then
// params_alloc makes one allocation holding all of them, and each parameter is a Tensor view
// into it. Loading checks that a file has exactly these tensors with exactly these shapes.
#ifndef MAVREF_PARAMS_H
#define MAVREF_PARAMS_H

#include "safetensors.h"
#include "tensor.h"

typedef struct {
    char *name;   // Flax path joined with '.', e.g. "conv_in.spatial_conv.kernel"
    Tensor t;     // a view into the arena once allocated
    size_t offset;// element offset of the view in the arena
} Param;

typedef struct {
    size_t count, cap;
    Param *p;       // (count)
    size_t numel;   // total elements
    real *arena;    // (numel), one allocation
    // A gradient table of a subset of a model's parameters (params_grads_subset) also maps
    // each parameter k of the model (model_count of them) to its gradient:
    real **slot;        // (model_count) a view into this arena (kept), a buffer a backward
                        // lends it for one block (see sq), or NULL (no gradient computed)
    double *sq;         // (model_count) the squared norm of each lent gradient, taken by the
                        // backward before it frees the buffer; NULL: lend none (frozen
                        // parameters get no weight gradient at all)
    size_t model_count;
} ParamTable;

void params_init(ParamTable *pt);
// Declare a parameter; the name is printf-formatted. MV_ERR on overflow or duplicate.
int params_add(ParamTable *pt, int ndim, const size_t *shape, const char *fmt, ...) MV_PRINTF(4, 5);
int params_alloc(ParamTable *pt);
void free_params(ParamTable *pt);
// The view of a parameter by name, or NULL with a message naming it.
Tensor *params_get(ParamTable *pt, const char *name);
// Like params_get with a printf-formatted name.
Tensor *params_getf(ParamTable *pt, const char *fmt, ...) MV_PRINTF(2, 3);
// Load every parameter from a safetensors file. Fails, naming the tensor, on a missing
// tensor, a shape mismatch, or (unless allow_extra) a tensor the model does not have.
int params_load(ParamTable *pt, const char *path, int allow_extra);

// Gradient tables. The full table has the model's layout (every parameter at the same
// offset; unet_grads_alloc). A subset table holds only the parameters keep[k] != 0 of the
// model pt, packed in the model's order; with lend_norms, the backward computes the other
// gradients too, one block at a time in a lent buffer, and keeps only their squared norms (sq).
int params_grads_subset(ParamTable *g, const ParamTable *pt, const unsigned char *keep, int lend_norms);
// Where the gradient of the model's value at `w` (inside pt's arena) lives in gt: NULL when gt
// is NULL or keeps no gradient for that parameter.
real *params_grad_slot(const ParamTable *pt, ParamTable *gt, const real *w);
// The index of the model's parameter holding the value at `w` (inside pt's arena).
size_t params_index_of(const ParamTable *pt, const real *w);


// The corpus' procedural weights (SPEC.md section 5.6): every parameter is
// proc_fill(name, seed, scale, offset) with, by the last component of its name,
//   kernel: scale sqrt(3 / fan_in), fan_in = product of all but the last axis, offset 0
//   bias:   scale 0.1, offset 0
//   scale:  scale 0.1, offset 1          (GroupNorm / LayerNorm gains)
//   embedding: scale 1, offset 0         (CLIP's token and position tables)
// Other names are an error. The rule and ref/procedural.c together give the exporter's values.
int params_procedural(ParamTable *pt, uint64_t seed);
// The (scale, offset) the rule gives a parameter.
int params_proc_rule(const Param *p, double *scale, double *offset);

#endif
