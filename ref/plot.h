// plot.h: a training run's loss curve as an SVG file (`mavref train --plot FILE`), because a
// person reads a curve faster than ten thousand lines of numbers.
#ifndef MAVREF_PLOT_H
#define MAVREF_PLOT_H

#include <stddef.h>

typedef struct {
    size_t n, cap;
    double *x, *y; // (n) each: step, loss
} LossPlot;

// Append a point; MV_ERR (with a message) if memory runs out.
int plot_add(LossPlot *p, double x, double y);
void plot_free(LossPlot *p);
// Write the curve: the points as a thin line, their moving average (a window of about 2% of
// the points) as a thick one, the y axis logarithmic when every loss is positive. Written to
// PATH.tmp, then renamed, like every output. Errors name the file.
int plot_write_svg(const char *path, const LossPlot *p, const char *title);

#endif
