// toyworld.c: clips of simple moving shapes with captions (see toyworld.h for the rules).
#include "toyworld.h"

#include <stdio.h>

#include "procedural.h"

const char *const toy_color_names[TOY_NCOLORS] = {"red", "green", "blue", "yellow"};
const char *const toy_shape_names[TOY_NSHAPES] = {"circle", "bar", "triangle"};
const char *const toy_dir_names[TOY_NDIRS] = {"left", "right", "up", "down"};
const unsigned char toy_colors[TOY_NCOLORS][3] = {
    {220, 50, 47}, {60, 170, 60}, {40, 90, 220}, {235, 200, 30}};
const unsigned char toy_background[3] = {24, 24, 32};

// (colour, shape, direction) never shown in training.
static const int held[TOY_NHELD][3] = {
    {0, TOY_CIRCLE, TOY_DOWN},   {0, TOY_TRIANGLE, TOY_RIGHT}, {1, TOY_BAR, TOY_UP},
    {1, TOY_TRIANGLE, TOY_LEFT}, {2, TOY_CIRCLE, TOY_RIGHT},   {2, TOY_BAR, TOY_LEFT},
    {3, TOY_CIRCLE, TOY_UP},     {3, TOY_BAR, TOY_DOWN}};

int toy_held_out(int color, int shape, int dir) {
    for (int k = 0; k < TOY_NHELD; k++)
        if (held[k][0] == color && held[k][1] == shape && held[k][2] == dir) return 1;
    return 0;
}

// Draw j of clip `index`: splitmix64(splitmix64(key + index) + j).
static uint64_t draw(uint64_t seed, uint64_t index, unsigned j) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64("toyworld"));
    return proc_splitmix64(proc_splitmix64(key + index) + j);
}

// Draws 1..4: size, travel, start along the motion, position across it.
static void toy_geometry(ToyClip *c, uint64_t seed, uint64_t index, int S, int F) {
    long side = 8L * S; // frame size in 1/8 px
    c->r = (long)S * (long)(56 + draw(seed, index, 1) % 32) / 64;
    long travel = side * (long)(40 + draw(seed, index, 2) % 16) / 100;
    c->v = travel / (F - 1);
    if (c->v < 1) c->v = 1;
    travel = c->v * (F - 1);
    long margin = c->r + 8; // the shape's reach plus one pixel
    long room = side - 2 * margin - travel;
    if (room < 0) room = 0;
    long along = margin + (long)(draw(seed, index, 3) % (uint64_t)(room + 1));
    long across_room = side - 2 * margin;
    if (across_room < 0) across_room = 0;
    long across = margin + (long)(draw(seed, index, 4) % (uint64_t)(across_room + 1));
    // Moving towards smaller coordinates starts at the far end of its range.
    if (c->dir == TOY_LEFT || c->dir == TOY_UP) along += travel;
    if (c->dir == TOY_LEFT || c->dir == TOY_RIGHT) { c->x0 = along; c->y0 = across; }
    else { c->x0 = across; c->y0 = along; }
}

static void set_combo(ToyClip *c, int k) {
    c->color = k / (TOY_NSHAPES * TOY_NDIRS);
    c->shape = k / TOY_NDIRS % TOY_NSHAPES;
    c->dir = k % TOY_NDIRS;
}

void toy_clip(ToyClip *clip, uint64_t seed, uint64_t index, int held_out, int S, int F) {
    // Combination: the m-th of the allowed ones, in (colour, shape, direction) order.
    int n = held_out < 0 ? TOY_NCOMBOS : held_out ? TOY_NHELD : TOY_NCOMBOS - TOY_NHELD;
    int m = (int)(draw(seed, index, 0) % (uint64_t)n);
    for (int k = 0; k < TOY_NCOMBOS; k++) {
        set_combo(clip, k);
        int h = toy_held_out(clip->color, clip->shape, clip->dir);
        if (held_out >= 0 && h != held_out) continue;
        if (m-- == 0) break;
    }
    toy_geometry(clip, seed, index, S, F);
}

void toy_clip_for(ToyClip *clip, int color, int shape, int dir, uint64_t seed, uint64_t index, int S, int F) {
    clip->color = color;
    clip->shape = shape;
    clip->dir = dir;
    toy_geometry(clip, seed, index, S, F);
}

static int inside(const ToyClip *c, long dx, long dy) {
    long r = c->r;
    switch (c->shape) {
    case TOY_CIRCLE: return dx * dx + dy * dy <= r * r;
    case TOY_BAR: return dx <= r && dx >= -r && 2 * dy <= r && 2 * dy >= -r;
    default: { // triangle, apex up
        long adx = dx < 0 ? -dx : dx;
        return dy <= r && 8 * adx <= 5 * (dy + r);
    }
    }
}

void toy_render(unsigned char *frames, const ToyClip *c, int S, int F) { // frames (F,S,S,3)
    const unsigned char *fg = toy_colors[c->color], *bg = toy_background;
    long ux = c->dir == TOY_LEFT ? -1 : c->dir == TOY_RIGHT ? 1 : 0;
    long uy = c->dir == TOY_UP ? -1 : c->dir == TOY_DOWN ? 1 : 0;
    for (int f = 0; f < F; f++) {
        long cx = c->x0 + ux * c->v * f, cy = c->y0 + uy * c->v * f;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int n = 0;
                for (int j = 0; j < 4; j++)
                    for (int i = 0; i < 4; i++)
                        n += inside(c, 8L * x + 2 * i + 1 - cx, 8L * y + 2 * j + 1 - cy);
                unsigned char *p = frames + (((size_t)f * S + y) * S + x) * 3;
                for (int ch = 0; ch < 3; ch++) p[ch] = (unsigned char)((bg[ch] * (16 - n) + fg[ch] * n + 8) / 16);
            }
    }
}

int toy_caption(char *buf, size_t n, const ToyClip *c) {
    return snprintf(buf, n, "a %s %s moving %s", toy_color_names[c->color], toy_shape_names[c->shape],
                    toy_dir_names[c->dir]);
}

// ---------------------------------------------------------------------------------------
// Reading a clip back

// The palette class of one pixel: 0 background, 1 + c for colour c.
static int pixel_class(const unsigned char *px) {
    int best = 0, k, i;
    long bd = -1;
    for (k = 0; k <= TOY_NCOLORS; k++) {
        const unsigned char *ref = k == 0 ? toy_background : toy_colors[k - 1];
        long d = 0;
        for (i = 0; i < 3; i++) d += ((long)px[i] - ref[i]) * ((long)px[i] - ref[i]);
        if (bd < 0 || d < bd) { bd = d; best = k; }
    }
    return best;
}

// One frame's blob of palette class k: pixel count, centroid, second central moments (per
// pixel), bounding box.
typedef struct { long n; double cx, cy, mxx, myy; int x0, x1, y0, y1; } Blob;

static void frame_blob(Blob *b, const unsigned char *img, int S, int k) {
    double sx = 0, sy = 0, sxx = 0, syy = 0;
    int x, y;
    b->n = 0; b->x0 = S; b->y0 = S; b->x1 = -1; b->y1 = -1;
    for (y = 0; y < S; y++)
        for (x = 0; x < S; x++) {
            if (pixel_class(img + ((size_t)y * S + x) * 3) != k) continue;
            b->n++; sx += x; sy += y; sxx += (double)x * x; syy += (double)y * y;
            if (x < b->x0) b->x0 = x;
            if (x > b->x1) b->x1 = x;
            if (y < b->y0) b->y0 = y;
            if (y > b->y1) b->y1 = y;
        }
    b->cx = b->n ? sx / (double)b->n : 0;
    b->cy = b->n ? sy / (double)b->n : 0;
    b->mxx = b->n ? sxx / (double)b->n - b->cx * b->cx : 0; // small integers: exact enough
    b->myy = b->n ? syy / (double)b->n - b->cy * b->cy : 0;
}

static int blob_shape(const Blob *b) {
    double h = (double)(b->y1 - b->y0 + 1);
    double skew = (b->cy - 0.5 * (b->y0 + b->y1)) / h;
    if (b->mxx >= 2 * b->myy) return TOY_BAR; // elongation mu20 / mu02 >= 2
    return skew > 0.08 ? TOY_TRIANGLE : TOY_CIRCLE;
}

double toy_along(const ToyMeasure *m, int dir) {
    switch (dir) {
    case TOY_LEFT: return -m->dx;
    case TOY_RIGHT: return m->dx;
    case TOY_UP: return -m->dy;
    default: return m->dy;
    }
}

void toy_measure(ToyMeasure *m, const unsigned char *frames, int S, int F, int color) {
    long count[TOY_NCOLORS] = {0}, votes[TOY_NSHAPES] = {0};
    size_t fs = (size_t)S * S * 3;
    Blob first = {0, 0, 0, 0, 0, 0, 0, 0, 0}, last = first, b;
    int f, k, i;
    for (f = 0; f < F; f++) // the colour with the most pixels over the clip
        for (i = 0; i < S * S; i++) {
            k = pixel_class(frames + f * fs + (size_t)i * 3);
            if (k > 0) count[k - 1]++;
        }
    m->color = -1;
    for (k = 0; k < TOY_NCOLORS; k++)
        if (count[k] > 0 && (m->color < 0 || count[k] > count[m->color])) m->color = k;
    for (f = 0; f < F; f++) {
        frame_blob(&b, frames + f * fs, S, color + 1);
        if (f == 0) first = b;
        if (f == F - 1) last = b;
        if (b.n >= TOY_MIN_BLOB) votes[blob_shape(&b)]++;
    }
    m->pixels0 = first.n; m->pixels1 = last.n;
    m->dx = last.cx - first.cx; m->dy = last.cy - first.cy;
    m->dir = -1;
    if (first.n >= TOY_MIN_BLOB && last.n >= TOY_MIN_BLOB) {
        m->dir = 0;
        for (k = 1; k < TOY_NDIRS; k++)
            if (toy_along(m, k) > toy_along(m, m->dir)) m->dir = k;
    }
    m->shape = -1;
    for (k = 0; k < TOY_NSHAPES; k++)
        if (votes[k] > 0 && (m->shape < 0 || votes[k] > votes[m->shape])) m->shape = k;
}

void toy_eval_pair(int k, int *color, int *shape, int *dir, uint64_t *seed) {
    // 8 held-out, then 16 training combinations: each colour 4x, each shape 5-6x, each direction 4x
    static const int train[16][3] = {
        {0, TOY_CIRCLE, TOY_LEFT},   {0, TOY_BAR, TOY_UP},     {0, TOY_TRIANGLE, TOY_DOWN}, {0, TOY_BAR, TOY_RIGHT},
        {1, TOY_CIRCLE, TOY_RIGHT},  {1, TOY_BAR, TOY_DOWN},   {1, TOY_TRIANGLE, TOY_UP},   {1, TOY_CIRCLE, TOY_LEFT},
        {2, TOY_TRIANGLE, TOY_LEFT}, {2, TOY_CIRCLE, TOY_UP},     {2, TOY_BAR, TOY_DOWN},   {2, TOY_TRIANGLE, TOY_RIGHT},
        {3, TOY_BAR, TOY_LEFT},   {3, TOY_TRIANGLE, TOY_DOWN}, {3, TOY_CIRCLE, TOY_RIGHT},  {3, TOY_TRIANGLE, TOY_UP}};
    const int *c = k < TOY_NHELD ? held[k] : train[(k - TOY_NHELD) % 16];
    *color = c[0]; *shape = c[1]; *dir = c[2];
    *seed = 1000u + (uint64_t)k;
}
