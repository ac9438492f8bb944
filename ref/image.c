// image.c: PNM reading, PNM/Y4M/GIF writing, quantization and nearest resize (image.h).
#include "image.h"
#include "port.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// C99 lets a compiler fuse a*b+c within one expression (clang does by default where the target
// has FMA; GCC in ISO mode never does and rejects the pragma): results must not depend on it.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void image_free(Image *img) {
    free(img->data);
    memset(img, 0, sizeof *img);
}

// ---------------------------------------------------------------------------------------
// Reading PNM (P5, P6).

// Skip whitespace and '#' comments (to the end of the line) between header tokens.
static int pnm_skip(FILE *fp) {
    int c = getc(fp);
    for (;;) {
        if (c == '#') {
            while (c != '\n' && c != '\r' && c != EOF) c = getc(fp);
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            c = getc(fp);
        } else {
            return c;
        }
    }
}

// A header number: decimal digits, at most 1e9.
static int pnm_number(FILE *fp, const char *path, const char *what, unsigned long *out) {
    int c = pnm_skip(fp), digits = 0;
    unsigned long v = 0;
    while (c >= '0' && c <= '9') {
        if (v > 100000000UL) return mv_fail("%s: PNM %s is absurdly large", path, what);
        v = v * 10 + (unsigned long)(c - '0');
        digits++;
        c = getc(fp);
    }
    if (!digits) {
        if (c == EOF) return mv_fail("%s: truncated PNM header (no %s)", path, what);
        return mv_fail("%s: bad PNM header: expected the %s, found '%c'", path, what, c);
    }
    // exactly one whitespace character ends a number (the last one precedes the pixels)
    if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')) {
        if (c == EOF) return mv_fail("%s: truncated PNM header (after the %s)", path, what);
        return mv_fail("%s: bad PNM header: '%c' after the %s", path, c, what);
    }
    *out = v;
    return MV_OK;
}

// 1 if a seekable file surely holds fewer than n more bytes. Checked before the pixels are
// allocated, so that a few bytes claiming 32768x32768 pixels cost no 3 GiB allocation.
// (Streams that cannot seek are not checked here; the read then finds them short.)
static int pnm_short(FILE *fp, size_t n) {
    long pos = ftell(fp); // a few bytes of header: fits any long
    int c;
    if (n == 0 || pos < 0) return 0;
    if (mv_seek(fp, (uint64_t)pos + n - 1)) { mv_seek(fp, (uint64_t)pos); return 0; }
    c = getc(fp);
    return mv_seek(fp, (uint64_t)pos) != 0 || c == EOF;
}

int image_read_pnm(Image *img, const char *path) {
    FILE *fp;
    int c0, c1, extra;
    unsigned long w, h, maxval;
    size_t channels, bytes, got, i;
    memset(img, 0, sizeof *img);
    fp = fopen(path, "rb");
    if (!fp) return mv_fail("%s: cannot open: %s", path, strerror(errno));
    c0 = getc(fp);
    c1 = getc(fp);
    if (c0 != 'P' || (c1 != '5' && c1 != '6')) {
        fclose(fp);
        if (c0 == 'P' && c1 >= '1' && c1 <= '7')
            return mv_fail("%s: PNM type P%c is not supported (binary P5 gray or P6 RGB only)", path, c1);
        return mv_fail("%s: bad magic: not a binary PPM (P6) or PGM (P5) file", path);
    }
    channels = c1 == '6' ? 3 : 1;
    if (pnm_number(fp, path, "width", &w) || pnm_number(fp, path, "height", &h) ||
        pnm_number(fp, path, "maxval", &maxval)) {
        fclose(fp);
        return MV_ERR;
    }
    if (w == 0 || h == 0 || w > IMAGE_MAX_DIM || h > IMAGE_MAX_DIM) {
        fclose(fp);
        return mv_fail("%s: image size %lux%lu is out of range (1..%d per side)", path, w, h, IMAGE_MAX_DIM);
    }
    if (maxval == 0 || maxval > 65535) {
        fclose(fp);
        return mv_fail("%s: bad maxval %lu (must be 1..255)", path, maxval);
    }
    if (maxval > 255) {
        fclose(fp);
        return mv_fail("%s: 16-bit PNM (maxval %lu) is not supported; convert to 8 bits (maxval 255)", path, maxval);
    }
    if (mv_mul_size(&bytes, (size_t)w * (size_t)h, channels)) { fclose(fp); return mv_fail_prefix("%s", path); }
    if (pnm_short(fp, bytes)) {
        fclose(fp);
        return mv_fail("%s: truncated: %lux%lu %s needs %lu bytes of pixel data, the file is shorter", path, w, h,
                       channels == 3 ? "P6" : "P5", (unsigned long)bytes);
    }
    img->data = (unsigned char *)mv_malloc(bytes, "image pixels");
    if (!img->data) { fclose(fp); return mv_fail_prefix("%s", path); }
    got = fread(img->data, 1, bytes, fp);
    extra = got == bytes ? getc(fp) : EOF;
    fclose(fp);
    if (got != bytes) {
        image_free(img);
        return mv_fail("%s: truncated: %lux%lu %s needs %lu bytes of pixel data, the file has %lu", path, w, h,
                       channels == 3 ? "P6" : "P5", (unsigned long)bytes, (unsigned long)got);
    }
    if (extra != EOF) {
        image_free(img);
        return mv_fail("%s: unexpected data after the %lu bytes of pixels", path, (unsigned long)bytes);
    }
    if (maxval < 255) { // rescale to 0..255, rounding half up
        for (i = 0; i < bytes; i++) {
            if (img->data[i] > maxval) {
                unsigned v = img->data[i]; // read before image_free clears img->data
                image_free(img);
                return mv_fail("%s: pixel value %u exceeds maxval %lu", path, v, maxval);
            }
            img->data[i] = (unsigned char)((img->data[i] * 255UL + maxval / 2) / maxval);
        }
    }
    img->width = w;
    img->height = h;
    img->channels = channels;
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Atomic writing: NAME.tmp, then rename.

typedef struct {
    FILE *fp;
    char *tmp;
    const char *path;
} AtomicFile;

static int atomic_open(AtomicFile *a, const char *path) {
    size_t n = strlen(path);
    a->path = path;
    a->fp = NULL;
    a->tmp = (char *)mv_malloc(n + 5, "file name");
    if (!a->tmp) return MV_ERR;
    memcpy(a->tmp, path, n);
    memcpy(a->tmp + n, ".tmp", 5);
    a->fp = fopen(a->tmp, "wb");
    if (!a->fp) {
        mv_fail("%s: cannot create %s: %s", path, a->tmp, strerror(errno));
        free(a->tmp);
        return MV_ERR;
    }
    return MV_OK;
}

// Close and rename when ok (and every write succeeded); otherwise remove the .tmp.
static int atomic_close(AtomicFile *a, int ok) {
    int rc = MV_OK;
    if (ok && ferror(a->fp)) { mv_fail("%s: write error", a->path); ok = 0; }
    if (fclose(a->fp) != 0 && ok) { mv_fail("%s: write error on close: %s", a->path, strerror(errno)); ok = 0; }
    if (ok && mv_replace_file(a->tmp, a->path) != 0) { mv_fail("%s: cannot rename %s: %s", a->path, a->tmp, strerror(errno)); ok = 0; }
    if (!ok) { remove(a->tmp); rc = MV_ERR; }
    free(a->tmp);
    return rc;
}

static int check_video(const char *path, size_t F, size_t H, size_t W) {
    if (F == 0 || H == 0 || W == 0 || H > IMAGE_MAX_DIM || W > IMAGE_MAX_DIM)
        return mv_fail("%s: bad video size %lu frames of %lux%lu", path, (unsigned long)F, (unsigned long)W, (unsigned long)H);
    return MV_OK;
}

int image_write_pnm(const char *path, const Image *img) {
    AtomicFile a;
    size_t bytes;
    if (img->channels != 1 && img->channels != 3) return mv_fail("%s: cannot write %lu channels as PNM", path, (unsigned long)img->channels);
    if (check_video(path, 1, img->height, img->width)) return MV_ERR;
    bytes = img->width * img->height * img->channels;
    if (atomic_open(&a, path)) return MV_ERR;
    fprintf(a.fp, "P%c\n%lu %lu\n255\n", img->channels == 3 ? '6' : '5', (unsigned long)img->width, (unsigned long)img->height);
    fwrite(img->data, 1, bytes, a.fp);
    return atomic_close(&a, 1);
}

int video_write_frames(const char *prefix, const unsigned char *frames, size_t F, size_t H, size_t W) {
    size_t f, n = strlen(prefix) + 16;
    char *name;
    Image img;
    if (check_video(prefix, F, H, W)) return MV_ERR;
    if (F > 999999) return mv_fail("%s: %lu frames do not fit six-digit numbers", prefix, (unsigned long)F);
    name = (char *)mv_malloc(n, "file name");
    if (!name) return MV_ERR;
    img.width = W;
    img.height = H;
    img.channels = 3;
    for (f = 0; f < F; f++) {
        sprintf(name, "%s%06lu.ppm", prefix, (unsigned long)f);
        img.data = (unsigned char *)(frames + f * H * W * 3);
        if (image_write_pnm(name, &img)) { free(name); return MV_ERR; }
    }
    free(name);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// Y4M: C420jpeg (chroma at the centre of each 2x2 block), BT.601, limited range.
//   Y' = 0.299 R + 0.587 G + 0.114 B                       (R, G, B in 0..255)
//   Y  = 16 + 219/255 Y',  Cb = 128 + 224/255 (B - Y')/1.772,  Cr = 128 + 224/255 (R - Y')/1.402
// Chroma takes the mean R, G, B of the block's pixels (1, 2 or 4 at odd edges). Values are
// rounded half up and clipped to 16..235 (Y) and 16..240 (Cb, Cr).

static unsigned char y4m_round(double v, double lo, double hi) {
    v = floor(v + 0.5);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (unsigned char)v;
}

int video_write_y4m(const char *path, const unsigned char *frames, size_t F, size_t H, size_t W,
                    unsigned fps_num, unsigned fps_den) {
    AtomicFile a;
    size_t f, y, x, cw = (W + 1) / 2, ch = (H + 1) / 2;
    unsigned char *plane;
    if (check_video(path, F, H, W)) return MV_ERR;
    if (fps_num == 0 || fps_den == 0) return mv_fail("%s: bad frame rate %u/%u", path, fps_num, fps_den);
    plane = (unsigned char *)mv_malloc(W * H + 2 * cw * ch, "Y4M frame");
    if (!plane) return MV_ERR;
    if (atomic_open(&a, path)) { free(plane); return MV_ERR; }
    fprintf(a.fp, "YUV4MPEG2 W%lu H%lu F%u:%u Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n", (unsigned long)W,
            (unsigned long)H, fps_num, fps_den);
    for (f = 0; f < F; f++) {
        const unsigned char *rgb = frames + f * H * W * 3; // (H,W,3)
        unsigned char *Yp = plane, *Cb = plane + W * H, *Cr = Cb + cw * ch;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                const unsigned char *p = rgb + (y * W + x) * 3;
                double yl = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                Yp[y * W + x] = y4m_round(16.0 + 219.0 / 255.0 * yl, 16, 235);
            }
        for (y = 0; y < ch; y++)
            for (x = 0; x < cw; x++) {
                double r = 0, g = 0, b = 0, yl;
                int n = 0;
                size_t dy, dx;
                for (dy = 0; dy < 2; dy++)
                    for (dx = 0; dx < 2; dx++) {
                        size_t yy = 2 * y + dy, xx = 2 * x + dx;
                        const unsigned char *p;
                        if (yy >= H || xx >= W) continue;
                        p = rgb + (yy * W + xx) * 3;
                        r += p[0]; g += p[1]; b += p[2];
                        n++;
                    }
                r /= n; g /= n; b /= n;
                yl = 0.299 * r + 0.587 * g + 0.114 * b;
                Cb[y * cw + x] = y4m_round(128.0 + 224.0 / 255.0 * (b - yl) / 1.772, 16, 240);
                Cr[y * cw + x] = y4m_round(128.0 + 224.0 / 255.0 * (r - yl) / 1.402, 16, 240);
            }
        fputs("FRAME\n", a.fp);
        fwrite(plane, 1, W * H + 2 * cw * ch, a.fp);
    }
    free(plane);
    return atomic_close(&a, 1);
}

// ---------------------------------------------------------------------------------------
// GIF89a with our own LZW encoder.

static const unsigned char BAYER4[4][4] = {{0, 8, 2, 10}, {12, 4, 14, 6}, {3, 11, 1, 9}, {15, 7, 13, 5}};
static const unsigned GIF_LEVELS[3] = {6, 7, 6}; // R, G, B levels: 6*7*6 = 252 colours

// Level of value v (0..255) among L levels with threshold (2b+1)/32 of a step:
//   q = floor(v (L-1)/255 + (2b+1)/32), in integers.
static unsigned dither_level(unsigned v, unsigned L, unsigned b) {
    return (v * (L - 1) * 32 + (2 * b + 1) * 255) / (255 * 32);
}

unsigned gif_palette_index(const unsigned char *rgb, size_t x, size_t y) {
    unsigned b = BAYER4[y % 4][x % 4];
    unsigned r = dither_level(rgb[0], GIF_LEVELS[0], b);
    unsigned g = dither_level(rgb[1], GIF_LEVELS[1], b);
    unsigned bl = dither_level(rgb[2], GIF_LEVELS[2], b);
    return (r * GIF_LEVELS[1] + g) * GIF_LEVELS[2] + bl;
}

void gif_palette_color(unsigned index, unsigned char rgb[3]) {
    unsigned lv[3], c;
    if (index >= 252) { rgb[0] = rgb[1] = rgb[2] = 0; return; } // unused entries 252..255
    lv[2] = index % 6;
    lv[1] = (index / 6) % 7;
    lv[0] = index / 42;
    for (c = 0; c < 3; c++) rgb[c] = (unsigned char)((lv[c] * 255 + (GIF_LEVELS[c] - 1) / 2) / (GIF_LEVELS[c] - 1));
}

unsigned gif_frame_delay(size_t k, unsigned fps_num, unsigned fps_den) {
    // end and start times in 1/100 s, rounded half up: floor((100 k den + num/2) / num)
    double a = floor((100.0 * (double)(k + 1) * fps_den + fps_num / 2) / fps_num);
    double b = floor((100.0 * (double)k * fps_den + fps_num / 2) / fps_num);
    double d = a - b;
    return d < 2 ? 2 : d > 65535 ? 65535 : (unsigned)d;
}

typedef struct {
    FILE *fp;
    unsigned char block[255];
    int nblock;
    unsigned long bits; // pending bits, least significant first
    int nbits;
} GifBits;

static void gif_byte(GifBits *g, unsigned v) {
    g->block[g->nblock++] = (unsigned char)v;
    if (g->nblock == 255) {
        putc(255, g->fp);
        fwrite(g->block, 1, 255, g->fp);
        g->nblock = 0;
    }
}

static void gif_code(GifBits *g, unsigned code, int width) {
    g->bits |= (unsigned long)code << g->nbits;
    g->nbits += width;
    while (g->nbits >= 8) {
        gif_byte(g, (unsigned)(g->bits & 0xff));
        g->bits >>= 8;
        g->nbits -= 8;
    }
}

static void gif_flush(GifBits *g) {
    if (g->nbits > 0) gif_byte(g, (unsigned)(g->bits & 0xff));
    g->bits = 0;
    g->nbits = 0;
    if (g->nblock > 0) {
        putc(g->nblock, g->fp);
        fwrite(g->block, 1, (size_t)g->nblock, g->fp);
        g->nblock = 0;
    }
    putc(0, g->fp); // block terminator
}

#define LZW_HASH 8192 // open addressing; holds the <= 4096 - 258 strings of one table

// LZW with 8-bit minimum code size: clear 256, end 257, codes up to 12 bits; the table is
// cleared (clear code) when code 4095 has been assigned.
static int gif_lzw(FILE *fp, const unsigned char *idx, size_t n, long *hkey, unsigned short *hval) {
    GifBits g;
    const unsigned CLEAR = 256, EOI = 257;
    unsigned next = 258, prefix;
    int width = 9;
    size_t i;
    memset(&g, 0, sizeof g);
    g.fp = fp;
    putc(8, fp); // minimum code size
    for (i = 0; i < LZW_HASH; i++) hkey[i] = -1;
    gif_code(&g, CLEAR, width);
    prefix = idx[0];
    for (i = 1; i < n; i++) {
        long key = ((long)prefix << 8) | idx[i];
        size_t h = ((size_t)key * 2654435761u) & (LZW_HASH - 1);
        while (hkey[h] != -1 && hkey[h] != key) h = (h + 1) & (LZW_HASH - 1);
        if (hkey[h] == key) { prefix = hval[h]; continue; }
        gif_code(&g, prefix, width);
        hkey[h] = key;
        hval[h] = (unsigned short)next;
        next++;
        // the decoder adds this string one code later; it widens when its table reaches
        // 1 << width, i.e. when ours has assigned code 1 << width
        if (next - 1 == (1u << width) && width < 12) width++;
        if (next == 4096) {
            gif_code(&g, CLEAR, width);
            for (h = 0; h < LZW_HASH; h++) hkey[h] = -1;
            next = 258;
            width = 9;
        }
        prefix = idx[i];
    }
    gif_code(&g, prefix, width);
    // the decoder adds one more string after the last code before it reads the end code
    if (next > 258) {
        next++;
        if (next - 1 == (1u << width) && width < 12) width++;
    }
    gif_code(&g, EOI, width);
    gif_flush(&g);
    return MV_OK;
}

static void put16(FILE *fp, unsigned v) {
    putc((int)(v & 0xff), fp);
    putc((int)((v >> 8) & 0xff), fp);
}

int video_write_gif(const char *path, const unsigned char *frames, size_t F, size_t H, size_t W,
                    unsigned fps_num, unsigned fps_den) {
    AtomicFile a;
    unsigned char *idx;
    long *hkey;
    unsigned short *hval;
    size_t f, x, y;
    unsigned i;
    if (check_video(path, F, H, W)) return MV_ERR;
    if (fps_num == 0 || fps_den == 0) return mv_fail("%s: bad frame rate %u/%u", path, fps_num, fps_den);
    idx = (unsigned char *)mv_malloc(W * H, "GIF indices");
    hkey = (long *)mv_malloc(LZW_HASH * sizeof(long), "LZW table");
    hval = (unsigned short *)mv_malloc(LZW_HASH * sizeof(unsigned short), "LZW table");
    if (!idx || !hkey || !hval || atomic_open(&a, path)) { free(idx); free(hkey); free(hval); return MV_ERR; }
    fwrite("GIF89a", 1, 6, a.fp);
    put16(a.fp, (unsigned)W);
    put16(a.fp, (unsigned)H);
    putc(0xF7, a.fp); // global colour table of 256 entries, 8-bit colour resolution
    putc(0, a.fp);    // background colour index
    putc(0, a.fp);    // pixel aspect ratio: unspecified
    for (i = 0; i < 256; i++) {
        unsigned char rgb[3];
        gif_palette_color(i, rgb);
        fwrite(rgb, 1, 3, a.fp);
    }
    // NETSCAPE2.0 application extension: loop forever (count 0)
    fwrite("\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00", 1, 19, a.fp);
    for (f = 0; f < F; f++) {
        const unsigned char *rgb = frames + f * H * W * 3;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) idx[y * W + x] = (unsigned char)gif_palette_index(rgb + (y * W + x) * 3, x, y);
        // graphic control extension: disposal 1 (leave in place), no transparency, delay
        fwrite("\x21\xF9\x04\x04", 1, 4, a.fp);
        put16(a.fp, gif_frame_delay(f, fps_num, fps_den));
        putc(0, a.fp);
        putc(0, a.fp);
        // image descriptor: the whole screen, no local colour table, not interlaced
        putc(0x2C, a.fp);
        put16(a.fp, 0);
        put16(a.fp, 0);
        put16(a.fp, (unsigned)W);
        put16(a.fp, (unsigned)H);
        putc(0, a.fp);
        gif_lzw(a.fp, idx, W * H, hkey, hval);
    }
    putc(0x3B, a.fp); // trailer
    free(idx);
    free(hkey);
    free(hval);
    return atomic_close(&a, 1);
}

// ---------------------------------------------------------------------------------------

static real round_half_even_r(real v) {
    real f = (real)floor(v), d = v - f;
    if (d > (real)0.5) return f + 1;
    if (d < (real)0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1;
}

void image_quantize(unsigned char *out, const real *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        real v = x[i] / 2;
        v = v + (real)0.5;
        v = v * 255;
        if (v != v) { out[i] = 0; continue; } // NaN: undefined upstream; 0 here
        v = round_half_even_r(v);
        out[i] = v < 0 ? 0 : v > 255 ? 255 : (unsigned char)v;
    }
}

size_t resize_nearest_index(size_t i, size_t in, size_t out) {
    // jax: offsets = floor((arange(out, float32) + 0.5) * in / out); XLA folds in / out to
    // the float32 constant in * (1/out), each rounded to float32
    float s = (float)in * (1.0f / (float)out);
    float v = ((float)i + 0.5f) * s;
    size_t k = (size_t)floorf(v);
    return k < in ? k : in - 1;
}

void image_resize_nearest(real *out, const real *in, size_t N, size_t H, size_t W, size_t h, size_t w) {
    size_t n, i, j;
    for (n = 0; n < N; n++)
        for (i = 0; i < h; i++) {
            size_t si = resize_nearest_index(i, H, h);
            for (j = 0; j < w; j++) out[(n * h + i) * w + j] = in[(n * H + si) * W + resize_nearest_index(j, W, w)];
        }
}
