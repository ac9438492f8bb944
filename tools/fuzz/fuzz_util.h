// fuzz_util.h: shared helpers of the libFuzzer harnesses (tools/fuzz/fuzz_<name>.c).
//
// The readers under test take a path, so each input is written to a per-process file,
// on /dev/shm when it exists (memory, no disk traffic), else /tmp. Harnesses are tools, not
// library code: they may use POSIX (getpid) and abort() on a broken invariant, which
// libFuzzer reports as a crash with the input that caused it.
#ifndef MAVREF_FUZZ_UTIL_H
#define MAVREF_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ref/mavref.h"

// The input's file: "<dir>/mavref-fuzz-<tag>-<pid>".
static inline const char *fuzz_path(const char *tag) {
    static char path[256];
    if (!path[0]) {
        FILE *probe = fopen("/dev/shm", "r");
        const char *dir = probe ? "/dev/shm" : "/tmp";
        if (probe) fclose(probe);
        snprintf(path, sizeof path, "%s/mavref-fuzz-%s-%ld", dir, tag, (long)getpid());
    }
    return path;
}

static inline const char *fuzz_write(const char *tag, const uint8_t *data, size_t size) {
    const char *path = fuzz_path(tag);
    FILE *fp = fopen(path, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) {
        fprintf(stderr, "fuzz harness: cannot write %s\n", path);
        abort();
    }
    return path;
}

// A failing call must leave a message (the library's contract): an empty one is a bug.
static inline void fuzz_expect_message(const char *where) {
    if (!mv_error()[0]) {
        fprintf(stderr, "%s failed without a message\n", where);
        abort();
    }
}

#endif
