// tests.h: every unit test and corpus runner, declared for the registry (tests/registry.c).
#ifndef MAVREF_TESTS_H
#define MAVREF_TESTS_H

#include "harness.h"

// ops_basic.c
int run_groupnorm(Case *c);
int run_conv2d(Case *c);

// test_safetensors.c
int test_json_valid(void);
int test_json_rejects(void);
int test_st_roundtrip(void);
int test_st_dtypes(void);
int test_st_bad_files(void);
int test_procedural(void);

#endif
