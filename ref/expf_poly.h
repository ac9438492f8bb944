// expf_poly.h: e^x in float32 for x <= 0, written so that a compiler can vectorize a loop of it
// (no calls, no branches): the softmax numerators of the float32 build (ref/attention.c).
//
//   n = round(x log2 e)                 (the 1.5*2^23 trick: adding it rounds to an integer)
//   r = x - n ln2                       (Cody-Waite: ln2 = C1 + C2, C1 exact in 9 bits, so
//                                        n*C1 is exact and r keeps its low bits), |r| <= ln2/2
//   e^r ~ 1 + r + r^2 P(r)              (Cephes expf's degree-5 P: relative error < 2^-24)
//   e^x = 2^n e^r                       (2^n built from its exponent bits)
//
// Over x in [-87.33, 0] the result is within 2 float ulps of e^x rounded (tests/test_fastpath.c
// `expf_poly` sweeps it against exp in double); x < -87.33 (where e^x is below the smallest
// normal float) gives 0, as the softmax needs: those numerators are < 1e-38 of the row's
// largest, 1. XLA's float32 exp is likewise a polynomial, not the correctly rounded value.
// Never called with x > 0, NaN or inf (the caller subtracts the row maximum first).
#ifndef MAVREF_EXPF_POLY_H
#define MAVREF_EXPF_POLY_H

#include <stdint.h>
#include <string.h>

#define EXPF_POLY_MIN (-87.33f) // e^x is a normal float from here on (n >= -126)

static inline float expf_poly(float x) {
    const float shift = 12582912.0f; // 1.5 * 2^23: t + shift - shift rounds t to an integer
    float xc = x < EXPF_POLY_MIN ? EXPF_POLY_MIN : x;
    // round(x / ln 2): t must be ROUNDED to float before shift is taken off again. C99 rounds
    // on assignment, also where float arithmetic is carried out in a wider format
    // (FLT_EVAL_METHOD 1 or 2: s390x, x87), where the one-expression form would give no rounding.
    float t = xc * 1.44269504088896341f + shift;
    float n = t - shift;
    float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    float y, two_n;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; // 2^n, n in [-126, 0]
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    y = (p * (r * r) + r) + 1.0f;
    memcpy(&two_n, &bits, sizeof two_n);
    return x < EXPF_POLY_MIN ? 0.0f : y * two_n;
}

#endif
