// port.c: 64-bit seeking, replacing rename, and a correctly rounded fma (port.h).
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <errno.h>
#endif

#include "port.h"

#include <math.h>

#include "mavref.h"

// ---------------------------------------------------------------------------------------
// Seeking

int mv_seek(FILE *fp, uint64_t off) {
#ifdef _WIN32
    // msvcrt's fseek moves the file pointer with a 32-bit call: it cannot pass 4 GiB.
    if (off > (uint64_t)INT64_MAX) return MV_ERR;
    return _fseeki64(fp, (__int64)off, SEEK_SET) ? MV_ERR : MV_OK;
#else
    // C99's fseek takes a long: absolute seeks in relative steps that fit any long. (32-bit
    // glibc needs -D_FILE_OFFSET_BITS=64, set by the Makefile, to open files past 2 GiB.)
    const uint64_t step = (uint64_t)1 << 30;
    if (fseek(fp, 0, SEEK_SET)) return MV_ERR;
    while (off > 0) {
        uint64_t s = off < step ? off : step;
        if (fseek(fp, (long)s, SEEK_CUR)) return MV_ERR;
        off -= s;
    }
    return MV_OK;
#endif
}

// ---------------------------------------------------------------------------------------
// Replacing a file

int mv_replace_file(const char *from, const char *to) {
#ifdef _WIN32
    // rename() refuses an existing target on Windows. MoveFileEx replaces it in one call
    // (on NTFS a single metadata update, as POSIX rename); WRITE_THROUGH returns only once
    // the move is on disk.
    if (MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) return MV_OK;
    switch (GetLastError()) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND: errno = ENOENT; break;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION: errno = EACCES; break;
    default: errno = EIO; break;
    }
    return MV_ERR;
#else
    return rename(from, to) ? MV_ERR : MV_OK;
#endif
}

// ---------------------------------------------------------------------------------------
// Fused multiply-add, exactly: x*y and z become integers times powers of two, their sum is
// formed exactly in a 192-bit integer, and that is rounded once. (Speed is no concern: the
// scheduler calls it a few times per latent element and step.)

typedef struct { uint64_t w[3]; } U192; // w[0] least significant

static void u192_shl(U192 *a, int s) { // 0 <= s < 192, no bits lost
    for (; s >= 64; s -= 64) { a->w[2] = a->w[1]; a->w[1] = a->w[0]; a->w[0] = 0; }
    if (s > 0) {
        a->w[2] = (a->w[2] << s) | (a->w[1] >> (64 - s));
        a->w[1] = (a->w[1] << s) | (a->w[0] >> (64 - s));
        a->w[0] <<= s;
    }
}

// Shift right; with `sticky`, ORs every bit shifted out into bit 0 (nonzero stays nonzero).
static void u192_shr(U192 *a, int s, int sticky) {
    uint64_t lost = 0;
    if (s >= 192) { lost = a->w[0] | a->w[1] | a->w[2]; a->w[0] = a->w[1] = a->w[2] = 0; s = 0; }
    for (; s >= 64; s -= 64) { lost |= a->w[0]; a->w[0] = a->w[1]; a->w[1] = a->w[2]; a->w[2] = 0; }
    if (s > 0) {
        lost |= a->w[0] << (64 - s);
        a->w[0] = (a->w[0] >> s) | (a->w[1] << (64 - s));
        a->w[1] = (a->w[1] >> s) | (a->w[2] << (64 - s));
        a->w[2] >>= s;
    }
    if (sticky && lost) a->w[0] |= 1;
}

static int u192_cmp(const U192 *a, const U192 *b) {
    int i;
    for (i = 2; i >= 0; i--)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

static void u192_add(U192 *a, const U192 *b) { // no overflow: both are below 2^191
    uint64_t carry = 0;
    int i;
    for (i = 0; i < 3; i++) {
        uint64_t s = a->w[i] + b->w[i], c = s < a->w[i];
        a->w[i] = s + carry;
        carry = c | (a->w[i] < s);
    }
}

static void u192_sub(U192 *a, const U192 *b) { // a >= b
    uint64_t borrow = 0;
    int i;
    for (i = 0; i < 3; i++) {
        uint64_t d = a->w[i] - b->w[i], c = a->w[i] < b->w[i];
        a->w[i] = d - borrow;
        borrow = c | (d < borrow);
    }
}

static int u192_top(const U192 *a) { // index of the highest set bit; a != 0
    int i, b;
    for (i = 2; i >= 0; i--)
        if (a->w[i])
            for (b = 63; b >= 0; b--)
                if ((a->w[i] >> b) & 1) return 64 * i + b;
    return -1;
}

static int u192_bit(const U192 *a, int i) { return i < 192 && (int)((a->w[i / 64] >> (i % 64)) & 1); }

static int u192_any_below(const U192 *a, int i) { // any of bits 0 .. i-1 set
    int k;
    for (k = 0; k < i / 64; k++)
        if (a->w[k]) return 1;
    return i % 64 && (a->w[i / 64] << (64 - i % 64)) != 0;
}

// |x| = m * 2^e with the integer m < 2^53 (x finite and nonzero).
static uint64_t split(double x, int *e) {
    int k;
    double f = frexp(fabs(x), &k); // f in [0.5, 1): 53 bits at most
    *e = k - 53;
    return (uint64_t)ldexp(f, 53);
}

// x*y + z rounded to nearest-even with `prec` significant bits and no bit below 2^emin
// (53, -1074 for double; 24, -149 for float). The result is exact in double.
static double fma_round(double x, double y, double z, int prec, int emin) {
    uint64_t mx, my, mz, a0, a1, b0, b1, lo, mid, hi, low64;
    int ex, ey, ez, ep, top_p, top_z, T, base, t, ulp, rp, neg_p, neg_z, neg;
    U192 P, Z;
    // Zeros, infinities and NaNs: the product is exact (or not a number), one rounding; an
    // infinite z wins over a finite product, even one that overflows.
    if (isinf(z) && isfinite(x) && isfinite(y)) return z;
    if (!isfinite(x) || !isfinite(y) || !isfinite(z) || x == 0 || y == 0) return x * y + z;
    neg_p = (x < 0) != (y < 0);
    neg_z = z < 0;
    mx = split(x, &ex);
    my = split(y, &ey);
    // P = mx * my (< 2^106) from 32-bit halves; the value of x*y is P * 2^ep.
    a0 = mx & 0xffffffffu; a1 = mx >> 32;
    b0 = my & 0xffffffffu; b1 = my >> 32;
    lo = a0 * b0;
    mid = a1 * b0 + a0 * b1; // < 2^54
    hi = a1 * b1;
    low64 = lo + (mid << 32);
    P.w[0] = low64;
    P.w[1] = hi + (mid >> 32) + (low64 < lo);
    P.w[2] = 0;
    ep = ex + ey;
    top_p = ep + 106; // P * 2^ep < 2^top_p
    // Place both in one 192-bit integer whose bit 0 weighs 2^base: the larger operand's top
    // at bit 189 or below, so the sum cannot overflow and the larger is exact. The smaller
    // is shifted right with a sticky bit; then it is at least 84 bits below the rounding
    // position, where the sticky bit rounds exactly as the lost bits would.
    Z.w[0] = Z.w[1] = Z.w[2] = 0;
    ez = 0;
    if (z != 0) {
        mz = split(z, &ez);
        Z.w[0] = mz;
        top_z = ez + 53;
        T = top_p > top_z ? top_p : top_z;
    } else {
        T = top_p;
    }
    base = T - 190;
    if (ep >= base) u192_shl(&P, ep - base); else u192_shr(&P, base - ep, 1);
    if (z != 0) { if (ez >= base) u192_shl(&Z, ez - base); else u192_shr(&Z, base - ez, 1); }
    if (neg_p == neg_z) {
        u192_add(&P, &Z);
        neg = neg_p;
    } else if (u192_cmp(&P, &Z) >= 0) {
        u192_sub(&P, &Z);
        neg = neg_p;
    } else {
        u192_sub(&Z, &P);
        P = Z;
        neg = neg_z;
    }
    t = u192_top(&P);
    if (t < 0) return 0.0; // exact cancellation: +0 when rounding to nearest
    // Round at the unit in the last place: prec bits below the top, but never below 2^emin.
    ulp = t + base - (prec - 1);
    if (ulp < emin) ulp = emin;
    rp = ulp - base;
    if (rp > 0) {
        int up = u192_bit(&P, rp - 1); // the first bit below the ulp: at least half an ulp (0 past bit 191)
        if (up && !u192_bit(&P, rp)) up = u192_any_below(&P, rp - 1); // exactly half: ties to even
        u192_shr(&P, rp, 0);
        P.w[0] += (uint64_t)up; // at most 2^prec: exact in double
    } else {
        u192_shl(&P, -rp);
    }
    {
        double v = ldexp((double)P.w[0], ulp); // overflows to infinity where it should
        return neg ? -v : v;
    }
}

double mv_fma(double x, double y, double z) { return fma_round(x, y, z, 53, -1074); }

float mv_fmaf(float x, float y, float z) {
    double r = fma_round(x, y, z, 24, -149); // float operands are exact in double
    if (fabs(r) >= 0x1p128) return r > 0 ? HUGE_VALF : -HUGE_VALF;
    return (float)r; // exact: already rounded to float
}
