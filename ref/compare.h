// compare.h: the error metrics every comparison in mavref reports (tests, `mavref compare`).
//
//   max_abs  = max_i |got_i - exp_i|
//   max_rel  = max_i |got_i - exp_i| / |exp_i|      (over elements with exp_i != 0)
//   nmse     = sum_i (got_i - exp_i)^2 / sum_i exp_i^2
//   rel      = max_abs / max_i |exp_i|              (the pass criterion: rel <= tol)
//   worst    = the index with the largest |got_i - exp_i|, with got and expected there
// A NaN or infinity in `got` where `expected` is finite (or vice versa) fails outright.
#ifndef MAVREF_COMPARE_H
#define MAVREF_COMPARE_H

#include "mavref.h"

typedef struct {
    size_t n;
    double max_abs, max_rel, nmse, rel, max_exp;
    size_t worst;            // flat index of the largest |difference|
    double worst_got, worst_exp;
    size_t nonfinite;        // elements whose finiteness differs between got and expected
    size_t first_nonfinite;  // flat index of the first such element
} Metrics;

// Inputs as doubles so that files of any dtype can be compared.
void metrics_compute(Metrics *m, const double *got, const double *exp, size_t n);
void metrics_compute_real(Metrics *m, const real *got, const real *exp, size_t n);
// 1 if the metrics pass rel <= tol with every element finite where expected is.
int metrics_pass(const Metrics *m, double tol);
// "max_abs=.. max_rel=.. nmse=.. rel=.. worst[i]: got .. expected .."; idx_str names the index.
void metrics_format(char *buf, size_t cap, const Metrics *m, const char *idx_str);
// Unravels a flat index into "(i, j, k)" for the given shape.
const char *index_str(char *buf, size_t cap, size_t flat, int ndim, const size_t *shape);

#endif
