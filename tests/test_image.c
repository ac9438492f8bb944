// test_image.c: PNM readers on malformed files, the writers' structure (GIF decoded by a
// small LZW decoder here, Y4M sizes and levels), atomic writing, the noise generator's
// pieces and noise files, and scheduler argument checks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests.h"
#include "../ref/image.h"
#include "../ref/noise.h"
#include "../ref/scheduler.h"

// A file name under build/ that concurrent test runs do not share.
static const char *tmp_name(char *buf, size_t cap, const char *stem) {
    static unsigned long salt;
    int local;
    if (!salt) salt = (unsigned long)time(NULL) ^ (unsigned long)(size_t)&local ^ (unsigned long)clock();
    snprintf(buf, cap, "build/mvimg_%lx_%d_%s", salt, MAVREF_PRECISION, stem);
    return buf;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    fwrite(data, 1, n, fp);
    fclose(fp);
    return 0;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    unsigned char *b;
    long len;
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    b = (unsigned char *)malloc(len > 0 ? (size_t)len : 1);
    if (b) *n = fread(b, 1, (size_t)len, fp);
    fclose(fp);
    return b;
}

static int file_exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

// The reader must refuse `content` with an error that names the file and contains `needle`.
static int expect_pnm_fails(const char *content, size_t n, const char *needle) {
    char path[256];
    Image img;
    int fails = 0;
    tmp_name(path, sizeof path, "bad.pnm");
    write_bytes(path, content, n);
    if (image_read_pnm(&img, path) == MV_OK) {
        image_free(&img);
        harness_failf("pnm_bad_files", "accepted a file that should fail with '%s'", needle);
        remove(path);
        return 1;
    }
    fails += EXPECT(strstr(mv_error(), path) != NULL, "error does not name the file: %s", mv_error());
    fails += EXPECT(strstr(mv_error(), needle) != NULL, "error lacks '%s': %s", needle, mv_error());
    remove(path);
    return fails;
}

int test_pnm_bad_files(void) {
    static const char trunc[] = "P6\n2 2\n255\n\1\2\3\4\5\6\7";
    static const char extra[] = "P5 1 1 255\n\1\2";
    static const char over[] = "P5 2 1 15\n\1\20";
    char path[256];
    Image img;
    int fails = 0;
    fails += expect_pnm_fails("P3\n1 1\n255\n0 0 0\n", 17, "P3 is not supported");
    fails += expect_pnm_fails("XX\n1 1\n255\n", 11, "bad magic");
    fails += expect_pnm_fails("", 0, "bad magic");
    fails += expect_pnm_fails("P6\n4 ", 5, "truncated PNM header");
    fails += expect_pnm_fails("P6\n4 x\n255\n", 11, "bad PNM header");
    fails += expect_pnm_fails(trunc, sizeof trunc - 1, "truncated");
    fails += expect_pnm_fails("P6\n100000 100000\n255\n", 21, "out of range");
    fails += expect_pnm_fails("P6\n99999999999999999999 2\n255\n", 30, "absurdly large");
    fails += expect_pnm_fails("P6\n0 2\n255\n", 11, "out of range");
    fails += expect_pnm_fails("P5\n1 1\n0\n\0", 10, "bad maxval");
    fails += expect_pnm_fails("P5\n1 1\n65535\n\0\0", 15, "16-bit");
    fails += expect_pnm_fails("P5\n1 1\n70000\n\0", 14, "bad maxval");
    fails += expect_pnm_fails(extra, sizeof extra - 1, "after the 1 bytes");
    fails += expect_pnm_fails(over, sizeof over - 1, "exceeds maxval");
    fails += expect_pnm_fails("P5 1 1 255", 10, "truncated PNM header");
    // a missing file is named too
    tmp_name(path, sizeof path, "missing.ppm");
    fails += EXPECT(image_read_pnm(&img, path) == MV_ERR && strstr(mv_error(), path), "missing file: %s", mv_error());
    return fails;
}

int test_pnm_roundtrip(void) {
    char path[256];
    static const char p5[] = "P5\n# a comment\n3 1 # another\n15\n\0\7\17";
    Image a, b;
    size_t i;
    int fails = 0;
    a.width = 5; a.height = 3; a.channels = 3;
    a.data = (unsigned char *)malloc(5 * 3 * 3);
    if (!a.data) return 1;
    for (i = 0; i < 45; i++) a.data[i] = (unsigned char)(i * 37 + 11);
    tmp_name(path, sizeof path, "rt.ppm");
    fails += EXPECT(image_write_pnm(path, &a) == MV_OK, "write: %s", mv_error());
    if (image_read_pnm(&b, path) == MV_OK) {
        fails += EXPECT(b.width == 5 && b.height == 3 && b.channels == 3, "size");
        fails += EXPECT(memcmp(a.data, b.data, 45) == 0, "pixels differ after a round trip");
        image_free(&b);
    } else {
        fails += EXPECT(0, "read back: %s", mv_error());
    }
    remove(path);
    free(a.data);
    // comments and a small maxval (rescaled to 0..255)
    tmp_name(path, sizeof path, "p5.pgm");
    write_bytes(path, p5, sizeof p5 - 1);
    if (image_read_pnm(&b, path) == MV_OK) {
        fails += EXPECT(b.width == 3 && b.height == 1 && b.channels == 1, "P5 size");
        fails += EXPECT(b.data[0] == 0 && b.data[1] == 119 && b.data[2] == 255, "maxval 15 rescale: %u %u %u",
                        b.data[0], b.data[1], b.data[2]);
        image_free(&b);
    } else {
        fails += EXPECT(0, "P5 with comments: %s", mv_error());
    }
    remove(path);
    return fails;
}

int test_atomic_writers(void) {
    char path[256], tmp[300];
    unsigned char px[2 * 2 * 3] = {0};
    Image img;
    int fails = 0;
    img.width = 2; img.height = 2; img.channels = 3; img.data = px;
    // a directory that does not exist: an error naming the file, and nothing left behind
    tmp_name(path, sizeof path, "nodir/x.ppm");
    fails += EXPECT(image_write_pnm(path, &img) == MV_ERR && strstr(mv_error(), path), "no dir: %s", mv_error());
    fails += EXPECT(video_write_gif(path, px, 1, 2, 2, 24, 1) == MV_ERR, "gif into a missing dir");
    fails += EXPECT(video_write_y4m(path, px, 1, 2, 2, 24, 1) == MV_ERR, "y4m into a missing dir");
    // success leaves no .tmp
    tmp_name(path, sizeof path, "ok.ppm");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fails += EXPECT(image_write_pnm(path, &img) == MV_OK, "write: %s", mv_error());
    fails += EXPECT(file_exists(path) && !file_exists(tmp), "file present, .tmp gone");
    remove(path);
    fails += EXPECT(video_write_y4m(path, px, 0, 2, 2, 24, 1) == MV_ERR && !file_exists(path), "0 frames refused");
    fails += EXPECT(video_write_gif(path, px, 1, 2, 2, 0, 1) == MV_ERR && !file_exists(path), "fps 0 refused");
    // numbered frames: PREFIX000000.ppm, PREFIX000001.ppm, each a P6 of its frame
    {
        unsigned char two[2 * 2 * 2 * 3];
        char prefix[256], name[300];
        Image back;
        size_t i;
        for (i = 0; i < sizeof two; i++) two[i] = (unsigned char)(i * 11);
        tmp_name(prefix, sizeof prefix, "fr_");
        fails += EXPECT(video_write_frames(prefix, two, 2, 2, 2) == MV_OK, "frames: %s", mv_error());
        for (i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "%s%06lu.ppm", prefix, (unsigned long)i);
            if (image_read_pnm(&back, name) == MV_OK) {
                fails += EXPECT(back.width == 2 && back.height == 2 && back.channels == 3 &&
                                    memcmp(back.data, two + i * 12, 12) == 0, "frame %lu differs", (unsigned long)i);
                image_free(&back);
            } else {
                fails += EXPECT(0, "frame %lu: %s", (unsigned long)i, mv_error());
            }
            remove(name);
        }
    }
    return fails;
}

// ---------------------------------------------------------------------------------------
// A GIF reader just large enough to check our files: returns the number of frames, fills
// the delays and the decoded indices of every frame.

static int lzw_decode(const unsigned char *p, size_t n, size_t *pos, unsigned char *out, size_t npix) {
    static unsigned char data[1 << 20];
    size_t nd = 0, bitpos = 0, nout = 0;
    unsigned short prefix[4096];
    unsigned char suffix[4096], first[4096], stack[4096];
    unsigned next = 258, width = 9, prev = 4096, code, i;
    if (*pos >= n || p[*pos] != 8) return -1;
    (*pos)++;
    while (*pos < n && p[*pos] != 0) { // gather the sub-blocks
        size_t len = p[*pos];
        if (*pos + 1 + len > n || nd + len > sizeof data) return -1;
        memcpy(data + nd, p + *pos + 1, len);
        nd += len;
        *pos += 1 + len;
    }
    if (*pos >= n) return -1;
    (*pos)++;
    for (i = 0; i < 256; i++) { prefix[i] = 4096; suffix[i] = first[i] = (unsigned char)i; }
    for (;;) {
        unsigned sp = 0, c;
        if (bitpos + width > nd * 8) return -1; // ran out before the end code
        code = 0;
        for (i = 0; i < width; i++, bitpos++) code |= (unsigned)((data[bitpos / 8] >> (bitpos % 8)) & 1) << i;
        if (code == 256) { next = 258; width = 9; prev = 4096; continue; }
        if (code == 257) break;
        if (code > next || (code == next && prev == 4096)) return -1;
        if (prev != 4096 && next < 4096) {
            prefix[next] = (unsigned short)prev;
            first[next] = first[prev];
            suffix[next] = code < next ? first[code] : first[prev];
            next++;
        }
        for (c = code; c != 4096; c = prefix[c]) stack[sp++] = suffix[c];
        while (sp) {
            if (nout >= npix) return -1;
            out[nout++] = stack[--sp];
        }
        prev = code;
        if (next == (1u << width) && width < 12) width++;
    }
    return nout == npix ? 0 : -1;
}

static int read_gif(const char *path, size_t W, size_t H, unsigned *delays, unsigned char *idx, size_t maxf, int *loops) {
    size_t n = 0, pos;
    unsigned char *p = read_all(path, &n);
    int frames = 0;
    *loops = 0;
    if (!p || n < 13 + 768 || memcmp(p, "GIF89a", 6) || p[6] + 256u * p[7] != W || p[8] + 256u * p[9] != H || p[10] != 0xF7) {
        free(p);
        return -1;
    }
    pos = 13 + 768;
    while (pos < n && p[pos] != 0x3B) {
        if (p[pos] == 0x21 && pos + 2 < n && p[pos + 1] == 0xFF) {
            if (pos + 19 <= n && memcmp(p + pos + 3, "NETSCAPE2.0", 11) == 0 && p[pos + 16] == 0 && p[pos + 17] == 0) *loops = 1;
            pos += 19;
        } else if (p[pos] == 0x21 && pos + 8 <= n && p[pos + 1] == 0xF9) {
            if ((size_t)frames < maxf) delays[frames] = p[pos + 4] + 256u * p[pos + 5];
            pos += 8;
        } else if (p[pos] == 0x2C && pos + 10 <= n) {
            if ((size_t)frames >= maxf || p[pos + 5] + 256u * p[pos + 6] != W || p[pos + 7] + 256u * p[pos + 8] != H) break;
            pos += 10;
            if (lzw_decode(p, n, &pos, idx + (size_t)frames * W * H, W * H)) { free(p); return -2; }
            frames++;
        } else {
            break;
        }
    }
    if (pos >= n || p[pos] != 0x3B || pos + 1 != n) frames = -3;
    free(p);
    return frames;
}

int test_gif_structure(void) {
    // two sizes: a small odd one, and noise large enough to fill the 4096-code table
    static const size_t sizes[2][3] = {{3, 7, 13}, {2, 150, 211}}; // F, H, W
    char path[256];
    int fails = 0, s;
    for (s = 0; s < 2; s++) {
        size_t F = sizes[s][0], H = sizes[s][1], W = sizes[s][2], i, f, x, y;
        unsigned char *rgb = (unsigned char *)malloc(F * H * W * 3), *idx = (unsigned char *)malloc(F * H * W);
        unsigned delays[8];
        int frames, loops;
        uint64_t z = 12345;
        if (!rgb || !idx) { free(rgb); free(idx); return 1; }
        for (i = 0; i < F * H * W * 3; i++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            rgb[i] = s == 0 ? (unsigned char)(i * 29) : (unsigned char)(z >> 56);
        }
        tmp_name(path, sizeof path, "v.gif");
        fails += EXPECT(video_write_gif(path, rgb, F, H, W, 24, 1) == MV_OK, "write gif: %s", mv_error());
        frames = read_gif(path, W, H, delays, idx, 8, &loops);
        fails += EXPECT(frames == (int)F, "GIF %lux%lu: read %d frames, wrote %lu", (unsigned long)W, (unsigned long)H, frames,
                        (unsigned long)F);
        fails += EXPECT(loops == 1, "no NETSCAPE2.0 loop-forever extension");
        for (f = 0; frames == (int)F && f < F; f++) {
            size_t bad = 0;
            fails += EXPECT(delays[f] == gif_frame_delay(f, 24, 1), "delay of frame %lu", (unsigned long)f);
            for (y = 0; y < H; y++)
                for (x = 0; x < W; x++)
                    bad += idx[(f * H + y) * W + x] != gif_palette_index(rgb + ((f * H + y) * W + x) * 3, x, y);
            fails += EXPECT(bad == 0, "frame %lu: %lu pixels decode to other palette indices", (unsigned long)f, (unsigned long)bad);
        }
        remove(path);
        free(rgb);
        free(idx);
    }
    // 24 fps: delays 4,4,4,5,4,4 (sum of 24 frames = 100 cs); 1 fps: 100; 60 fps clamps to 2
    {
        unsigned sum = 0;
        size_t k;
        for (k = 0; k < 24; k++) sum += gif_frame_delay(k, 24, 1);
        fails += EXPECT(sum == 100, "24 delays at 24 fps sum to %u cs, not 100", sum);
        fails += EXPECT(gif_frame_delay(0, 1, 1) == 100 && gif_frame_delay(3, 60, 1) == 2, "delays at 1 and 60 fps");
    }
    // palette: pure colours map to their exact entries whatever the dither threshold
    {
        static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
        unsigned char c[3];
        gif_palette_color(gif_palette_index(white, 1, 2), c);
        fails += EXPECT(c[0] == 255 && c[1] == 255 && c[2] == 255, "white");
        fails += EXPECT(gif_palette_index(black, 3, 3) == 0, "black");
    }
    return fails;
}

int test_y4m_structure(void) {
    char path[256], head[128];
    size_t F = 2, H = 3, W = 5, n = 0, expect, hl, cw = 3, ch = 2;
    unsigned char rgb[2 * 3 * 5 * 3], *p;
    int fails = 0;
    memset(rgb, 0, sizeof rgb);
    memset(rgb + 3 * 5 * 3, 255, 3 * 5 * 3); // frame 1 white, frame 0 black
    tmp_name(path, sizeof path, "v.y4m");
    fails += EXPECT(video_write_y4m(path, rgb, F, H, W, 24000, 1001) == MV_OK, "write y4m: %s", mv_error());
    p = read_all(path, &n);
    if (!p) return fails + 1;
    snprintf(head, sizeof head, "YUV4MPEG2 W5 H3 F24000:1001 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n");
    hl = strlen(head);
    expect = hl + F * (6 + W * H + 2 * cw * ch);
    fails += EXPECT(n == expect, "Y4M size %lu, expected %lu", (unsigned long)n, (unsigned long)expect);
    fails += EXPECT(n >= hl && memcmp(p, head, hl) == 0, "Y4M header");
    if (n == expect) {
        const unsigned char *f0 = p + hl, *f1 = f0 + 6 + W * H + 2 * cw * ch;
        fails += EXPECT(memcmp(f0, "FRAME\n", 6) == 0 && memcmp(f1, "FRAME\n", 6) == 0, "FRAME markers");
        fails += EXPECT(f0[6] == 16 && f0[6 + W * H - 1] == 16 && f0[6 + W * H] == 128, "black: Y 16, chroma 128");
        fails += EXPECT(f1[6] == 235 && f1[6 + W * H + 2 * cw * ch - 1] == 128, "white: Y 235, chroma 128");
    }
    free(p);
    remove(path);
    return fails;
}

// ---------------------------------------------------------------------------------------

int test_noise_pieces(void) {
    int fails = 0, i;
    double maxl = 0, maxt = 0, sum = 0, sum2 = 0;
    double *z = (double *)malloc(100001 * sizeof(double)), *z2 = (double *)malloc(7 * sizeof(double));
    real r[7];
    const double PI = 3.14159265358979323846;
    if (!z || !z2) { free(z); free(z2); return 1; }
    fails += EXPECT(noise_log01(1.0) == 0.0, "log01(1) = %g", noise_log01(1.0));
    for (i = 1; i <= 2000; i++) {
        double x = i / 2000.0 * (i % 2 ? 1.0 : 1e-12), c, s;
        double u = (i - 1) / 2000.0;
        double e = fabs(noise_log01(x) - log(x)) / fabs(log(x) == 0 ? 1 : log(x));
        if (e > maxl) maxl = e;
        noise_sincos_turn(u, &c, &s);
        e = fabs(c - cos(2 * PI * u)) + fabs(s - sin(2 * PI * u));
        if (e > maxt) maxt = e;
    }
    fails += EXPECT(maxl < 4e-15, "log01 relative error %g", maxl);
    fails += EXPECT(maxt < 4e-15, "sincos error %g", maxt);
    noise_normal_f64(z, 100001, 5, "stats");
    for (i = 0; i < 100001; i++) { sum += z[i]; sum2 += z[i] * z[i]; }
    fails += EXPECT(fabs(sum / 100001) < 0.015 && fabs(sum2 / 100001 - 1) < 0.02, "mean %g, variance %g", sum / 100001, sum2 / 100001);
    // a prefix of a stream is the shorter stream; real values are the cast doubles
    noise_normal_f64(z2, 7, 5, "stats");
    noise_normal(r, 7, 5, "stats");
    for (i = 0; i < 7; i++) fails += EXPECT(z2[i] == z[i] && r[i] == (real)z[i], "prefix element %d", i);
    free(z);
    free(z2);
    return fails;
}

int test_noise_file(void) {
    char path[256];
    StWriter w;
    Tensor t, got;
    size_t shape[3] = {2, 3, 4}, wrong[3] = {2, 3, 5};
    size_t i;
    int fails = 0;
    if (tensor_alloc(&t, 3, shape)) return 1;
    for (i = 0; i < t.numel; i++) t.data[i] = (real)i - 5;
    st_writer_init(&w);
    tmp_name(path, sizeof path, "noise.safetensors");
    fails += EXPECT(st_writer_add(&w, "noise", &t, ST_REAL) == 0 && st_writer_save(&w, path) == 0, "save: %s", mv_error());
    st_writer_free(&w);
    if (noise_read(&got, path, "noise", 3, shape) == MV_OK) {
        fails += EXPECT(memcmp(got.data, t.data, t.numel * sizeof(real)) == 0, "values");
        tensor_free(&got);
    } else {
        fails += EXPECT(0, "read: %s", mv_error());
    }
    fails += EXPECT(noise_read(&got, path, "noise", 3, wrong) == MV_ERR && strstr(mv_error(), path) &&
                        strstr(mv_error(), "'noise'") && strstr(mv_error(), "(2, 3, 5)"), "wrong shape: %s", mv_error());
    fails += EXPECT(noise_read(&got, path, "latents", 3, shape) == MV_ERR && strstr(mv_error(), "'latents'"), "missing: %s", mv_error());
    remove(path);
    tensor_free(&t);
    return fails;
}

int test_sched_args(void) {
    SchedConfig cfg;
    Scheduler s;
    real x[4] = {0}, e[4] = {0};
    int64_t t[2] = {0, 1000};
    int fails = 0;
    sched_config_sd(&cfg);
    fails += EXPECT(sched_init(&s, SCHED_DPM, &cfg, 1001, 4) == MV_ERR && strstr(mv_error(), "1001"), "1001 steps: %s", mv_error());
    fails += EXPECT(sched_init(&s, SCHED_DDIM, &cfg, -1, 4) == MV_ERR, "-1 steps");
    if (sched_init(&s, SCHED_DDIM, &cfg, 2, 4) == MV_OK) {
        fails += EXPECT(sched_step(&s, x, e, x, 2) == MV_ERR && strstr(mv_error(), "step 2"), "step out of range: %s", mv_error());
        fails += EXPECT(sched_add_noise(x, x, e, t, 2, 2, &s) == MV_ERR && strstr(mv_error(), "1000"), "timestep 1000: %s", mv_error());
        sched_free(&s);
    } else {
        fails += EXPECT(0, "init: %s", mv_error());
    }
    return fails;
}
