// tests.h: every unit test and corpus runner, declared for the registry (tests/registry.c).
#ifndef MAVREF_TESTS_H
#define MAVREF_TESTS_H

#include "harness.h"

// ops_basic.c
int run_groupnorm(Case *c);
int run_conv2d(Case *c);

// ops_layers.c
int run_temporal_conv(Case *c);
int run_conv_pseudo3d(Case *c);
int run_layernorm(Case *c);
int run_dense(Case *c);
int run_activation(Case *c);
int run_geglu(Case *c);
int run_attention_self(Case *c);
int run_attention_cross(Case *c);
int run_attention_temporal(Case *c);
int run_attention_clip(Case *c);
int run_upsample_nearest(Case *c);
int run_timestep_embedding(Case *c);

// ops_tokenizer.c
int run_tokenize(Case *c);
int test_tokenizer_utf8(void);
int test_tokenizer_limits(void);

// ops_clip.c
int run_clip_text(Case *c);

// ops_vae.c
int run_vae(Case *c);

// test_safetensors.c
int test_json_valid(void);
int test_json_rejects(void);
int test_st_roundtrip(void);
int test_st_dtypes(void);
int test_st_bad_files(void);
int test_procedural(void);

// test_gemm.c
int test_gemm_edges(void);
int test_gemm_blocks(void);
int test_gemm_threads(void);
int test_gemm_bad_args(void);
int test_parallel_for(void);

#endif
