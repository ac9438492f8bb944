// conv_fast.c: the fast path of the convolutions (conv.h), the plain loops of conv.c as
// matrix products (ref/gemm.c). Each public function starts at the door (engine.h): with
// engine_reference() it runs the plain loop instead.
#include "conv.h"
#include "engine.h"
#include "gemm.h"
#include "threads.h"

#include <stdlib.h>
#include <string.h>

// Fill y with the bias (or zeros), the start value of the products; blocks of rows in parallel.
typedef struct {
    real *y;          // (P,Co)
    const real *bias; // (Co) or NULL
    size_t Co;
} BiasFill;
static void bias_rows(void *ctx, size_t begin, size_t end) { // rows [begin, end)
    const BiasFill *f = (const BiasFill *)ctx;
    size_t p;
    for (p = begin; p < end; p++) {
        real *y = f->y + p * f->Co; // (Co)
        if (f->bias) memcpy(y, f->bias, f->Co * sizeof(real));
        else memset(y, 0, f->Co * sizeof(real));
    }
}
static void fill_bias(real *y, const real *bias, size_t P, size_t Co) { // (P,Co) (Co)
    BiasFill f;
    f.y = y; f.bias = bias; f.Co = Co;
    parallel_range(P, 16384 / (Co + 1) + 1, bias_rows, &f);
}

// The fast path. A convolution is a matrix product of patches and the kernel: row p of the
// patch matrix holds, for output pixel p, the KH*KW*Ci inputs under the kernel (zeros in the
// padding), in the kernel's (kh, kw, c) order, so that out = bias + patches (P, KH*KW*Ci) x
// kernel (KH*KW*Ci, Co). The patch matrix is never built: gemm packs its rows straight from
// the image (conv_runs says where they are), one product for all the pixels.
// A 1x1 stride-1 convolution without padding is a plain product of the image and the kernel.
typedef struct {
    const real *in; // (N,H,W,Ci)
    size_t H, W, Ci, Ho, Wo;
    const Conv2dGeom *g;
} ConvRuns;

// Row q (output pixel), column p = (kh*KW + kw)*Ci + c of the patch matrix: the input pixel
// under tap (kh,kw), channel c on. Taps along a row of the image are contiguous in memory
// (the kernel's order is the image's), so a run goes on over the following kw while they
// stay inside the image.
static const real *conv_runs(void *ctx, size_t q, size_t p, size_t *run) {
    const ConvRuns *r = (const ConvRuns *)ctx;
    const Conv2dGeom *g = r->g;
    size_t tap = p / r->Ci, c = p % r->Ci, kh = tap / g->KW, kw = tap % g->KW;
    size_t j = q % r->Wo, i = (q / r->Wo) % r->Ho, n = q / (r->Wo * r->Ho);
    size_t hi = i * g->stride + kh, wi = j * g->stride + kw, k; // in the padded input
    if (hi < g->pad_top || hi - g->pad_top >= r->H || wi < g->pad_left || wi - g->pad_left >= r->W) {
        *run = r->Ci - c; // padding: zeros to the end of this tap
        return NULL;
    }
    for (k = kw + 1; k < g->KW && wi + (k - kw) - g->pad_left < r->W; k++) {} // taps inside the image
    *run = (k - kw) * r->Ci - c;
    return r->in + ((n * r->H + (hi - g->pad_top)) * r->W + (wi - g->pad_left)) * r->Ci + c;
}

void conv2d_forward(real *out, const real *in, const real *kernel, const real *bias,
                    size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0, K, P;
    ConvRuns r;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return; // callers validate first
    if (engine_reference()) { conv2d_forward_ref(out, in, kernel, bias, N, H, W, Ci, Co, g); return; }
    K = g->KH * g->KW * Ci;
    P = N * Ho * Wo;
    fill_bias(out, bias, P, Co);
    if (g->KH == 1 && g->KW == 1 && g->stride == 1 && !g->pad_top && !g->pad_left && Ho == H && Wo == W) {
        gemm(out, in, kernel, P, Co, Ci, Co, Ci, Co, GEMM_ACC);
        return;
    }
    r.in = in; r.H = H; r.W = W; r.Ci = Ci; r.Ho = Ho; r.Wo = Wo; r.g = g;
    gemm_runs(out, conv_runs, &r, kernel, P, Co, K, Co, Co, GEMM_ACC);
}

// The fast path: out[b,f] (S,Co) = bias + sum over the three taps of in[b,f+k-1] (S,Ci) x
// kernel[k] (Ci,Co). For one tap and clip that is one product over the frames that have the
// tap: the rows of out[b, f0..f1) and in[b, f0+k-1 ..) are contiguous. Each tap's kernel is
// packed once for all clips; taps go in increasing k, so every element adds tap 0, 1, 2 in
// that order, as the plain loop does.
void temporal_conv_forward(real *out, const real *in, const real *kernel, const real *bias,
                           size_t B, size_t F, size_t S, size_t Ci, size_t Co) {
    size_t b, k;
    if (engine_reference()) { temporal_conv_forward_ref(out, in, kernel, bias, B, F, S, Ci, Co); return; }
    fill_bias(out, bias, B * F * S, Co);
    for (k = 0; k < 3; k++) {
        size_t f0 = k == 0 ? 1 : 0, f1 = k == 2 ? F - 1 : F; // frames f whose f+k-1 is a frame
        GemmPackedB pk;
        if (f0 >= f1) continue;
        gemm_pack_b(&pk, kernel + k * Ci * Co, Ci, Co, Co, 0);
        for (b = 0; b < B; b++)
            gemm_packed(out + (b * F + f0) * S * Co, in + (b * F + f0 + k - 1) * S * Ci, &pk, (f1 - f0) * S, Co, Ci, GEMM_ACC);
        gemm_packed_b_free(&pk);
    }
}

// ---------------------------------------------------------------------------------------
// Backward.

// The fast path, the forward's matrix product read backwards. Per tile of output pixels,
// with patches (np, KH*KW*Ci) built as in conv2d_forward and dy the tile's rows of dout:
//   dkernel (KH*KW*Ci, Co) += patches^T x dy                (GEMM_TA)
//   dpatches (np, KH*KW*Ci) = dy x kernel^T                 (GEMM_TB)
// then each row of dpatches is added back where its patch came from (col2im), pixel by pixel
// and tap by tap in the plain loop's order; the padding's entries are dropped. Tiles are whole
// multiples of GEMM_KC pixels, so dkernel gets the same sums as from one product over all
// pixels, whatever the tile. A 1x1 stride-1 convolution without padding needs no patches:
//   dinp (P,Ci) += dout x kernel^T,   dkernel (Ci,Co) += inp^T x dout.
#define CONV_BWD_TILE_PIXELS (4 * GEMM_KC)
void conv2d_backward(real *dinp, real *dkernel, real *dbias,
                     const real *dout, const real *inp, const real *kernel,
                     size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0, K, P, p0, np, p, kh, kw, c, o;
    real *patch;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return; // callers validate first
    if (engine_reference()) { conv2d_backward_ref(dinp, dkernel, dbias, dout, inp, kernel, N, H, W, Ci, Co, g); return; }
    K = g->KH * g->KW * Ci;
    P = N * Ho * Wo;
    // forward was: y = bias (+ ...), so dbias += the column sums of dout (pixels in order)
    if (dbias)
        for (p = 0; p < P; p++)
            for (o = 0; o < Co; o++) dbias[o] += dout[p * Co + o];
    if (!dinp && !dkernel) return;
    if (g->KH == 1 && g->KW == 1 && g->stride == 1 && !g->pad_top && !g->pad_left && Ho == H && Wo == W) {
        if (dinp) gemm(dinp, dout, kernel, P, Ci, Co, Ci, Co, Co, GEMM_TB | GEMM_ACC);
        if (dkernel) gemm(dkernel, inp, dout, Ci, Co, P, Co, Ci, Co, GEMM_TA | GEMM_ACC);
        return;
    }
    patch = (real *)malloc((P < CONV_BWD_TILE_PIXELS ? P : CONV_BWD_TILE_PIXELS) * K * sizeof(real)); // (tile,KH,KW,Ci)
    if (!patch) { conv2d_backward_ref(dinp, dkernel, NULL, dout, inp, kernel, N, H, W, Ci, Co, g); return; }
    for (p0 = 0; p0 < P; p0 += np) {
        const real *dy = dout + p0 * Co; // (np,Co)
        np = P - p0 < CONV_BWD_TILE_PIXELS ? P - p0 : CONV_BWD_TILE_PIXELS;
        if (dkernel) {
            for (p = 0; p < np; p++) { // the forward's patches of this tile
                size_t q = p0 + p, j = q % Wo, i = (q / Wo) % Ho, n = q / (Wo * Ho);
                real *row = patch + p * K; // (KH,KW,Ci)
                for (kh = 0; kh < g->KH; kh++) {
                    size_t hi = i * g->stride + kh; // row in the padded input
                    for (kw = 0; kw < g->KW; kw++) {
                        size_t wi = j * g->stride + kw;
                        real *dst = row + (kh * g->KW + kw) * Ci;
                        if (hi < g->pad_top || hi - g->pad_top >= H || wi < g->pad_left || wi - g->pad_left >= W)
                            memset(dst, 0, Ci * sizeof(real));
                        else
                            memcpy(dst, inp + ((n * H + (hi - g->pad_top)) * W + (wi - g->pad_left)) * Ci, Ci * sizeof(real));
                    }
                }
            }
            gemm(dkernel, patch, dy, K, Co, np, Co, K, Co, GEMM_TA | GEMM_ACC);
        }
        if (dinp) {
            gemm(patch, dy, kernel, np, K, Co, K, Co, Co, GEMM_TB); // dpatches, reusing the buffer
            for (p = 0; p < np; p++) { // col2im: scatter-add each patch row back to its inputs
                size_t q = p0 + p, j = q % Wo, i = (q / Wo) % Ho, n = q / (Wo * Ho);
                const real *row = patch + p * K; // (KH,KW,Ci)
                for (kh = 0; kh < g->KH; kh++) {
                    size_t hi = i * g->stride + kh;
                    if (hi < g->pad_top || hi - g->pad_top >= H) continue; // zero padding: no gradient
                    for (kw = 0; kw < g->KW; kw++) {
                        size_t wi = j * g->stride + kw;
                        const real *src = row + (kh * g->KW + kw) * Ci; // (Ci)
                        real *dx;
                        if (wi < g->pad_left || wi - g->pad_left >= W) continue;
                        dx = dinp + ((n * H + (hi - g->pad_top)) * W + (wi - g->pad_left)) * Ci; // (Ci)
                        for (c = 0; c < Ci; c++) dx[c] += src[c];
                    }
                }
            }
        }
    }
    free(patch);
}

// The fast path: tap k joins output frame f to input frame f+k-1, so for each clip the frames
// that have a partner form one block of rows, and per clip and tap
//   dkernel[k] (Ci,Co) += in[frames f+k-1]^T x dout[frames f]        (GEMM_TA)
//   dinp[frames f+k-1] (rows,Ci) += dout[frames f] x kernel[k]^T    (GEMM_TB)
// over all (f, s) rows of the block at once. Clips and taps go in a fixed order.
void temporal_conv_backward(real *dinp, real *dkernel, real *dbias,
                            const real *dout, const real *inp, const real *kernel,
                            size_t B, size_t F, size_t S, size_t Ci, size_t Co) {
    size_t b, k, n, o;
    if (F == 0) return;
    if (engine_reference()) { temporal_conv_backward_ref(dinp, dkernel, dbias, dout, inp, kernel, B, F, S, Ci, Co); return; }
    // forward was: y = bias (+ ...), so dbias += the column sums of dout (rows in order)
    if (dbias)
        for (n = 0; n < B * F * S; n++)
            for (o = 0; o < Co; o++) dbias[o] += dout[n * Co + o];
    for (b = 0; b < B; b++)
        for (k = 0; k < 3; k++) {
            size_t f0 = k == 0 ? 1 : 0, f1 = k == 2 ? F - 1 : F; // output frames [f0, f1) have frame f+k-1
            size_t rows = (f1 > f0 ? f1 - f0 : 0) * S;
            const real *dy = dout + (b * F + f0) * S * Co;         // (rows,Co)
            size_t at = (b * F + f0 + k - 1) * S * Ci;              // input rows of frames f0+k-1 ...
            if (rows == 0) continue;
            if (dkernel) gemm(dkernel + k * Ci * Co, inp + at, dy, Ci, Co, rows, Co, Ci, Co, GEMM_TA | GEMM_ACC);
            if (dinp) gemm(dinp + at, dy, kernel + k * Ci * Co, rows, Ci, Co, Ci, Co, Co, GEMM_TB | GEMM_ACC);
        }
}

