// registry.c: the one place where tests are listed.
#include "tests.h"

const UnitTest unit_tests[] = {
    {"json_valid", test_json_valid},
    {"json_rejects", test_json_rejects},
    {"safetensors_roundtrip", test_st_roundtrip},
    {"safetensors_dtypes", test_st_dtypes},
    {"safetensors_bad_files", test_st_bad_files},
    {"procedural_generator", test_procedural},
    {"tokenizer_utf8", test_tokenizer_utf8},
    {"tokenizer_limits", test_tokenizer_limits},
    {"gemm_edges", test_gemm_edges},
    {"gemm_blocks", test_gemm_blocks},
    {"gemm_threads", test_gemm_threads},
    {"gemm_bad_args", test_gemm_bad_args},
    {"parallel_for", test_parallel_for},
};
const size_t n_unit_tests = sizeof unit_tests / sizeof unit_tests[0];

// op, runner, minimum number of cases per precision in the corpus
const CaseRunner case_runners[] = {
    {"groupnorm", run_groupnorm, 8},
    {"conv2d", run_conv2d, 9},
    {"vae", run_vae, 2},
    {"clip_text", run_clip_text, 2},
    {"temporal_conv", run_temporal_conv, 6},
    {"conv_pseudo3d", run_conv_pseudo3d, 7},
    {"layernorm", run_layernorm, 7},
    {"dense", run_dense, 7},
    {"activation", run_activation, 4},
    {"geglu", run_geglu, 6},
    {"attention_self", run_attention_self, 8},
    {"attention_cross", run_attention_cross, 6},
    {"attention_temporal", run_attention_temporal, 7},
    {"attention_clip", run_attention_clip, 5},
    {"upsample_nearest", run_upsample_nearest, 5},
    {"timestep_embedding", run_timestep_embedding, 5},
    {"tokenize", run_tokenize, 12},
};
const size_t n_case_runners = sizeof case_runners / sizeof case_runners[0];
