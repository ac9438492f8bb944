// fuzz_safetensors.c: libFuzzer harness for the safetensors reader (ref/safetensors.c).
// The input is a whole file: st_open, then every tensor read in each of the reader's ways
// (st_read, st_read_into, st_read_f64, st_read_i64 for integer dtypes). Checks: no crash,
// leak or UB; every st_open error names the file; an opened file's entries are consistent
// (offsets match dtype x shape, inside the file, no two overlap).
#include "fuzz_util.h"
#include "../../ref/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("st", data, size);
    StFile f;
    size_t i, j;
    mv_clear_error();
    if (st_open(&f, path) != MV_OK) {
        fuzz_expect_message("st_open");
        if (!strstr(mv_error(), path)) abort();
        return 0;
    }
    for (i = 0; i < f.count; i++) {
        const StEntry *e = &f.entries[i];
        Tensor t;
        if (e->end - e->begin != (uint64_t)e->numel * st_dtype_size(e->dtype)) abort();
        if (f.data_start + e->end > size) abort();
        for (j = 0; j < i; j++) {
            const StEntry *o = &f.entries[j];
            if (e->begin < o->end && o->begin < e->end) abort(); // shared bytes
        }
        if (st_find(&f, e->name) != e) abort(); // names are unique
        if (st_read(&f, e->name, &t) == MV_OK) {
            if (t.numel != e->numel) abort();
            if (st_read_into(&f, e->name, &t) != MV_OK) abort();
            tensor_free(&t);
        } else fuzz_expect_message("st_read");
        {
            double *d = (double *)malloc((e->numel ? e->numel : 1) * sizeof(double));
            if (!d) abort();
            if (st_read_f64(&f, e, d) != MV_OK) fuzz_expect_message("st_read_f64");
            free(d);
        }
        {
            int64_t *v = NULL;
            size_t n = 0;
            int r = st_read_i64(&f, e->name, &v, &n);
            int integer = e->dtype != ST_F32 && e->dtype != ST_F64 && e->dtype != ST_F16 && e->dtype != ST_BF16;
            if (r == MV_OK && (!integer || n != e->numel)) abort();
            if (r != MV_OK && integer) fuzz_expect_message("st_read_i64");
            free(v);
        }
    }
    for (i = 0; i < f.nmeta; i++)
        if (st_meta(&f, f.meta_keys[i]) == NULL) abort();
    st_close(&f);
    return 0;
}
