#!/bin/sh
# toy_model.sh MAVREF: every weight of the toy text-to-video model, trained from scratch by
# mavref (`make toy-model`). Writes vectors/toy/makeavid/ (the pseudo-3D UNet, VAE, text
# encoder) and vectors/toy/hint/ (the 2-D UNet that draws the first frame), the training logs
# and loss curves under vectors/toy/log/, and vectors/toy/SHA256SUMS. Scratch files go to
# build/toy/. The same binary gives the same bits with any MAVREF_THREADS.
#
#   1. the toy world: TOY_CLIPS clips of the training combinations (mavref toyworld)
#   2. the text encoder: a small CLIP with fixed procedural weights, stored as float16 (frozen,
#      as upstream keeps CLIP frozen)
#   3. the VAE (SD's architecture, channels 32,64,64): reconstruction + KL (mavref train-vae)
# Every network is stored as float16 (mavref init --weights W --dtype f16): a few MB in all.
#   4. the training set: every clip's VAE latents and caption's CLIP hidden state (encode-clips)
#   5. the 2-D UNet: first frames from text (train --2d), as upstream's use_imagegen model
#   6. the pseudo-3D UNet: 9 input channels (latents, mask, hint = the first frame's latent),
#      started from the 2-D UNet (init --from-2d), every parameter trained (train --all),
#      batch 4, AdamW with warmup and cosine decay
# Both UNets predict v on a schedule whose last timesteps hold almost no signal
# (makeavid/scheduler/scheduler_config.json: prediction_type v_prediction, beta_end 0.02):
# with upstream's epsilon and SD's betas the video UNet learnt to ignore its hint (SPEC.md 10.5).
# --cond-drop trains the empty prompt too, so that classifier-free guidance has its
# unconditional half (upstream trains on captions only and guides with SD's own training).
# MAVREF is the NATIVE=1 build (`make toy-model`): its GEMM kernel fuses multiply-adds, 3 times
# faster here than the portable build; the bits are those of any x86-64 with FMA.
set -eu
M=${1:-bin/mavref}
OUT=vectors/toy
TMP=build/toy
LOG=$OUT/log

TOY_CLIPS=${TOY_CLIPS:-480}
U2_STEPS=${U2_STEPS:-4000}
U2A_STEPS=${U2A_STEPS:-2000}
U3_STEPS=${U3_STEPS:-1450}
U3A_STEPS=${U3A_STEPS:-300}

# glibc (where mavref runs on it) gives a large freed block back to the kernel at once, and each
# training step then faults its activations in afresh (7% of a video step's profile in page
# faults): keep freed memory instead. Only the allocator's bookkeeping: the same bits, 12% faster
# video UNet steps and 18% faster VAE steps measured here; other C libraries ignore these.
export MALLOC_TRIM_THRESHOLD_=4294967295 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TOP_PAD_=268435456

mkdir -p $TMP $LOG
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stage "toy world"
$M toyworld --clips $TOY_CLIPS --size 64 --frames 12 --seed 0 --out $TMP/world.safetensors

# The schedule of both UNets, written here because it is part of the recipe: diffusers' DDIM
# config (what FlaxDDIMScheduler.save_config writes) with v_prediction and beta_end 0.02.
stage "scheduler"
cat > $OUT/makeavid/scheduler/scheduler_config.json <<'JSON'
{
  "_class_name": "FlaxDDIMScheduler",
  "_diffusers_version": "0.35.2",
  "beta_end": 0.02,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "clip_sample_range": 1.0,
  "num_train_timesteps": 1000,
  "prediction_type": "v_prediction",
  "set_alpha_to_one": false,
  "steps_offset": 1,
  "trained_betas": null
}
JSON

stage "text encoder (procedural, float16)"
$M init text_encoder --config $OUT/makeavid/text_encoder/config.json --procedural 20261207 --dtype f16 \
    --out $OUT/makeavid/text_encoder/model.safetensors

# The VAE: 400 steps of a warmup-cosine schedule, then 300 more on a second cosine (resumed: the
# optimizer state carries over); the colours come late, after the shapes. Then the decoder
# alone, 400 more steps (--train-only decoder: the encoder, post_quant_conv and so the latents
# stay as they are).
stage "VAE"
export MAVREF_THREADS=2
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --procedural 1 \
    --steps 400 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae_a --plot $LOG/vae_loss_a.svg > $LOG/vae_a.log
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --resume $TMP/vae_a \
    --steps 300 --total-steps 700 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae --plot $LOG/vae_loss_b.svg > $LOG/vae_b.log
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --resume $TMP/vae --train-only decoder \
    --steps 400 --total-steps 1100 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae_c --plot $LOG/vae_loss_c.svg > $LOG/vae_c.log

# Whitened latents (init vae --whiten): 0.18215 x latent of mean 0 and variance 1 per channel,
# the signal SD's schedule was made for (the raw posterior mean had std 1.81). The statistics
# come from every clip encoded by the float16 VAE; the encoder of vae_c is vae's, so the
# committed VAE encodes exactly the latents the UNets learn.
stage "training set (whitened VAE latents, CLIP contexts)"
mkdir -p $TMP/raw
cp -r $OUT/makeavid/model_index.json $OUT/makeavid/text_encoder $OUT/makeavid/tokenizer $OUT/makeavid/scheduler $TMP/raw/
mkdir -p $TMP/raw/vae && cp $OUT/makeavid/vae/config.json $TMP/raw/vae/
$M init vae --config $OUT/makeavid/vae/config.json --weights $TMP/vae_c.params.safetensors --dtype f16 \
    --out $TMP/raw/vae/diffusion_pytorch_model.safetensors
$M encode-clips --model $TMP/raw --data $TMP/world.safetensors --out $TMP/data_raw.safetensors
$M init vae --config $OUT/makeavid/vae/config.json --weights $TMP/raw/vae/diffusion_pytorch_model.safetensors \
    --whiten $TMP/data_raw.safetensors --dtype f16 --out $OUT/makeavid/vae/diffusion_pytorch_model.safetensors
$M encode-clips --model $OUT/makeavid --data $TMP/world.safetensors --out $TMP/data.safetensors

SCHED=$OUT/makeavid/scheduler/scheduler_config.json
# Each UNet's options, shared by its first run and the resumed one (a resumed run is the same
# run only with the same options).
U2_OPTS="--2d --all --config $OUT/hint/unet/config.json --scheduler-config $SCHED --data $TMP/data.safetensors
    --batch 8 --total-steps $U2_STEPS --lr 1e-3 --warmup 0.05 --decay 0.95 --cond-drop 0.1 --seed 2"
U3_OPTS="--all --config $OUT/makeavid/unet/config.json --scheduler-config $SCHED --data $TMP/data.safetensors
    --batch 4 --frames 12 --total-steps $U3_STEPS --lr 1e-3 --warmup 0.05 --decay 0.95 --cond-drop 0.1 --seed 3"
stage "2-D UNet (the first frame), first $U2A_STEPS of $U2_STEPS steps"
$M train $U2_OPTS --procedural 2 --steps $U2A_STEPS --out $TMP/unet2d_a --plot $LOG/unet2d_loss_a.svg > $LOG/unet2d_a.log

# The pseudo-3D UNet starts as the 2-D UNet of step U2A_STEPS run on every frame (Make-A-Video's
# recipe: init --from-2d; the temporal convs the identity, the temporal attentions' outputs
# zero, the mask and hint channels of conv_in zero). Two cores, two jobs: the 2-D UNet's last
# steps (it draws the first frame of a text-only video, and where it puts the shape decides the
# way the video moves) run on one thread beside the video UNet's first U3A_STEPS on the other;
# then the video UNet resumes on both. A resumed run is the same run (each step's draws come
# from the seed and the step number), so the bits do not depend on this split.
stage "pseudo-3D UNet (the video) from the 2-D UNet, first $U3A_STEPS steps, beside the 2-D UNet's last $(( U2_STEPS - U2A_STEPS ))"
$M init unet --config $OUT/makeavid/unet/config.json --procedural 3 --from-2d $TMP/unet2d_a.params.safetensors \
    --out $TMP/unet_init.safetensors
MAVREF_THREADS=1 $M train $U2_OPTS --resume $TMP/unet2d_a --steps $(( U2_STEPS - U2A_STEPS )) \
    --out $TMP/unet2d --plot $LOG/unet2d_loss_b.svg > $LOG/unet2d_b.log &
u2=$!
MAVREF_THREADS=1 $M train $U3_OPTS --weights $TMP/unet_init.safetensors --steps $U3A_STEPS \
    --out $TMP/unet_a --plot $LOG/unet_loss_a.svg > $LOG/unet_a.log
wait $u2
stage "pseudo-3D UNet, steps $U3A_STEPS to $U3_STEPS"
$M train $U3_OPTS --resume $TMP/unet_a --steps $(( U3_STEPS - U3A_STEPS )) \
    --out $TMP/unet --plot $LOG/unet_loss_b.svg > $LOG/unet_b.log
$M init unet2d --config $OUT/hint/unet/config.json --weights $TMP/unet2d.params.safetensors --dtype f16 \
    --out $OUT/hint/unet/diffusion_pytorch_model.safetensors
$M init unet --config $OUT/makeavid/unet/config.json --weights $TMP/unet.params.safetensors --dtype f16 \
    --out $OUT/makeavid/unet/diffusion_pytorch_model.safetensors

stage "done"
(cd $OUT && sha256sum makeavid/text_encoder/model.safetensors makeavid/vae/diffusion_pytorch_model.safetensors \
    hint/unet/diffusion_pytorch_model.safetensors makeavid/unet/diffusion_pytorch_model.safetensors) > $OUT/SHA256SUMS
cat $OUT/SHA256SUMS
echo "toy model: $(( $(date +%s) - start )) s"
