// registry.c: the one place where tests are listed.
#include "tests.h"

const UnitTest unit_tests[] = {
    {"json_valid", test_json_valid},
    {"json_rejects", test_json_rejects},
    {"safetensors_roundtrip", test_st_roundtrip},
    {"safetensors_dtypes", test_st_dtypes},
    {"safetensors_bad_files", test_st_bad_files},
    {"procedural_generator", test_procedural},
};
const size_t n_unit_tests = sizeof unit_tests / sizeof unit_tests[0];

// op, runner, minimum number of cases per precision in the corpus
const CaseRunner case_runners[] = {
    {"groupnorm", run_groupnorm, 8},
    {"conv2d", run_conv2d, 9},
};
const size_t n_case_runners = sizeof case_runners / sizeof case_runners[0];
