// example.c: a program built against an installed mavref (make install), the way a C or C++
// backend's test suite would call mavref's operators in-process:
//
//   cc example.c $(pkg-config --cflags --libs mavref) -o example
//   ./example vectors/f32/dense_3x7_7to5.safetensors
//
// It reads one corpus case of op `dense` (x, kernel, bias and the expected y, all exported
// from flax.linen.Dense), runs mavref's linear_forward on it and compares the result with the
// expected tensor by the corpus's own rule (rel = max|got-exp| / max|exp| <= the tolerance).
#include <stdio.h>
#include <stdlib.h>

#include <mavref/compare.h>
#include <mavref/linear.h>
#include <mavref/safetensors.h>

int main(int argc, char **argv) {
    StFile f;
    Tensor x, kernel, bias, want, y;
    Metrics m;
    double tol = argc > 2 ? atof(argv[2]) : (MAVREF_PRECISION == 64 ? 1e-10 : 1e-6);
    size_t I, O, N;
    int ok;
    if (argc < 2) { fprintf(stderr, "usage: example DENSE_CASE.safetensors [TOL]\n"); return 2; }
    if (st_open(&f, argv[1]) || st_read(&f, "x", &x) || st_read(&f, "kernel", &kernel) || st_read(&f, "bias", &bias) ||
        st_read(&f, "y", &want)) {
        fprintf(stderr, "example: %s\n", mv_error());
        return 2;
    }
    I = kernel.shape[0];
    O = kernel.shape[1];
    N = x.numel / I;
    if (tensor_alloc(&y, want.ndim, want.shape)) { fprintf(stderr, "example: %s\n", mv_error()); return 2; }
    linear_forward(y.data, x.data, kernel.data, bias.data, N, I, O); // (N,O) (N,I) (I,O) (O)
    metrics_compute_real(&m, y.data, want.data, want.numel);
    ok = metrics_pass(&m, tol);
    printf("mavref %s, linear_forward on %s: rel %.3e (tol %.1e) %s\n", REAL_NAME, argv[1], m.rel, tol, ok ? "PASS" : "FAIL");
    tensor_free(&x); tensor_free(&kernel); tensor_free(&bias); tensor_free(&want); tensor_free(&y);
    st_close(&f);
    return ok ? 0 : 1;
}
