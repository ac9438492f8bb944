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
# --cond-drop trains the empty prompt too, so that classifier-free guidance has its
# unconditional half (upstream trains on captions only and guides with SD's own training).
set -eu
M=${1:-bin/mavref}
OUT=vectors/toy
TMP=build/toy
LOG=$OUT/log

TOY_CLIPS=${TOY_CLIPS:-480}
U2_STEPS=${U2_STEPS:-1500}
U3_STEPS=${U3_STEPS:-1000}

mkdir -p $TMP $LOG
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stage "toy world"
$M toyworld --clips $TOY_CLIPS --size 64 --frames 12 --seed 0 --out $TMP/world.safetensors

stage "text encoder (procedural, float16)"
$M init text_encoder --config $OUT/makeavid/text_encoder/config.json --procedural 20261207 --dtype f16 \
    --out $OUT/makeavid/text_encoder/model.safetensors

# Two runs: 400 steps of a warmup-cosine schedule, then 300 more on a second cosine (resumed:
# the optimizer state carries over); the colours come late, after the shapes.
stage "VAE"
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --procedural 1 \
    --steps 400 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae_a --plot $LOG/vae_loss_a.svg > $LOG/vae_a.log
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --resume $TMP/vae_a \
    --steps 300 --total-steps 700 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae --plot $LOG/vae_loss_b.svg > $LOG/vae_b.log
# stored as float16 before anything uses it: the UNets learn the latents of the committed VAE
$M init vae --config $OUT/makeavid/vae/config.json --weights $TMP/vae.params.safetensors --dtype f16 \
    --out $OUT/makeavid/vae/diffusion_pytorch_model.safetensors

stage "training set (VAE latents, CLIP contexts)"
$M encode-clips --model $OUT/makeavid --data $TMP/world.safetensors --out $TMP/data.safetensors

# The 2-D UNet and the VAE's decoder are independent: trained side by side, one thread each
# (mavref's threads help little at these sizes; the bits are the same for any count).
stage "2-D UNet (the first frame) and the VAE decoder, side by side"
export MAVREF_THREADS=1
$M train --2d --all --config $OUT/hint/unet/config.json --procedural 2 --data $TMP/data.safetensors \
    --batch 8 --steps $U2_STEPS --lr 1e-3 --warmup 0.05 --decay 0.95 --cond-drop 0.1 --seed 2 \
    --out $TMP/unet2d --plot $LOG/unet2d_loss.svg > $LOG/unet2d.log &
p2=$!
# the VAE's decoder only (its encoder, and so the latents above, stay as they are), for the colours
$M train-vae --data $TMP/world.safetensors --vae-channels 32,64,64 --vae-layers 1 --resume $TMP/vae --train-only decoder \
    --steps 400 --total-steps 1100 --batch 4 --lr 2e-3 --warmup 0.03 --decay 0.97 --kl 1e-6 --seed 0 \
    --out $TMP/vae_c --plot $LOG/vae_loss_c.svg > $LOG/vae_c.log &
pv=$!
wait $p2
wait $pv

# The pseudo-3D UNet starts as the trained 2-D UNet run on every frame (Make-A-Video's recipe:
# init --from-2d; the temporal convs the identity, the temporal attentions' outputs zero, the
# mask and hint channels of conv_in zero). From procedural temporal layers instead (a random
# 3-tap conv after every spatial conv, with no residual) 600 steps left a model whose videos
# were noise (SPEC.md 10.5).
stage "pseudo-3D UNet (the video), from the 2-D UNet"
export MAVREF_THREADS=2
$M init unet --config $OUT/makeavid/unet/config.json --procedural 3 --from-2d $TMP/unet2d.params.safetensors \
    --out $TMP/unet_init.safetensors
$M train --all --config $OUT/makeavid/unet/config.json --weights $TMP/unet_init.safetensors --data $TMP/data.safetensors \
    --batch 4 --frames 12 --steps $U3_STEPS --lr 5e-4 --warmup 0.05 --decay 0.95 --cond-drop 0.1 --seed 3 \
    --out $TMP/unet --plot $LOG/unet_loss.svg > $LOG/unet.log
$M init vae --config $OUT/makeavid/vae/config.json --weights $TMP/vae_c.params.safetensors --dtype f16 \
    --out $OUT/makeavid/vae/diffusion_pytorch_model.safetensors
$M init unet2d --config $OUT/hint/unet/config.json --weights $TMP/unet2d.params.safetensors --dtype f16 \
    --out $OUT/hint/unet/diffusion_pytorch_model.safetensors
$M init unet --config $OUT/makeavid/unet/config.json --weights $TMP/unet.params.safetensors --dtype f16 \
    --out $OUT/makeavid/unet/diffusion_pytorch_model.safetensors

stage "done"
(cd $OUT && sha256sum makeavid/text_encoder/model.safetensors makeavid/vae/diffusion_pytorch_model.safetensors \
    hint/unet/diffusion_pytorch_model.safetensors makeavid/unet/diffusion_pytorch_model.safetensors) > $OUT/SHA256SUMS
cat $OUT/SHA256SUMS
echo "toy model: $(( $(date +%s) - start )) s"
