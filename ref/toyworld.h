// toyworld.h: the toy world the demo model learns: short clips of one simple shape moving in
// a straight line on a plain background, each with its caption, e.g. "a red circle moving left".
//
// Everything is integer arithmetic on a splitmix64 stream (as ref/procedural.h), so that
// tools/toyworld.py makes the same clips byte for byte on any platform (corpus op `toyworld`).
//
//   colours     red, green, blue, yellow            (TOY_NCOLORS)
//   shapes      circle, bar, triangle               (TOY_NSHAPES)
//   directions  left, right, up, down               (TOY_NDIRS; up = towards row 0)
//   held out    8 of the 48 (colour, shape, direction) combinations never appear in training
//               (toy_held_out); every colour-shape, colour-direction and shape-direction pair
//               of them still does, so the model can compose them.
//
// Geometry, in units of 1/8 pixel ("q"): a clip is a size r (7..10.9 px at S = 64, scaled
// with S), a start centre (x0, y0) and a velocity of v per frame along its direction. The
// shape travels 40-55% of the frame over the clip and stays at least one pixel inside it.
// Pixel (x, y) is sampled at 4x4 points (8x + 2i + 1, 8y + 2j + 1), i, j = 0..3; with d the
// offset of a point from the centre:
//   circle    dx^2 + dy^2 <= r^2
//   bar       |dx| <= r and 2|dy| <= r           (a horizontal bar, twice as wide as tall)
//   triangle  dy <= r and 8|dx| <= 5(dy + r)     (apex up, base 2.5r wide at dy = r)
// and the pixel is (bg (16 - n) + fg n + 8) / 16 per channel, n = points inside (0..16).
#ifndef MAVREF_TOYWORLD_H
#define MAVREF_TOYWORLD_H

#include <stddef.h>
#include <stdint.h>

#define TOY_NCOLORS 4
#define TOY_NSHAPES 3
#define TOY_NDIRS 4
#define TOY_NCOMBOS (TOY_NCOLORS * TOY_NSHAPES * TOY_NDIRS)
#define TOY_NHELD 8

enum { TOY_LEFT, TOY_RIGHT, TOY_UP, TOY_DOWN };
enum { TOY_CIRCLE, TOY_BAR, TOY_TRIANGLE };

extern const char *const toy_color_names[TOY_NCOLORS];
extern const char *const toy_shape_names[TOY_NSHAPES];
extern const char *const toy_dir_names[TOY_NDIRS];
extern const unsigned char toy_colors[TOY_NCOLORS][3];
extern const unsigned char toy_background[3];

typedef struct {
    int color, shape, dir; // indices into the tables above
    long r;                // size, 1/8 px
    long x0, y0;           // centre in frame 0, 1/8 px
    long v;                // speed along dir, 1/8 px per frame (> 0)
} ToyClip;

// 1 if (color, shape, dir) is one of the TOY_NHELD combinations never shown in training.
int toy_held_out(int color, int shape, int dir);

// Clip `index` of the stream `seed`: its combination is drawn from the training combinations
// (held_out = 0), from the held-out ones (held_out = 1) or from all (held_out = -1); then its
// size, speed and start. S (>= 32) is the frame size in pixels, F (>= 2) the frame count.
void toy_clip(ToyClip *clip, uint64_t seed, uint64_t index, int held_out, int S, int F);

// The same clip for a given combination (a prompt): geometry drawn as toy_clip draws it.
void toy_clip_for(ToyClip *clip, int color, int shape, int dir, uint64_t seed, uint64_t index, int S, int F);

// Render the clip: frames (F, S, S, 3) RGB bytes.
void toy_render(unsigned char *frames, const ToyClip *clip, int S, int F);

// "a red circle moving left" into buf (at most n bytes with the NUL); returns its length.
int toy_caption(char *buf, size_t n, const ToyClip *clip);

// ---------------------------------------------------------------------------------------
// Reading a clip back (the demo's prompt-adherence test): what a person would check by eye.
//   colour   every pixel is given the nearest of the background and the four colours
//            (squared RGB distance); the blob of colour c is its pixels of class c
//   motion   d = centroid(last frame) - centroid(first frame), in pixels (x right, y down);
//            the clip moves in direction u (left (-1,0), right (1,0), up (0,-1), down (0,1))
//            by d.u, and its measured direction is the u with the largest d.u
//   shape    per frame, from the blob's moments: elongation = mu20 / mu02 (the second
//            central moments along x and y), skew = (cy - box centre) / h over its bounding
//            box of height h; elongation >= 2: bar (4 when drawn: twice as wide as tall; 1 for
//            a circle, 1.2 for the triangle); else skew > 0.08: triangle (apex up: centroid 1/6
//            below the box centre); else circle; the clip's shape is the class of most frames
//            (ties to the lower index)
typedef struct {
    int color;              // the colour class with the most pixels over the clip (-1: none)
    long pixels0, pixels1;  // the asked colour's pixels in the first and last frame
    double dx, dy;          // displacement of the asked colour's centroid, first to last frame
    int dir;                // measured direction (-1: no blob in the first or last frame)
    int shape;              // measured shape of the asked colour's blob (-1: no frame has one)
} ToyMeasure;

#define TOY_MIN_BLOB 12 // fewer pixels of a colour in a frame: no blob there

void toy_measure(ToyMeasure *m,
                 const unsigned char *frames, // (F,S,S,3)
                 int S, int F, int color);

// The fixed (prompt, seed) pairs of the prompt-adherence test (mavref toy-eval): every
// held-out combination and 16 training ones spread over the colours, shapes and directions.
#define TOY_EVAL_PAIRS 24
void toy_eval_pair(int k, int *color, int *shape, int *dir, uint64_t *seed);

// Displacement along direction dir (pixels).
double toy_along(const ToyMeasure *m, int dir);

#endif
