// upsample.c: nearest-neighbour resize (a pure copy: exact in every precision) and its backward.
#include "upsample.h"

#include <string.h>

#include "threads.h"

typedef struct {
    real *out;       // (N,Ho,Wo,C)
    const real *in;  // (N,H,W,C)
    size_t H, W, Ho, Wo, C;
} ResizeJob;

// Output rows [begin, end) of the (N*Ho) rows: a copy each, so blocks of rows run in parallel.
static void resize_rows(void *ctx, size_t begin, size_t end) {
    const ResizeJob *r = (const ResizeJob *)ctx;
    size_t q, j;
    for (q = begin; q < end; q++) {
        size_t n = q / r->Ho, i = q % r->Ho;
        size_t si = ((2 * i + 1) * r->H) / (2 * r->Ho); // floor((i + 0.5) * H / Ho)
        for (j = 0; j < r->Wo; j++) {
            size_t sj = ((2 * j + 1) * r->W) / (2 * r->Wo);
            memcpy(r->out + (q * r->Wo + j) * r->C, r->in + ((n * r->H + si) * r->W + sj) * r->C, r->C * sizeof(real));
        }
    }
}

void resize_nearest_forward(real *out, const real *in,
                            size_t N, size_t H, size_t W, size_t Ho, size_t Wo, size_t C) {
    ResizeJob r;
    r.out = out; r.in = in; r.H = H; r.W = W; r.Ho = Ho; r.Wo = Wo; r.C = C;
    parallel_range(N * Ho, 16384 / (Wo * C + 1) + 1, resize_rows, &r);
}

void upsample_nearest2x_forward(real *out, const real *in, size_t N, size_t H, size_t W, size_t C) {
    resize_nearest_forward(out, in, N, H, W, 2 * H, 2 * W, C);
}

void resize_nearest_backward(real *dinp, const real *dout,
                             size_t N, size_t H, size_t W, size_t Ho, size_t Wo, size_t C) {
    size_t n, i, j, c;
    for (n = 0; n < N; n++)
        for (i = 0; i < Ho; i++) {
            size_t si = ((2 * i + 1) * H) / (2 * Ho);
            for (j = 0; j < Wo; j++) {
                size_t sj = ((2 * j + 1) * W) / (2 * Wo);
                // forward was: out[n,i,j] = in[n,si,sj], so din[n,si,sj] += dout[n,i,j]
                const real *dy = dout + ((n * Ho + i) * Wo + j) * C; // (C)
                real *dx = dinp + ((n * H + si) * W + sj) * C;       // (C)
                for (c = 0; c < C; c++) dx[c] += dy[c];
            }
        }
}

void upsample_nearest2x_backward(real *dinp, const real *dout, size_t N, size_t H, size_t W, size_t C) {
    // each input pixel (i,j) was copied to (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1): its
    // gradient sums those 4 (added in that order, row by row)
    resize_nearest_backward(dinp, dout, N, H, W, 2 * H, 2 * W, C);
}
