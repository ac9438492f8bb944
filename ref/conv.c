// conv.c: convolutions and their backward passes, the plain loops (the readable path): the
// 2-D convolution, the temporal convolution and ConvPseudo3D, which chains them. The fast path
// (the same sums as matrix products, ref/gemm.c) is in conv_fast.c.
#include "conv.h"

#include <string.h>

int conv2d_out_size(size_t *Ho, size_t *Wo, size_t H, size_t W, const Conv2dGeom *g) {
    size_t hp = H + g->pad_top + g->pad_bottom, wp = W + g->pad_left + g->pad_right;
    if (g->stride == 0) return mv_fail("conv2d: stride must be positive");
    if (g->KH == 0 || g->KW == 0 || hp < g->KH || wp < g->KW)
        return mv_fail("conv2d: kernel %lux%lu does not fit the padded input %lux%lu",
                       (unsigned long)g->KH, (unsigned long)g->KW, (unsigned long)hp, (unsigned long)wp);
    *Ho = (hp - g->KH) / g->stride + 1;
    *Wo = (wp - g->KW) / g->stride + 1;
    return MV_OK;
}

// For every output pixel, accumulate every tap's (Ci) x (Ci,Co) product.
void conv2d_forward_ref(real *out, const real *in, const real *kernel, const real *bias,
                        size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0, n, i, j, kh, kw, c, o;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return; // callers validate first
    for (n = 0; n < N; n++)
        for (i = 0; i < Ho; i++)
            for (j = 0; j < Wo; j++) {
                real *y = out + ((n * Ho + i) * Wo + j) * Co; // (Co)
                if (bias) memcpy(y, bias, Co * sizeof(real));
                else memset(y, 0, Co * sizeof(real));
                for (kh = 0; kh < g->KH; kh++) {
                    size_t hi = i * g->stride + kh; // row in the padded input
                    if (hi < g->pad_top || hi - g->pad_top >= H) continue;
                    for (kw = 0; kw < g->KW; kw++) {
                        size_t wi = j * g->stride + kw;
                        const real *x, *k;
                        if (wi < g->pad_left || wi - g->pad_left >= W) continue;
                        x = in + ((n * H + (hi - g->pad_top)) * W + (wi - g->pad_left)) * Ci; // (Ci)
                        k = kernel + (kh * g->KW + kw) * Ci * Co;                             // (Ci,Co)
                        for (c = 0; c < Ci; c++) {
                            real xc = x[c];
                            const real *kc = k + c * Co; // (Co)
                            for (o = 0; o < Co; o++) y[o] += xc * kc[o];
                        }
                    }
                }
            }
}

// For every output frame and pixel, the three taps in order (frames outside 0..F-1 are zeros).
void temporal_conv_forward_ref(real *out, const real *in, const real *kernel, const real *bias,
                               size_t B, size_t F, size_t S, size_t Ci, size_t Co) {
    size_t b, f, s, k, c, o;
    for (b = 0; b < B; b++)
        for (f = 0; f < F; f++)
            for (s = 0; s < S; s++) {
                real *y = out + ((b * F + f) * S + s) * Co; // (Co)
                if (bias) memcpy(y, bias, Co * sizeof(real));
                else memset(y, 0, Co * sizeof(real));
                for (k = 0; k < 3; k++) {
                    const real *x, *w;
                    if (f + k < 1 || f + k - 1 >= F) continue; // frame f+k-1 is zero padding
                    x = in + ((b * F + (f + k - 1)) * S + s) * Ci; // (Ci)
                    w = kernel + k * Ci * Co;                      // (Ci,Co)
                    for (c = 0; c < Ci; c++) {
                        real xc = x[c];
                        const real *wc = w + c * Co; // (Co)
                        for (o = 0; o < Co; o++) y[o] += xc * wc[o];
                    }
                }
            }
}

// ---------------------------------------------------------------------------------------
// Backward passes. They ACCUMULATE (+=) into the gradient buffers, which the caller zeroes
// once per step; any gradient pointer may be NULL (not wanted, e.g. a frozen weight).

// Every output pixel's every tap, as the forward's loop.
void conv2d_backward_ref(real *dinp, real *dkernel, real *dbias,
                         const real *dout, const real *inp, const real *kernel,
                         size_t N, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0, n, i, j, kh, kw, c, o;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return; // callers validate first
    for (n = 0; n < N; n++)
        for (i = 0; i < Ho; i++)
            for (j = 0; j < Wo; j++) {
                const real *dy = dout + ((n * Ho + i) * Wo + j) * Co; // (Co)
                // forward was: y = bias (+ ...), so dbias += dy
                if (dbias)
                    for (o = 0; o < Co; o++) dbias[o] += dy[o];
                for (kh = 0; kh < g->KH; kh++) {
                    size_t hi = i * g->stride + kh;
                    if (hi < g->pad_top || hi - g->pad_top >= H) continue; // zero padding: no gradient
                    for (kw = 0; kw < g->KW; kw++) {
                        size_t wi = j * g->stride + kw, at;
                        if (wi < g->pad_left || wi - g->pad_left >= W) continue;
                        at = ((n * H + (hi - g->pad_top)) * W + (wi - g->pad_left)) * Ci;
                        for (c = 0; c < Ci; c++) {
                            // forward was: y[o] += x[c] * k[c,o], so
                            //   dx[c] += sum_o dy[o] * k[c,o]   and   dk[c,o] += x[c] * dy[o]
                            const real *kc = kernel + ((kh * g->KW + kw) * Ci + c) * Co; // (Co)
                            if (dinp) {
                                real acc = 0;
                                for (o = 0; o < Co; o++) acc += dy[o] * kc[o];
                                dinp[at + c] += acc;
                            }
                            if (dkernel) {
                                real xc = inp[at + c];
                                real *dkc = dkernel + ((kh * g->KW + kw) * Ci + c) * Co; // (Co)
                                for (o = 0; o < Co; o++) dkc[o] += xc * dy[o];
                            }
                        }
                    }
                }
            }
}

// Every output frame and pixel's taps, as the forward's loop.
void temporal_conv_backward_ref(real *dinp, real *dkernel, real *dbias,
                                const real *dout, const real *inp, const real *kernel,
                                size_t B, size_t F, size_t S, size_t Ci, size_t Co) {
    size_t b, f, s, k, c, o;
    for (b = 0; b < B; b++)
        for (f = 0; f < F; f++)
            for (s = 0; s < S; s++) {
                const real *dy = dout + ((b * F + f) * S + s) * Co; // (Co)
                // forward was: y = bias (+ ...), so dbias += dy
                if (dbias)
                    for (o = 0; o < Co; o++) dbias[o] += dy[o];
                for (k = 0; k < 3; k++) {
                    size_t at;
                    if (f + k < 1 || f + k - 1 >= F) continue; // zero frame: no gradient
                    at = ((b * F + (f + k - 1)) * S + s) * Ci;
                    for (c = 0; c < Ci; c++) {
                        // forward was: y[o] += x[f+k-1, c] * w[k,c,o], so
                        //   dx[f+k-1, c] += sum_o dy[o] * w[k,c,o]   and   dw[k,c,o] += x[f+k-1, c] * dy[o]
                        const real *wc = kernel + (k * Ci + c) * Co; // (Co)
                        if (dinp) {
                            real acc = 0;
                            for (o = 0; o < Co; o++) acc += dy[o] * wc[o];
                            dinp[at + c] += acc;
                        }
                        if (dkernel) {
                            real xc = inp[at + c];
                            real *dwc = dkernel + (k * Ci + c) * Co; // (Co)
                            for (o = 0; o < Co; o++) dwc[o] += xc * dy[o];
                        }
                    }
                }
            }
}

// ---------------------------------------------------------------------------------------
// ConvPseudo3D: the spatial conv on every frame, then the temporal conv (through the door:
// conv2d_forward and temporal_conv_forward take the fast path unless engine_reference()).

int conv_pseudo3d_forward(real *out, real *work, const real *in,
                          const real *spatial_kernel, const real *spatial_bias,
                          const real *temporal_kernel, const real *temporal_bias,
                          size_t B, size_t F, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return mv_fail_prefix("conv_pseudo3d");
    conv2d_forward(work, in, spatial_kernel, spatial_bias, B * F, H, W, Ci, Co, g);
    temporal_conv_forward(out, work, temporal_kernel, temporal_bias, B, F, Ho * Wo, Co, Co);
    return MV_OK;
}

int conv_pseudo3d_backward(real *dinp, real *dspatial_kernel, real *dspatial_bias,
                           real *dtemporal_kernel, real *dtemporal_bias, real *dwork,
                           const real *dout, const real *inp, const real *work,
                           const real *spatial_kernel, const real *temporal_kernel,
                           size_t B, size_t F, size_t H, size_t W, size_t Ci, size_t Co, const Conv2dGeom *g) {
    size_t Ho = 0, Wo = 0, n;
    if (conv2d_out_size(&Ho, &Wo, H, W, g)) return mv_fail_prefix("conv_pseudo3d backward");
    n = B * F * Ho * Wo * Co; // fits: the forward allocated tensors of this size
    memset(dwork, 0, n * sizeof(real));
    // forward was: out = temporal_conv(work), so dwork = temporal_conv_backward(dout)
    temporal_conv_backward(dwork, dtemporal_kernel, dtemporal_bias, dout, work, temporal_kernel, B, F, Ho * Wo, Co, Co);
    // forward was: work = conv2d(in), so din += conv2d_backward(dwork)
    conv2d_backward(dinp, dspatial_kernel, dspatial_bias, dwork, inp, spatial_kernel, B * F, H, W, Ci, Co, g);
    return MV_OK;
}
