// test_ports.c: what Linux hides and Windows (LLP64, msvcrt, mingw-w64) or WebAssembly do not
// (ref/port.h): files past 4 GiB, outputs that replace existing files, a correctly rounded
// fma, and paths with backslashes and drive letters in messages.
//
// Files are written under build/ (tests run from the repository root).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../ref/image.h"
#include "../ref/params.h"
#include "../ref/plot.h"
#include "../ref/port.h"
#include "../ref/unet.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define TMP(name) "build/ports-f" STR(MAVREF_PRECISION) "-" name

static void put_le64(unsigned char *b, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void put_le32(unsigned char *b, uint32_t v) {
    int i;
    for (i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

// The whole file, or NULL; *n is its length. (Small files only: ftell returns a long.)
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    unsigned char *b = NULL;
    size_t cap = 0, len = 0, k;
    if (!fp) return NULL;
    do {
        if (len == cap) {
            unsigned char *nb = (unsigned char *)realloc(b, cap = cap ? 2 * cap : 4096);
            if (!nb) { free(b); fclose(fp); return NULL; }
            b = nb;
        }
        k = fread(b + len, 1, cap - len, fp);
        len += k;
    } while (k > 0);
    fclose(fp);
    *n = len;
    return b;
}

static int exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

// 1 if files a and b hold the same bytes.
static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// ---------------------------------------------------------------------------------------
// Files larger than 4 GiB: past the reach of a 32-bit long (Windows, 32-bit systems) and of
// a 32-bit file pointer (msvcrt's fseek). The file is made sparse: a header, a seek past
// 4 GiB, 16 bytes of tensor; on filesystems with sparse files (ext4, xfs, btrfs, tmpfs,
// NTFS under wine's Linux host) it costs no disk space and no time.

#define BIG_PAD ((uint64_t)1 << 31) // two U8 tensors of 2 GiB (each fits a 32-bit size_t)

// The first bytes of pad0. A seek that wraps at 2^32 would write the tail over them, and
// read them back as the tail.
static const char big_marker[17] = "pad0 starts here";

// Write the header (tail tensor `tail_len` bytes long), the marker, and the 16 bytes of
// `tail` at 2^32 bytes into the data.
static int write_big(const char *path, uint64_t tail_len, const unsigned char *tail) {
    char header[512];
    unsigned char lenbuf[8];
    size_t n;
    FILE *fp;
    int ok;
    snprintf(header, sizeof header,
             "{\"pad0\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
             "\"pad1\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]},"
             "\"tail\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}}",
             (unsigned long long)BIG_PAD, (unsigned long long)BIG_PAD, (unsigned long long)BIG_PAD,
             (unsigned long long)BIG_PAD, (unsigned long long)(2 * BIG_PAD), (unsigned long long)(tail_len / 4),
             (unsigned long long)(2 * BIG_PAD), (unsigned long long)(2 * BIG_PAD + tail_len));
    n = strlen(header);
    while (n % 8) header[n++] = ' ';
    header[n] = '\0';
    put_le64(lenbuf, n);
    fp = fopen(path, "wb");
    if (!fp) return MV_ERR;
    ok = fwrite(lenbuf, 1, 8, fp) == 8 && fwrite(header, 1, n, fp) == n && fwrite(big_marker, 1, 16, fp) == 16;
    ok = ok && mv_seek(fp, 8 + n + 2 * BIG_PAD) == MV_OK && fwrite(tail, 1, 16, fp) == 16;
    ok = (fclose(fp) == 0) && ok;
    return ok ? MV_OK : MV_ERR;
}

int test_port_large_file(void) {
    const char *p = TMP("large.safetensors");
    const float want[4] = {1.5f, -2.25f, 3.0e38f, 1.0e-30f};
    unsigned char tail[16];
    StFile f;
    Tensor t;
    const StEntry *e;
    int fails = 0, i;
    for (i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &want[i], 4);
        put_le32(tail + 4 * i, u);
    }
    remove(p);
    if (write_big(p, 16, tail)) {
        remove(p);
        harness_failf(__func__, "%s: cannot write a sparse file of 4 GiB + 16 bytes", p);
        return 1;
    }
    {
        // the marker is intact: read without seeking
        char head[600];
        FILE *fp = fopen(p, "rb");
        size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
        if (fp) fclose(fp);
        size_t k, found = 0;
        for (k = 8; k + 16 <= got && !found; k++) found = memcmp(head + k, big_marker, 16) == 0;
        fails += EXPECT(found, "%s: the bytes after the header are not the marker: the tail was written over them", p);
    }
    if (st_open(&f, p)) {
        harness_failf(__func__, "st_open of a 4 GiB file failed: %s", mv_error());
        remove(p);
        return 1;
    }
    e = st_find(&f, "tail");
    fails += EXPECT(e && e->begin == 2 * BIG_PAD && f.data_start % 8 == 0, "tail entry at byte 2^32 of the data");
    if (st_read(&f, "tail", &t) == MV_OK) {
        fails += EXPECT(t.numel == 4, "tail has %lu elements", (unsigned long)t.numel);
        for (i = 0; i < 4 && t.numel == 4; i++)
            fails += EXPECT(t.data[i] == (real)want[i], "tail[%d] = %.9g, expected %.9g", i, (double)t.data[i], (double)want[i]);
        tensor_free(&t);
    } else {
        fails += EXPECT(0, "st_read past 4 GiB failed: %s", mv_error());
    }
    st_close(&f);
    // The same file, but the header promises 4 more bytes than it holds: the size check
    // (a seek past 4 GiB and one byte read) must see that.
    remove(p);
    if (write_big(p, 20, tail) == MV_OK) {
        fails += EXPECT(st_open(&f, p) == MV_ERR, "a file 4 bytes short past 4 GiB was accepted");
        fails += EXPECT(strstr(mv_error(), p) && strstr(mv_error(), "truncated"), "message: %s", mv_error());
    } else {
        fails += EXPECT(0, "%s: cannot write the short sparse file", p);
    }
    remove(p);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Every output is written to NAME.tmp and renamed over NAME: the second write of a file must
// replace the first (rename() alone refuses an existing target on Windows).

static int write_st_value(const char *path, real v) {
    StWriter w;
    Tensor t;
    size_t shape[1] = {3};
    int rc;
    if (tensor_alloc(&t, 1, shape)) return MV_ERR;
    t.data[0] = v; t.data[1] = -v; t.data[2] = 2 * v;
    st_writer_init(&w);
    rc = st_writer_add(&w, "x", &t, ST_REAL) || st_writer_save(&w, path);
    st_writer_free(&w);
    tensor_free(&t);
    return rc ? MV_ERR : MV_OK;
}

int test_port_outputs_replace(void) {
    const char *st = TMP("replace.safetensors"), *pnm = TMP("replace.ppm"), *y4m = TMP("replace.y4m");
    const char *gif = TMP("replace.gif"), *ref = TMP("replace-ref"), *fr = TMP("replace-fr_"), *fr0 = TMP("replace-fr_000000.ppm");
    const char *fref = TMP("replace-ref_"), *fref0 = TMP("replace-ref_000000.ppm");
    unsigned char a[2 * 2 * 4 * 3], b[2 * 2 * 4 * 3];
    char tmp[256];
    Image img;
    StFile f;
    Tensor t;
    size_t i;
    int fails = 0;
    for (i = 0; i < sizeof a; i++) { a[i] = (unsigned char)(i * 7); b[i] = (unsigned char)(255 - i * 5); }
    // safetensors
    fails += EXPECT(write_st_value(st, 1) == MV_OK, "first save: %s", mv_error());
    fails += EXPECT(write_st_value(st, 5) == MV_OK, "second save over the first: %s", mv_error());
    if (st_open(&f, st) == MV_OK) {
        if (st_read(&f, "x", &t) == MV_OK) {
            fails += EXPECT(t.numel == 3 && t.data[0] == 5 && t.data[2] == 10, "the file holds the first write (x[0] = %g)", (double)t.data[0]);
            tensor_free(&t);
        } else fails += EXPECT(0, "read: %s", mv_error());
        st_close(&f);
    } else fails += EXPECT(0, "open: %s", mv_error());
    snprintf(tmp, sizeof tmp, "%s.tmp", st);
    fails += EXPECT(!exists(tmp), "%s left behind", tmp);
    // PNM: a 4x2 image, then a 2x2 one with other pixels
    img.width = 4; img.height = 2; img.channels = 3; img.data = a;
    fails += EXPECT(image_write_pnm(pnm, &img) == MV_OK, "first PNM: %s", mv_error());
    img.width = 2; img.data = b;
    fails += EXPECT(image_write_pnm(pnm, &img) == MV_OK, "second PNM over the first: %s", mv_error());
    if (image_read_pnm(&img, pnm) == MV_OK) {
        fails += EXPECT(img.width == 2 && img.height == 2 && memcmp(img.data, b, 12) == 0, "the PNM holds the first write");
        image_free(&img);
    } else fails += EXPECT(0, "PNM read: %s", mv_error());
    // Y4M and GIF: 2 frames of 2x4, then 1 frame of other pixels; compared with a file
    // written once with the second content
    fails += EXPECT(video_write_y4m(y4m, a, 2, 2, 2, 8, 1) == MV_OK, "first Y4M: %s", mv_error());
    fails += EXPECT(video_write_y4m(y4m, b, 1, 2, 2, 8, 1) == MV_OK, "second Y4M over the first: %s", mv_error());
    fails += EXPECT(video_write_y4m(ref, b, 1, 2, 2, 8, 1) == MV_OK, "reference Y4M: %s", mv_error());
    fails += EXPECT(same_bytes(y4m, ref), "the Y4M file is not the second write");
    fails += EXPECT(video_write_gif(gif, a, 2, 2, 2, 8, 1) == MV_OK, "first GIF: %s", mv_error());
    fails += EXPECT(video_write_gif(gif, b, 1, 2, 2, 8, 1) == MV_OK, "second GIF over the first: %s", mv_error());
    fails += EXPECT(video_write_gif(ref, b, 1, 2, 2, 8, 1) == MV_OK, "reference GIF: %s", mv_error());
    fails += EXPECT(same_bytes(gif, ref), "the GIF file is not the second write");
    // numbered frames
    fails += EXPECT(video_write_frames(fr, a, 1, 2, 4) == MV_OK, "first frames: %s", mv_error());
    fails += EXPECT(video_write_frames(fr, b, 1, 2, 2) == MV_OK, "second frames over the first: %s", mv_error());
    fails += EXPECT(video_write_frames(fref, b, 1, 2, 2) == MV_OK, "reference frames: %s", mv_error());
    fails += EXPECT(same_bytes(fr0, fref0), "the frame file is not the second write");
    // the training loss plot (SVG)
    {
        const char *svg = TMP("replace.svg");
        LossPlot a1, b1;
        memset(&a1, 0, sizeof a1);
        memset(&b1, 0, sizeof b1);
        fails += EXPECT(plot_add(&a1, 1, 2.0) == MV_OK && plot_add(&a1, 2, 1.0) == MV_OK, "plot_add");
        fails += EXPECT(plot_add(&b1, 1, 5.0) == MV_OK && plot_add(&b1, 2, 4.0) == MV_OK && plot_add(&b1, 3, 3.5) == MV_OK, "plot_add");
        fails += EXPECT(plot_write_svg(svg, &a1, "first") == MV_OK, "first SVG: %s", mv_error());
        fails += EXPECT(plot_write_svg(svg, &b1, "second") == MV_OK, "second SVG over the first: %s", mv_error());
        fails += EXPECT(plot_write_svg(ref, &b1, "second") == MV_OK, "reference SVG: %s", mv_error());
        fails += EXPECT(same_bytes(svg, ref), "the SVG file is not the second write");
        plot_free(&a1);
        plot_free(&b1);
        remove(svg);
    }
    remove(st); remove(pnm); remove(y4m); remove(gif); remove(ref); remove(fr0); remove(fref0);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Fused multiply-add. mv_fma/mv_fmaf must be correctly rounded wherever they run: the cases
// below defeat two roundings (a*b, then +c) and at least one libm's (mingw-w64 10); the sweep's
// results must hash to what glibc's fma (correctly rounded) gives for the same inputs.

static uint64_t sw_state;
static uint64_t sw_next(void) { // xorshift64
    uint64_t s = sw_state;
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return sw_state = s;
}
// Random values made exactly (integer significand times a power of two) on any platform.
static double sw_double(int emin, int emax) {
    uint64_t r = sw_next();
    double v = ldexp((double)((r >> 11) | ((uint64_t)1 << 52)), emin + (int)(sw_next() % (uint64_t)(emax - emin + 1)) - 52);
    return (r & 1) ? -v : v;
}
static float sw_float(int emin, int emax) {
    uint64_t r = sw_next();
    float v = ldexpf((float)((r >> 40) | ((uint64_t)1 << 23)), emin + (int)(sw_next() % (uint64_t)(emax - emin + 1)) - 23);
    return (r & 1) ? -v : v;
}
// Six kinds: ordinary, cancellation (z = -x*y, or one ulp off), subnormal results,
// overflowing products, a tiny z, anything.
static void sw_doubles(int kind, double *x, double *y, double *z) {
    double p;
    switch (kind) {
    case 0: *x = sw_double(-60, 60); *y = sw_double(-60, 60); *z = sw_double(-130, 130); break;
    case 1:
        *x = sw_double(-30, 30); *y = sw_double(-30, 30); p = *x * *y; *z = -p;
        if (sw_next() & 1) *z = nextafter(*z, (sw_next() & 1) ? 1.0 : -1.0);
        break;
    case 2: *x = sw_double(-600, -500); *y = sw_double(-600, -450); *z = sw_double(-1080, -1000); break;
    case 3: *x = sw_double(500, 600); *y = sw_double(400, 520); *z = sw_double(1000, 1023); break;
    case 4: *x = sw_double(-5, 5); *y = sw_double(-5, 5); *z = sw_double(-110, -50); break;
    default: *x = sw_double(-1074, 1023); *y = sw_double(-1074, 1023); *z = sw_double(-1074, 1023); break;
    }
}
static void sw_floats(int kind, float *x, float *y, float *z) {
    float p;
    switch (kind) {
    case 0: *x = sw_float(-20, 20); *y = sw_float(-20, 20); *z = sw_float(-45, 45); break;
    case 1:
        *x = sw_float(-10, 10); *y = sw_float(-10, 10); p = *x * *y; *z = -p;
        if (sw_next() & 1) *z = nextafterf(*z, (sw_next() & 1) ? 1.0f : -1.0f);
        break;
    case 2: *x = sw_float(-80, -60); *y = sw_float(-80, -60); *z = sw_float(-150, -126); break;
    case 3: *x = sw_float(60, 70); *y = sw_float(55, 64); *z = sw_float(120, 127); break;
    case 4: *x = sw_float(-3, 3); *y = sw_float(-3, 3); p = *x * *y; *z = ldexpf(p, -24 - (int)(sw_next() % 4)); break;
    default: *x = sw_float(-149, 127); *y = sw_float(-149, 127); *z = sw_float(-149, 127); break;
    }
}

static int same_double(double a, double b) { return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b)); }

int test_port_fma(void) {
    // {x, y, z, correctly rounded x*y + z}, from glibc's fma; the comment is what two
    // roundings give
    static const double dc[][4] = {
        {0x1.0000002p0, 0x1.0000002p0, -1.0, 0x1.0000001p-26},                      // 0x1p-26
        {0x1.0000002p0, 0x1.0000002p0, 0x1p-54, 0x1.0000004p0},                     // a tie: to even
        {0x1.0000002p0, 0x1.0000002p0, 0x1.0000000000001p-54, 0x1.0000004000001p0}, // 0x1.0000004p0
        {0x1.8p-537, 0x1.4p-537, 0x1p-1074, 0x3p-1074},                             // subnormal
        {0x1p-600, -0x1p-600, 0.0, -0.0},                                           // +0
        {0x1.8p1023, 2.0, -0x1.fffffffffffffp1023, 0x1.0000000000001p1023},         // inf
        {0x1p600, 0x1p600, -0x1.fffffffffffffp1023, HUGE_VAL},                      // inf
        {0x1.fffffffffffffp1023, 0x1.fffffffffffffp1023, -HUGE_VAL, -HUGE_VAL},     // nan
        {-0.0, 1.0, -0.0, -0.0},
        {0x1p-1074, 0x1p-1, 0.0, 0.0},
        {0x1p-1074, 0x1.8p-1, 0.0, 0x1p-1074},
        {0x1.fffffffffffffp-1, 0x1.fffffffffffffp-1, -0x1.ffffffffffffep-1, 0x1p-106}, // 0
    };
    static const float fc[][4] = {
        {0x1.001p0f, 0x1.001p0f, 0x1p-80f, 0x1.002002p0f},    // 0x1.002p0: the double sum is a float tie
        {0x1.001p0f, 0x1.001p0f, -0x1p-80f, 0x1.002p0f},
        {0x1.001p0f, 0x1.001p0f, -0x1.002p0f, 0x1p-24f},
        {0x1.fffffep-1f, 0x1.fffffep-1f, -0x1.fffffcp-1f, 0x1p-48f},
        {0x1p-149f, 0x1.8p-1f, 0.0f, 0x1p-149f},
        {0x1.8p127f, 2.0f, -0x1.fffffep127f, 0x1.000002p127f}, // the product overflows float
        {0x1p-100f, -0x1p-100f, 0.0f, -0.0f},
    };
    // FNV-1a of the result bits of 60000 sweep cases, with glibc 2.36's fma and fmaf
    const uint64_t want_d = 0x14f6ac87e22c95d4u, want_f = 0x730cddf9d239e880u;
    uint64_t hd = 0xcbf29ce484222325u, hf = 0xcbf29ce484222325u;
    int fails = 0, i;
    size_t k;
    for (k = 0; k < sizeof dc / sizeof dc[0]; k++) {
        double r = mv_fma(dc[k][0], dc[k][1], dc[k][2]);
        fails += EXPECT(same_double(r, dc[k][3]), "mv_fma(%a, %a, %a) = %a, expected %a", dc[k][0], dc[k][1], dc[k][2], r, dc[k][3]);
    }
    fails += EXPECT(isnan(mv_fma(HUGE_VAL, 0.0, 1.0)) && isnan(mv_fma(1.0, 2.0, NAN)), "inf*0 and NaN give NaN");
    for (k = 0; k < sizeof fc / sizeof fc[0]; k++) {
        float r = mv_fmaf(fc[k][0], fc[k][1], fc[k][2]);
        fails += EXPECT(same_double(r, fc[k][3]), "mv_fmaf(%a, %a, %a) = %a, expected %a", (double)fc[k][0], (double)fc[k][1],
                        (double)fc[k][2], (double)r, (double)fc[k][3]);
    }
    fails += EXPECT(mv_fmaf(0x1p127f, 4.0f, 0.0f) == HUGE_VALF, "float overflow gives infinity");
    sw_state = 0x9e3779b97f4a7c15u;
    for (i = 0; i < 60000; i++) {
        double x, y, z, r;
        float a, b, c, q;
        uint64_t u;
        uint32_t v;
        sw_doubles(i % 6, &x, &y, &z);
        r = mv_fma(x, y, z);
        memcpy(&u, &r, 8);
        hd = (hd ^ u) * 0x100000001b3u;
        sw_floats(i % 6, &a, &b, &c);
        q = mv_fmaf(a, b, c);
        memcpy(&v, &q, 4);
        hf = (hf ^ v) * 0x100000001b3u;
    }
    fails += EXPECT(hd == want_d, "mv_fma sweep hash %#llx, glibc's fma gives %#llx", (unsigned long long)hd, (unsigned long long)want_d);
    fails += EXPECT(hf == want_f, "mv_fmaf sweep hash %#llx, glibc's fmaf gives %#llx", (unsigned long long)hf, (unsigned long long)want_f);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Paths: messages quote them as given (backslashes, drive letters, spaces); on Windows a
// path with backslashes is written and read like any other.

int test_port_paths(void) {
    const char *st = "C:\\no such dir\\mavref\\x.safetensors", *ppm = "D:\\missing\\a b\\x.ppm";
    StFile f;
    Image img;
    int fails = 0;
    fails += EXPECT(st_open(&f, st) == MV_ERR, "opened %s", st);
    fails += EXPECT(strstr(mv_error(), st) != NULL, "message does not quote the path: %s", mv_error());
    fails += EXPECT(image_read_pnm(&img, ppm) == MV_ERR, "opened %s", ppm);
    fails += EXPECT(strstr(mv_error(), ppm) != NULL, "message does not quote the path: %s", mv_error());
#ifdef _WIN32
    {
        const char *back = "build\\ports-f" STR(MAVREF_PRECISION) "-back.ppm", *fwd = TMP("back.ppm");
        unsigned char px[6] = {1, 2, 3, 4, 5, 6};
        img.width = 2; img.height = 1; img.channels = 3; img.data = px;
        fails += EXPECT(image_write_pnm(back, &img) == MV_OK, "%s: %s", back, mv_error());
        fails += EXPECT(image_read_pnm(&img, fwd) == MV_OK && img.width == 2 && memcmp(img.data, px, 6) == 0,
                        "%s written, %s not read back: %s", back, fwd, mv_error());
        image_free(&img);
        remove(fwd);
    }
#endif
    return fails;
}

// ---------------------------------------------------------------------------------------
// A 32-bit address space (i386, win32, wasm32) cannot hold the real UNet's 4.5 GB (float32)
// of parameters: the arena's size must be refused as it is computed, with a message, before
// any allocation (never a wrapped size_t and a too-small arena).

int test_port_real_unet_32bit(void) {
    UNetConfig cfg;
    ParamTable pt;
    int fails = 0;
    unet_config_default(&cfg);
    params_init(&pt);
    if (unet_declare_params(&pt, &cfg)) {
        harness_failf(__func__, "declaring the makeavid UNet: %s", mv_error());
        free_params(&pt);
        return 1;
    }
    fails += EXPECT((double)pt.numel * sizeof(real) > 4294967296.0, "the real UNet's %lu parameters fit in 4 GiB", (unsigned long)pt.numel);
    if (sizeof(size_t) < 8) { // elsewhere this would allocate gigabytes
        fails += EXPECT(params_alloc(&pt) == MV_ERR, "a %u-bit build allocated the real UNet", (unsigned)(8 * sizeof(size_t)));
        fails += EXPECT(strstr(mv_error(), "parameter arena") && strstr(mv_error(), "does not fit in size_t"), "message: %s", mv_error());
    }
    free_params(&pt);
    return fails;
}

// ---------------------------------------------------------------------------------------
// Sizes in messages and in the safetensors header are printed as unsigned long long: an
// unsigned long is 32 bits on Windows and would print 2^40 as 0.

int test_port_size_messages(void) {
    size_t out, shape[2];
    char buf[64];
    int fails = 0;
    // 2^33, 2^40 and 2^30 from a 64-bit constant: a 32-bit size_t has no such sizes (the return
    // below), and shifting a 32-bit size_t that far would not compile cleanly
    const unsigned long long big = 1ULL << 33, huge = 1ULL << 40, giga = 1ULL << 30;
    if (sizeof(size_t) < 8) return 0; // no such sizes here
    shape[0] = (size_t)big;
    shape[1] = 3;
    fails += EXPECT(mv_mul_size(&out, (size_t)huge, (size_t)giga) == MV_ERR, "2^70 fits in size_t");
    fails += EXPECT(strstr(mv_error(), "1099511627776 x 1073741824") != NULL, "message: %s", mv_error());
    fails += EXPECT(strcmp(shape_str(buf, sizeof buf, 2, shape), "(8589934592, 3)") == 0, "shape_str: %s", buf);
    return fails;
}
