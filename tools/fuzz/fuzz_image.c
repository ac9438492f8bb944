// fuzz_image.c: libFuzzer harness for the image reader (ref/image.c image_read_pnm: binary
// PGM P5 and PPM P6), the input written to a file. Checks: no crash, leak or UB; a refused
// file has a message naming it; an accepted image has a valid size and, written back with
// image_write_pnm and read again, gives the same pixels.
#include "fuzz_util.h"
#include "../../ref/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("image", data, size);
    char out[300];
    Image img, back;
    size_t n;
    mv_clear_error();
    if (image_read_pnm(&img, path) != MV_OK) {
        fuzz_expect_message("image_read_pnm");
        if (!strstr(mv_error(), path)) abort();
        return 0;
    }
    if (!img.data || (img.channels != 1 && img.channels != 3) || img.width < 1 || img.height < 1 ||
        img.width > IMAGE_MAX_DIM || img.height > IMAGE_MAX_DIM)
        abort();
    n = img.width * img.height * img.channels;
    snprintf(out, sizeof out, "%s.out.pnm", path);
    if (image_write_pnm(out, &img) != MV_OK) { fprintf(stderr, "%s\n", mv_error()); abort(); }
    if (image_read_pnm(&back, out) != MV_OK) { fprintf(stderr, "%s\n", mv_error()); abort(); }
    if (back.width != img.width || back.height != img.height || back.channels != img.channels ||
        memcmp(back.data, img.data, n) != 0)
        abort();
    remove(out);
    image_free(&back);
    image_free(&img);
    return 0;
}
