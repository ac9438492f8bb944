// tensor.h: the tiny tensor. Contiguous, row-major (last axis fastest), up to 6 axes,
// elements of the build's type `real`. A Tensor either owns its data (tensor_alloc) or is a
// view into memory owned by someone else (an arena); `owned` says which.
#ifndef MAVREF_TENSOR_H
#define MAVREF_TENSOR_H

#include "mavref.h"

#define MV_MAXDIM 6

typedef struct {
    int ndim;                 // 0..MV_MAXDIM
    size_t shape[MV_MAXDIM];  // shape[0] is the slowest axis
    size_t numel;             // product of shape (1 for a scalar)
    real *data;               // (shape...) row-major
    int owned;                // 1 if tensor_free must free data
} Tensor;

// Allocate a zero-filled tensor. Checks every multiplication for overflow.
int tensor_alloc(Tensor *t, int ndim, const size_t *shape);
// Same with the shape spelled out: tensor_alloc_v(&t, 3, B, T, C).
int tensor_alloc_v(Tensor *t, int ndim, ...);
void tensor_free(Tensor *t);
// Product of a shape, checked; MV_ERR on overflow.
int shape_numel(size_t *numel, int ndim, const size_t *shape);
// 1 if shapes are equal.
int tensor_same_shape(const Tensor *a, const Tensor *b);
// Writes "(2, 3, 4)" into buf.
const char *shape_str(char *buf, size_t cap, int ndim, const size_t *shape);
// MV_ERR with a message naming `what` unless t has exactly the given shape.
int tensor_expect_shape(const Tensor *t, const char *what, int ndim, ...);

#endif
