// plot.c: the loss curve as SVG (see plot.h).
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mavref.h"
#include "port.h"

int plot_add(LossPlot *p, double x, double y) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        double *nx = (double *)realloc(p->x, cap * sizeof(double));
        double *ny;
        if (!nx) return mv_fail_oom("loss plot: out of memory");
        p->x = nx;
        ny = (double *)realloc(p->y, cap * sizeof(double));
        if (!ny) return mv_fail_oom("loss plot: out of memory");
        p->y = ny;
        p->cap = cap;
    }
    p->x[p->n] = x;
    p->y[p->n] = y;
    p->n++;
    return MV_OK;
}

void plot_free(LossPlot *p) {
    free(p->x);
    free(p->y);
    memset(p, 0, sizeof *p);
}

// Plot area in SVG units.
#define PW 640.0
#define PH 360.0
#define PL 70.0  // left margin (y labels)
#define PT 40.0  // top margin (title)

typedef struct {
    double x0, x1, y0, y1;
    int logy;
} Axes;

static double sx(const Axes *a, double x) { return PL + (a->x1 > a->x0 ? (x - a->x0) / (a->x1 - a->x0) : 0.5) * PW; }
static double sy(const Axes *a, double y) {
    double v = a->logy ? log10(y) : y;
    return PT + PH - (a->y1 > a->y0 ? (v - a->y0) / (a->y1 - a->y0) : 0.5) * PH;
}

static void axes_fit(Axes *a, const LossPlot *p) {
    size_t i;
    a->logy = 1;
    for (i = 0; i < p->n; i++)
        if (!(p->y[i] > 0) || !isfinite(p->y[i])) a->logy = 0;
    a->x0 = a->x1 = p->x[0];
    a->y0 = a->y1 = a->logy ? log10(p->y[0]) : p->y[0];
    for (i = 0; i < p->n; i++) {
        double v = a->logy ? log10(p->y[i]) : p->y[i];
        if (!isfinite(v)) continue;
        if (p->x[i] < a->x0) a->x0 = p->x[i];
        if (p->x[i] > a->x1) a->x1 = p->x[i];
        if (v < a->y0) a->y0 = v;
        if (v > a->y1) a->y1 = v;
    }
    if (a->logy) { a->y0 = floor(a->y0); a->y1 = ceil(a->y1); if (a->y1 == a->y0) a->y1 += 1; }
}

// The points (smooth = 0) or their centred moving average over 2w+1 points.
static void polyline(FILE *fp, const LossPlot *p, const Axes *a, size_t w, const char *style) {
    size_t i, j;
    fprintf(fp, "<polyline fill=\"none\" %s points=\"", style);
    for (i = 0; i < p->n; i++) {
        size_t lo = i > w ? i - w : 0, hi = i + w < p->n ? i + w : p->n - 1, m = 0;
        double s = 0.0;
        for (j = lo; j <= hi; j++)
            if (isfinite(p->y[j])) { s += a->logy ? log10(p->y[j]) : p->y[j]; m++; }
        if (!m) continue;
        s /= (double)m;
        fprintf(fp, "%.2f,%.2f ", sx(a, p->x[i]), sy(a, a->logy ? pow(10.0, s) : s));
    }
    fprintf(fp, "\"/>\n");
}

static void grid(FILE *fp, const Axes *a) {
    int k;
    for (k = 0; k <= 4; k++) { // x ticks
        double x = a->x0 + (a->x1 - a->x0) * k / 4.0;
        fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", sx(a, x), PT, sx(a, x), PT + PH);
        fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%.6g</text>\n", sx(a, x), PT + PH + 18, x);
    }
    if (a->logy) {
        double e;
        for (e = a->y0; e <= a->y1 + 1e-9; e += 1.0) {
            double y = pow(10.0, e);
            fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", PL, sy(a, y), PL + PW, sy(a, y));
            fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">1e%+.0f</text>\n", PL - 6, sy(a, y) + 4, e);
        }
    } else {
        for (k = 0; k <= 4; k++) {
            double y = a->y0 + (a->y1 - a->y0) * k / 4.0;
            fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", PL, sy(a, y), PL + PW, sy(a, y));
            fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%.3g</text>\n", PL - 6, sy(a, y) + 4, y);
        }
    }
}

int plot_write_svg(const char *path, const LossPlot *p, const char *title) {
    char tmp[1100];
    FILE *fp;
    Axes a;
    const char *c;
    int ok;
    if (p->n == 0) return mv_fail("%s: no points to plot", path);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return mv_fail("%s: path too long", path);
    if (!(fp = fopen(tmp, "wb"))) return mv_fail("%s: cannot write %s: %s", path, tmp, strerror(errno));
    axes_fit(&a, p);
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
                "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            PL + PW + 20, PT + PH + 50);
    fprintf(fp, "<text x=\"%.2f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", PL + PW / 2);
    for (c = title; *c; c++) // the title is ours, but escape it anyway
        fputs(*c == '<' ? "&lt;" : *c == '>' ? "&gt;" : *c == '&' ? "&amp;" : (char[2]){*c, 0}, fp);
    fprintf(fp, "</text>\n");
    grid(fp, &a);
    fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">step</text>\n", PL + PW / 2, PT + PH + 40);
    fprintf(fp, "<text x=\"16\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.2f)\">loss%s</text>\n", PT + PH / 2,
            PT + PH / 2, a.logy ? " (log)" : "");
    polyline(fp, p, &a, 0, "stroke=\"#9bc\" stroke-width=\"0.8\"");
    polyline(fp, p, &a, p->n / 100 + 1, "stroke=\"#036\" stroke-width=\"2\"");
    fprintf(fp, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#333\"/>\n</svg>\n", PL, PT, PW, PH);
    ok = !ferror(fp);
    ok = (fclose(fp) == 0) && ok;
    if (!ok || mv_replace_file(tmp, path) != 0) { // replaces an existing plot, on Windows too
        remove(tmp);
        return mv_fail("%s: cannot write the plot: %s", path, strerror(errno));
    }
    return MV_OK;
}
