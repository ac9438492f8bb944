// tests.h: every unit test and corpus runner, declared for the registry (tests/registry.c).
#ifndef MAVREF_TESTS_H
#define MAVREF_TESTS_H

#include "harness.h"
#include "../ref/params.h"

// ops_vae.c
int run_vae_encode_grad(Case *c);
int run_vae_decode_grad(Case *c);

// ops_train.c: a gradient (or parameter change) against the exporter's per-tensor summaries
// (norm, dot with a fixed direction, max and sampled elements, small tensors in full).
int check_summary(Case *c, const ParamTable *pt, const real *vals, const char *prefix, int full);

// test_train_batch.c
int test_train_batch(void);

// ops_toy.c
int run_toyworld(Case *c);

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

// ops_grad.c (backward passes)
int run_conv2d_grad(Case *c);
int run_temporal_conv_grad(Case *c);
int run_conv_pseudo3d_grad(Case *c);
int run_groupnorm_grad(Case *c);
int run_layernorm_grad(Case *c);
int run_dense_grad(Case *c);
int run_activation_grad(Case *c);
int run_geglu_grad(Case *c);
int run_attention_self_grad(Case *c);
int run_attention_cross_grad(Case *c);
int run_attention_temporal_grad(Case *c);
int run_upsample_nearest_grad(Case *c);
int run_timestep_embedding_grad(Case *c);

// test_grad_fd.c (float64 builds only: central finite differences of every backward)
int test_grad_fd_conv(void);
int test_grad_fd_norms(void);
int test_grad_fd_dense_act(void);
int test_grad_fd_attention(void);
int test_grad_fd_upsample_temb(void);
// test_train_fd.c (float64 builds only)
int test_train_fd_unet(void);
int test_tape_recompute(void); // every precision

// ops_tokenizer.c
int run_tokenize(Case *c);
int test_tokenizer_utf8(void);
int test_tokenizer_limits(void);

// test_fastpath.c
int test_fastpath_conv(void);
int test_fastpath_linear(void);
int test_fastpath_attention(void);
int test_fastpath_threads(void);
int test_fastpath_forward_bits(void);
int test_fastpath_attention_kinds(void);
int test_attention_chunks(void);
int test_fastpath_geglu(void);
int test_fastpath_attention_threads(void);
int test_expf_poly(void);
int test_fastpath_conv_backward(void);
int test_fastpath_linear_backward(void);
int test_fastpath_backward_threads(void);
int test_unet_threads(void);

// ops_pipeline.c
int run_pipeline(Case *c);

// ops_model.c
int run_resnet(Case *c);
int run_transformer(Case *c);
int run_downsample(Case *c);
int run_upsample(Case *c);
int run_unet(Case *c);

// ops_train.c
int run_unet_grad(Case *c);
int run_train_step(Case *c);
int test_train_resume(void);
int test_grad_subset(void);

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

// test_model_dir.c (published folders against the Flax libraries' loaded parameters: vectors/model)
int test_model_makeavid_unet(void);
int test_model_makeavid_vae_clip(void);
int test_model_sd15_formats(void);
int test_model_dir_folders(void);
int test_model_mismatch_messages(void);
int test_model_tokenizer_hf(void);
int test_model_pipeline(void);
int test_toy_measure_truth(void);
int test_init_from_2d(void);
int test_init_whiten(void);
int test_model_pipeline_toy(void);
int test_cli_model(void); // test_cli.c
int test_cli_preview(void); // test_cli.c
int test_bad_model_generate(void); // test_model_bad.c
int test_convert_fixtures(void); // test_convert.c
int test_convert_refusals(void);
int test_convert_torch_names(void);
int test_bad_model_train(void);
int test_bad_weights_cli(void);

// test_checkpoint.c (fixtures written by flax and torch: vectors/checkpoint)
int test_ckpt_msgpack_fixtures(void);
int test_ckpt_safetensors(void);
int test_ckpt_torch_fixtures(void);
int test_ckpt_pickle_refusals(void);
int test_ckpt_int_exactness(void);
int test_ckpt_torch_big_endian(void);
int test_ckpt_beyond_4gb(void);
int test_bad_ckpt_truncated_corrupt(void);
int test_bad_ckpt_msgpack(void);
int test_bad_ckpt_torch(void);

// test_gemm.c
int test_gemm_edges(void);
int test_gemm_blocks(void);
int test_gemm_threads(void);
int test_gemm_bad_args(void);
int test_gemm_packed(void);
int test_parallel_for(void);

// test_badinput.c (the bad-input catalogue, SPEC.md section 12)
int test_bad_st_headers(void);
int test_bad_st_reads(void);
int test_bad_outputs(void);
int test_bad_weights(void);
int test_bad_config(void);
int test_bad_merges(void);
int test_bad_tokenizer_text(void);
int test_bad_unet_inputs(void);
int test_bad_clip_ids(void);
int test_bad_images(void);

// test_cli.c (the mavref command line, in-process)
// `mavref ARGS...` (NULL-terminated, at most 30) through mavref_main with stdout and stderr
// captured: 0, or 1 if the capture files cannot be made.
#define CLI_CAPTURE 65536
typedef struct {
    int rc;
    char out[CLI_CAPTURE], err[CLI_CAPTURE]; // what the command printed on each stream (truncated)
} CliRun;
int cli_run(CliRun *r, const char *arg0, ...);
int test_cli_help(void);
int test_cli_bad_options(void);
int test_cli_dash_text(void);

// ops_sched.c
int run_sched_schedule(Case *c);
int run_sched_step(Case *c);
int run_sched_add_noise(Case *c);
int run_noise_normal(Case *c);
int run_image_quantize(Case *c);
int run_image_resize_nearest(Case *c);

// test_image.c
int test_pnm_bad_files(void);
int test_pnm_roundtrip(void);
int test_atomic_writers(void);
int test_gif_structure(void);
int test_y4m_structure(void);
int test_noise_pieces(void);
int test_noise_file(void);
int test_sched_args(void);

// test_check.c (the case contract and `mavref check`)
int test_contract(void);
int test_check_self(void);
int test_check_perturbed(void);
int test_check_bad_adapters(void);
int test_check_unet_variants(void);

// test_ports.c (ref/port.h: what Windows and WebAssembly do differently)
int test_port_large_file(void);
int test_port_outputs_replace(void);
int test_port_fma(void);
int test_port_paths(void);
int test_port_real_unet_32bit(void);
int test_port_size_messages(void);

#endif
