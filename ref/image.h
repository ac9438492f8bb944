// image.h: images in and videos out, and the two pixel rules of the pipeline.
//
//   image_read_pnm   binary PPM (P6, RGB) and PGM (P5, gray), 8-bit (maxval 1..255, rescaled
//                    to 0..255 when below 255); 16-bit files are refused with a clear error
//   image_write_pnm  P6 (3 channels) or P5 (1 channel)
//   video_write_y4m  YUV4MPEG2, C420jpeg, BT.601 limited range (SPEC.md section 8.8)
//   video_write_gif  animated GIF89a, fixed 6x7x6 palette, 4x4 ordered dithering, loops forever
//   video_write_frames  numbered P6 files PREFIX000000.ppm, PREFIX000001.ppm, ...
// Every writer writes NAME.tmp and renames it to NAME, so a failure never leaves a partial
// file under the final name. Errors name the file.
//
//   image_quantize      round((x/2 + 0.5) * 255) half to even, then clip to [0, 255]
//                       (jax_inference.py's ((x/2+0.5)*255).round().clip(0,255).astype(uint8))
//   image_resize_nearest  jax.image.resize(..., 'nearest') on the last two axes
#ifndef MAVREF_IMAGE_H
#define MAVREF_IMAGE_H

#include "mavref.h"

// Largest width or height accepted by the readers (and the writers' formats).
#define IMAGE_MAX_DIM 32768

typedef struct {
    size_t width, height, channels; // channels 1 (gray) or 3 (RGB)
    unsigned char *data;            // (height, width, channels) row-major, owned
} Image;

int image_read_pnm(Image *img, const char *path);
int image_write_pnm(const char *path, const Image *img);
void image_free(Image *img);

// frames: (F, H, W, 3) RGB bytes.
int video_write_y4m(const char *path, const unsigned char *frames, size_t F, size_t H, size_t W,
                    unsigned fps_num, unsigned fps_den);
int video_write_gif(const char *path, const unsigned char *frames, size_t F, size_t H, size_t W,
                    unsigned fps_num, unsigned fps_den);
// Writes PREFIX%06u.ppm for each frame.
int video_write_frames(const char *prefix, const unsigned char *frames, size_t F, size_t H, size_t W);

// GIF delay of frame k in 1/100 s: the rounded end time minus the rounded start time, so the
// average rate is exact (24 fps -> 4, 4, 4, 5, 4, 4, ...); at least 2 (browsers treat 0 and 1
// as 10).
unsigned gif_frame_delay(size_t k, unsigned fps_num, unsigned fps_den);
// The palette index the GIF writer gives pixel (x, y) of value rgb.
unsigned gif_palette_index(const unsigned char *rgb, size_t x, size_t y);
void gif_palette_color(unsigned index, unsigned char rgb[3]);

void image_quantize(unsigned char *out, const real *x, size_t n); // (n) -> (n)
// Source index of output index i when resizing `in` samples to `out` (jax's float32 rule:
// floor((i + 0.5) * s) with s = float32(in) * float32(1/out), clamped to in-1).
size_t resize_nearest_index(size_t i, size_t in, size_t out);
void image_resize_nearest(real *out, const real *in,      // (N, h, w) (N, H, W)
                          size_t N, size_t H, size_t W, size_t h, size_t w);

#endif
