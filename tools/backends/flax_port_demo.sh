#!/bin/sh
# make flax-port-demo: the taps comparison on the FLAX model as a backend (issue 16).
#
# Runs `mavref check --ops unet` with tools/backends/flax_port.py (the exporter's own
# UNetPseudo3DConditionModel, tools/mavflax.py) as the adapter, in these variants:
#   1. the faithful port, float64 (sinusoid in float64, the corpus' definition): no divergence
#   2. the faithful port, float32: no divergence
#   3. float64 with only the sinusoid in float32 (upstream's unmodified x64 forward), against
#      the float32-sinusoid cases (meta sinusoid=float32, the network fed the case's
#      time_proj): no divergence; 4. the same without feeding (--own-sinusoid)
#   5. that port against every float64 unet case: the float64-sinusoid cases first at
#      tap.time_proj (the float32 sinusoid is not the float64 definition), the others pass
#   6., 7. the faithful port with exact-erf GELU in the feed-forward, float32 and float64:
#      every case first at tap.down_blocks_0, the first block with a feed-forward
# and writes the transcript to $OUT (default out/flax_port_demo.txt). LEVEL (quick by
# default; 3 and 4 always take both float32-sinusoid cases, full level) picks the cases; about
# a minute per case on 2 cores (one JAX process each). Real-size cases are left out (the adapter exits 3 for them: "not covered"). Failures are the findings, so the
# script exits 0 unless a variant's result is not the expected one (then 1).
#
#   PY=tools/.venv/bin/python MAVREF=bin/mavref LEVEL=quick OUT=out/flax_port_demo.txt \
#       sh tools/backends/flax_port_demo.sh
set -u
PY=${PY:-tools/.venv/bin/python}
MAVREF=${MAVREF:-bin/mavref}
LEVEL=${LEVEL:-quick}
OUT=${OUT:-out/flax_port_demo.txt}
export JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
bad=0
ADAPTER="$PY tools/backends/flax_port.py"

# run TITLE EXPECT PRECISION LEVEL SWITCHES [CHECK-ARGS...]
#   EXPECT: pass (exit 0, nothing failed), down0 (every run case FAIL at tap.down_blocks_0),
#           sin (every failing case FAIL at tap.time_proj, and every f32sin case passes)
run() {
    title=$1 expect=$2 prec=$3 level=$4 sw=$5
    shift 5
    log=$(mktemp)
    {
        echo "## $title"
        echo "\$ mavref check --ops unet --precision $prec --level $level $* --backend '$ADAPTER $sw{case} {out}'"
    } | tee -a "$OUT"
    $MAVREF check --ops unet --precision "$prec" --level "$level" --timeout 1800 "$@" \
        --backend "$ADAPTER $sw{case} {out}" > "$log" 2>&1
    rc=$?
    sed -e '/adapter outputs and logs in/s/ in .*/ in (work dir)/' "$log" | tee -a "$OUT"
    echo "(exit $rc)" | tee -a "$OUT"
    ran=$(grep -c '^unet .* \(PASS\|FAIL\)' "$log")
    fails=$(grep -c '^unet .* FAIL ' "$log")
    case $expect in
    pass) ok=$([ "$rc" = 0 ] && [ "$ran" -gt 0 ] && echo 1 || echo 0) ;;
    down0) ok=$([ "$rc" = 1 ] && [ "$ran" -gt 0 ] && [ "$(grep -c '^unet .* FAIL tap\.down_blocks_0 ' "$log")" = "$ran" ] && echo 1 || echo 0) ;;
    sin) ok=$([ "$fails" -gt 0 ] && [ "$(grep -c '^unet .* FAIL tap\.time_proj ' "$log")" = "$fails" ] &&
              [ "$(grep -c '^unet .*f32sin.* FAIL' "$log")" = 0 ] && echo 1 || echo 0) ;;
    esac
    [ "$ok" = 1 ] && echo "=> as expected ($expect)" | tee -a "$OUT" || { echo "=> NOT as expected ($expect)" | tee -a "$OUT"; bad=1; }
    echo | tee -a "$OUT"
    rm -f "$log"
}

{
    echo "# flax_port demonstration ($(date -u +%Y-%m-%dT%H:%MZ))"
    $PY -c 'import importlib.metadata as m; print("# " + " ".join(p + "=" + m.version(p) for p in ("jax", "jaxlib", "flax", "diffusers", "numpy")))'
    echo
} | tee -a "$OUT"
run "1. faithful float64 port (the FLAX model, sinusoid in float64 as the corpus defines it)" pass 64 "$LEVEL" ""
run "2. faithful float32 port" pass 32 "$LEVEL" ""
run "3. float64 port with the sinusoid in float32 (upstream's x64 forward) vs the float32-sinusoid cases" pass 64 full \
    "--sinusoid f32 " --cases f32sin
run "4. the same port not fed the case's sinusoid (--own-sinusoid)" pass 64 full "--sinusoid f32 --own-sinusoid " --cases f32sin
run "5. the float32-sinusoid port vs the float64 unet cases" sin 64 "$LEVEL" "--sinusoid f32 "
run "6. faithful port with exact-erf GELU in the feed-forward, float32" down0 32 "$LEVEL" "--gelu erf "
run "7. faithful port with exact-erf GELU in the feed-forward, float64" down0 64 "$LEVEL" "--gelu erf "
echo "flax_port demonstration: $([ $bad = 0 ] && echo 'every variant as expected' || echo 'a variant was NOT as expected')" | tee -a "$OUT"
exit $bad
