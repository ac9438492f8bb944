// procedural.c: see procedural.h for the generator's definition.
#include "procedural.h"
#include "tensor.h"

#include <stdlib.h>

uint64_t proc_fnv1a64(const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)name;
    while (*p) { h ^= *p++; h *= 0x100000001b3ULL; }
    return h;
}

uint64_t proc_splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void proc_fill(real *out, size_t n, uint64_t seed, const char *name, double scale, double offset) {
    uint64_t key = proc_splitmix64(seed ^ proc_fnv1a64(name));
    size_t i;
    for (i = 0; i < n; i++) {
        double u = (double)(proc_splitmix64(key + (uint64_t)i) >> 11) * (1.0 / 9007199254740992.0);
        out[i] = (real)(offset + scale * (2.0 * u - 1.0));
    }
}

int proc_parse(const char *desc, uint64_t *seed, double *scale, double *offset, int *ndim, size_t *shape) {
    char *end;
    const char *p = desc;
    unsigned long long s = strtoull(p, &end, 10);
    if (end == p) return mv_fail("procedural description '%s': bad seed", desc);
    *seed = (uint64_t)s;
    p = end;
    *scale = strtod(p, &end);
    if (end == p) return mv_fail("procedural description '%s': bad scale", desc);
    p = end;
    *offset = strtod(p, &end);
    if (end == p) return mv_fail("procedural description '%s': bad offset", desc);
    p = end;
    while (*p == ' ') p++;
    *ndim = 0;
    while (*p) {
        unsigned long long d = strtoull(p, &end, 10);
        if (end == p || *ndim >= MV_MAXDIM) return mv_fail("procedural description '%s': bad shape", desc);
        if (d > (unsigned long long)(size_t)-1) return mv_fail("procedural description '%s': dimension too large", desc);
        shape[(*ndim)++] = (size_t)d;
        p = end;
        if (*p == 'x') p++;
        else if (*p) return mv_fail("procedural description '%s': bad shape", desc);
    }
    return MV_OK;
}
