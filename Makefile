# mavref: a portable C99 reference implementation of Make-A-Video SD.
#
#   make                  build bin/mavref and the library (gcc, -O2, float32, pthreads)
#   make test             build and run every test and the golden corpus of this precision
#   make PRECISION=64     float64 build (runs the float64 corpus)
#   make THREADS=0        build without pthreads
#   make CC=clang         another compiler (any C99 compiler; warnings are errors)
#   make sanitize test    ASan + UBSan build, then the tests
#   make cross-test ARCH=win64  the tests under wine (mingw-w64); ARCH=s390x, i386, ... under qemu-user
#   make wasm-test        the tests as WebAssembly (wasm32-wasi) under node
#   make web              the toy model in a web page (WEB_OUT, build/web/); make web-check drives it in Chromium
#   make NATIVE=1         machine-specific code generation (-march=native); never the default
#   make OPT=-O3          another optimization level (its own build directory)
#   make fuzz FUZZER=json libFuzzer harness (tools/fuzz; FUZZ_TIME=s or FUZZ_RUNS=n)
#   make valgrind         the quick tests under valgrind memcheck
#   make bench            GEMM GFLOP/s (NATIVE=1 build) against the FMA peak and OpenBLAS
#   make tools-env        create the exporter's Python environment in tools/.venv (pinned)
#   make vectors          regenerate vectors/ and vectors/manifest.txt from the FLAX model
#   make ckpt-fixtures    regenerate vectors/checkpoint/ (flax.serialization and torch.save files)
#   make toy-cases        the toy model's FLAX pipeline cases (vectors/toy/pipeline_*; after make toy-model)
#   make demo             the main job on the embedded default
#   make backends-env     tools/backends/.venv: Debian's python3-torch + diffusers, transformers (pinned)
#   make conformance-hf   mavref check of tools/backends/torch_hf.py (PyTorch) and numpy, float32 and float64
#   make conformance-env  tools/.torch-venv: Debian's python3-torch + tools/torch-requirements.lock
#   make conformance      the PyTorch adapters (diffusers, transformers, upstream's port) over the corpus,
#                         f32 and f64 -> out/conformance.md (the README's Conformance table)
#   make flax-port-demo   the taps comparison on the FLAX model as a backend (faithful, float32
#                         sinusoid, erf GELU; tools/backends/flax_port_demo.sh) -> out/flax_port_demo.txt
#   make install PREFIX=p libmavref.a, the headers (p/include/mavref/), mavref and mavref.pc
#   make install-test     install into a temporary prefix, build tools/example_install with pkg-config, run it
#   make clean
#
# Never add fast-math options (the O-fast level, fast-math or any of its parts): this is a numerical reference.

PRECISION ?= 32
THREADS   ?= 1
NATIVE    ?= 0
OPT_DEFAULT := -O2
OPT       ?= $(OPT_DEFAULT)
CC        ?= cc

SAN := $(if $(filter sanitize,$(MAKECMDGOALS)),1,0)

# _FILE_OFFSET_BITS=64: 32-bit glibc then opens and seeks files past 2 GiB (no effect elsewhere).
CFLAGS_BASE := -std=c99 -pedantic -Wall -Wextra -Werror $(OPT) -DMAVREF_PRECISION=$(PRECISION) -D_FILE_OFFSET_BITS=64
LDLIBS := -lm
ifeq ($(THREADS),1)
  CFLAGS_BASE += -DMAVREF_THREADS=1 -pthread
  LDLIBS += -pthread
endif
ifeq ($(NATIVE),1)
  CFLAGS_BASE += -march=native
endif
ifeq ($(SAN),1)
  CFLAGS_BASE += -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDLIBS += -fsanitize=address,undefined
endif
CFLAGS_ALL := $(CFLAGS_BASE) $(CFLAGS)

CCNAME    := $(notdir $(firstword $(CC)))
BUILDROOT ?= build
# A non-default OPT gets its own build directory (e.g. -n1-oO2-s0), so objects never mix.
OPTTAG    := $(if $(filter-out $(OPT_DEFAULT),$(OPT)),-o$(subst $(eval) ,,$(subst -,,$(subst =,,$(OPT)))))
BUILD     := $(BUILDROOT)/$(CCNAME)-f$(PRECISION)-t$(THREADS)-n$(NATIVE)$(OPTTAG)-s$(SAN)
# Windows compilers name their programs NAME.exe.
EXE       := $(if $(findstring mingw32,$(CCNAME)),.exe)

LIB_SRC  := $(filter-out ref/main.c,$(wildcard ref/*.c))
LIB_OBJ  := $(patsubst ref/%.c,$(BUILD)/ref/%.o,$(LIB_SRC))
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(TEST_SRC))
HEADERS  := $(wildcard ref/*.h tests/*.h)

PY ?= tools/.venv/bin/python

.PHONY: web web-check web-smoke bench-peers backends-env flax-port-demo conformance conformance-env conformance-hf contract install install-test torch-env fixtures all test cross-test wasm-test same-bits sanitize bench-model bench-real clean tools-env vectors ckpt-fixtures demo toy-model bench bench-run fuzz valgrind check-spec toy-cases FORCE

all: bin/mavref

$(BUILD)/ref/%.o: ref/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libmavref.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/mavref$(EXE): $(BUILD)/ref/main.o $(BUILD)/libmavref.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the check tests (tests/test_check.c) run the mavref next to run_tests
$(BUILD)/run_tests$(EXE): $(TEST_OBJ) $(BUILD)/libmavref.a | $(BUILD)/mavref$(EXE)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# bin/ always holds the binaries of the configuration built last.
bin/mavref: $(BUILD)/mavref FORCE
	@mkdir -p bin
	cp $< $@

bin/run_tests: $(BUILD)/run_tests FORCE
	@mkdir -p bin
	cp $< $@

test: $(BUILD)/mavref$(EXE) $(BUILD)/run_tests$(EXE)
	$(TEST_RUNNER) $(BUILD)/run_tests$(EXE) --vectors vectors $(TESTARGS)

# Cross-architecture tests under qemu-user, with Debian's cross compilers (static binaries):
#   make cross-test ARCH=s390x      (big-endian)     ARCH=i386 (32-bit size_t)
#   make cross-test ARCH=aarch64    ARCH=riscv64
# Needs: apt-get install gcc-$(triplet) qemu-user. LEVEL=full runs the whole corpus.
# Windows under wine, with Debian's mingw-w64 (msvcrt, winpthreads, LLP64: 32-bit long):
#   make cross-test ARCH=win64      (also compares replays with the native build, bit for bit)
#   make cross-test ARCH=win32      (32-bit; running it needs wine32, i386 multiarch)
# Needs: apt-get install mingw-w64 wine wine64.
CROSS_aarch64 := aarch64-linux-gnu
CROSS_s390x   := s390x-linux-gnu
CROSS_riscv64 := riscv64-linux-gnu
CROSS_i386    := i686-linux-gnu
QEMU_aarch64  := qemu-aarch64
QEMU_s390x    := qemu-s390x
QEMU_riscv64  := qemu-riscv64
QEMU_i386     := qemu-i386
CROSS_win64   := x86_64-w64-mingw32
CROSS_win32   := i686-w64-mingw32
# (the runner: wine, quiet, without the Mono and Gecko installers in a fresh prefix)
QEMU_win64    := env WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" wine
QEMU_win32    := $(QEMU_win64)
# i386: SSE2 arithmetic. The x87 unit's excess precision (FLT_EVAL_METHOD 2) rounds float32
# expressions differently from IEEE float32 hardware, which mavref's float32 contract assumes;
# the point of this target is the 32-bit size_t.
CROSS_CFLAGS_i386 := -msse2 -mfpmath=sse
# Windows: C99 printf formats (%llu, %zu) from mingw's own printf rather than msvcrt's
# (-std=c99 implies it with mingw-w64 10; stated so that it holds everywhere).
CROSS_CFLAGS_win64 := -D__USE_MINGW_ANSI_STDIO=1
CROSS_CFLAGS_win32 := -D__USE_MINGW_ANSI_STDIO=1 -msse2 -mfpmath=sse
LEVEL ?= quick
CROSS_BUILD = build/cross-$(ARCH)/$(CROSS_$(ARCH))-gcc-f$(PRECISION)-t$(THREADS)-n$(NATIVE)$(OPTTAG)-s0
cross-test:
	@test -n "$(CROSS_$(ARCH))" || { echo "ARCH must be one of: aarch64 s390x riscv64 i386 win64 win32"; exit 2; }
	MAVREF_EXEC_PREFIX='$(QEMU_$(ARCH))' $(MAKE) test CC=$(CROSS_$(ARCH))-gcc BUILDROOT=build/cross-$(ARCH) LDFLAGS="-static" \
	  CFLAGS="$(CROSS_CFLAGS_$(ARCH))" TEST_RUNNER='$(QEMU_$(ARCH))' TESTARGS="--level $(LEVEL) $(TESTARGS)"
	@# wine exits 0 when it cannot start a program at all (win32 without wine32): ask for the list
	@case "$(ARCH)" in win*) $(QEMU_$(ARCH)) $(CROSS_BUILD)/run_tests.exe --list 2>/dev/null | grep -q '^unit port_fma' || \
	  { echo "cross-test: wine did not run $(CROSS_BUILD)/run_tests.exe (for win32: dpkg --add-architecture i386; apt-get install wine32:i386)"; exit 2; };; esac
	@if [ "$(ARCH)" = win64 ] && [ "$(PRECISION)" = 32 ]; then \
	  $(MAKE) --no-print-directory same-bits SAME_BITS_RUN='$(QEMU_$(ARCH))' SAME_BITS_EXE=$(CROSS_BUILD)/mavref.exe; fi

# WebAssembly: the library, mavref and the tests for wasm32-wasi (clang and Debian's wasi-libc;
# no threads), run under node's WASI at LEVEL (quick), then the pipeline replays compared with
# the native float32 build, bit for bit.
#   make wasm-test        Needs: apt-get install wasi-libc libclang-rt-14-dev-wasm32 lld (and node)
# wasm-ld gives a 64 KiB stack by default; mavref, like any C program, expects a few MiB (the
# safetensors reader alone keeps a 64 KiB buffer there). clock() is emulated from the wall clock
# (WASI has no process clock; it only times progress lines). node 20's WASI with fast API
# calls corrupts its own heap once a module's memory grows (nodejs/node#46777): they are off.
WASM_CC  := clang --target=wasm32-wasi
WASM_RUN := node --no-warnings --no-turbo-fast-api-calls tools/wasi_run.mjs
WASM_BUILD = build/wasm32/clang-f$(PRECISION)-t0-n0$(OPTTAG)-s0
WASM_VARS = CC="$(WASM_CC)" AR=llvm-ar THREADS=0 BUILDROOT=build/wasm32 CFLAGS="-D_WASI_EMULATED_PROCESS_CLOCKS $(CFLAGS)" \
	  LDFLAGS="-Wl,-z,stack-size=8388608" LDLIBS="-lm -lwasi-emulated-process-clocks"
wasm-test:
	$(MAKE) test $(WASM_VARS) TEST_RUNNER="$(WASM_RUN)" TESTARGS="--level $(LEVEL) $(TESTARGS)"
	@if [ "$(PRECISION)" = 32 ]; then \
	  $(MAKE) --no-print-directory same-bits SAME_BITS_RUN="$(WASM_RUN)" SAME_BITS_EXE=$(WASM_BUILD)/mavref; fi

# The toy model in a web page: `make web` writes WEB_OUT, a static folder (index.html, worker.js,
# wasi.js from web/, mavref.wasm: the wasm32 build above, float32; files.json; the model folders
# WEB_MODEL and WEB_HINT as model/ and hint/). Serve it with any static file server (no server
# logic; nothing from outside the folder); the page runs `mavref generate --model model
# --hint-model hint --frames WEB_FRAMES --width WEB_SIZE --height WEB_SIZE --preview ...` in a
# Web Worker on an in-memory file system (web/wasi.js) and shows each step's predicted clip,
# then the video and its frames.
#   make web                    the toy model (vectors/toy/makeavid and vectors/toy/hint)
#   make web WEB_MODEL=vectors/model/makeavid WEB_HINT=vectors/model/sd15 WEB_SIZE=32   fixtures (noise)
#   make web-check              make web, then tools/web_check.py: headless Chromium (Debian's
#                               chromium) types WEB_PROMPT, waits for the video, saves WEB_SHOT
#                               (build/web_check.png) and checks that the asked shape moved the
#                               asked way (apt-get install chromium; .ci/run skips it loudly without)
#   make web-smoke              make web, then the page's worker and WASI shim under node (no browser)
# WEB_ARGS: more `mavref generate` options for the page, words without spaces or quotes
# (e.g. WEB_ARGS="--guidance 7.5 --scheduler ddim"); WEB_STEPS and WEB_ARGS default to make
# demo's settings of the toy model (12 steps, guidance 5).
WEB_MODEL  ?= vectors/toy/makeavid
WEB_HINT   ?= vectors/toy/hint
WEB_OUT    ?= build/web
WEB_SIZE   ?= 64
WEB_FRAMES ?= 12
WEB_STEPS  ?= 12
WEB_FPS    ?= 8
WEB_ARGS   ?= --guidance 5
WEB_PROMPT ?= a red circle moving left
WEB_CHECK_ARGS ?=
WASM32_MAVREF := build/wasm32/clang-f32-t0-n0$(OPTTAG)-s0/mavref
web:
	@test -d "$(WEB_MODEL)" || { echo "make web: WEB_MODEL=$(WEB_MODEL) is not a folder (the toy model: vectors/toy/makeavid;" \
	  "for a look at the page without it: make web WEB_MODEL=vectors/model/makeavid WEB_HINT=vectors/model/sd15 WEB_SIZE=32)"; exit 2; }
	@test -e "$(WEB_HINT)" || { echo "make web: WEB_HINT=$(WEB_HINT) does not exist (a folder or a single checkpoint file)"; exit 2; }
	@for d in $(WEB_MODEL)/unet $(WEB_MODEL)/vae $(WEB_MODEL)/text_encoder $(if $(wildcard $(WEB_HINT)/unet),$(WEB_HINT)/unet); do \
	  [ -n "$$(find $$d -type f ! -name config.json 2>/dev/null)" ] || \
	  { echo "make web: no weights in $$d (the toy model's: make toy-model)"; exit 2; }; done
	$(MAKE) --no-print-directory PRECISION=32 $(WASM_VARS) $(WASM32_MAVREF)
	rm -rf $(WEB_OUT)
	mkdir -p $(WEB_OUT)
	cp web/index.html web/worker.js web/wasi.js $(WEB_OUT)/
	cp $(WASM32_MAVREF) $(WEB_OUT)/mavref.wasm
	cp -R "$(WEB_MODEL)" $(WEB_OUT)/model
	@# of the hint folder, mavref reads unet/ only
	@if [ -d "$(WEB_HINT)" ]; then mkdir -p $(WEB_OUT)/hint && cp -R "$(WEB_HINT)/unet" $(WEB_OUT)/hint/ && \
	  echo "cp -R $(WEB_HINT)/unet $(WEB_OUT)/hint/"; \
	  else mkdir -p $(WEB_OUT)/hintfile && cp "$(WEB_HINT)" $(WEB_OUT)/hintfile/ && echo "cp $(WEB_HINT) $(WEB_OUT)/hintfile/"; fi
	@cd $(WEB_OUT) && hint=$$(if [ -d hint ]; then echo hint; else ls -d hintfile/*; fi) && { \
	  printf '{"settings": {"model": "model", "hint": "%s", "model_name": "%s", "hint_name": "%s",\n' "$$hint" "$(WEB_MODEL)" "$(WEB_HINT)"; \
	  extra=''; for a in $(WEB_ARGS); do extra="$$extra$${extra:+, }\"$$a\""; done; \
	  printf '  "width": %d, "height": %d, "frames": %d, "steps": %d, "fps": %d, "extra_args": [%s]},\n "files": [' \
	    $(WEB_SIZE) $(WEB_SIZE) $(WEB_FRAMES) $(WEB_STEPS) $(WEB_FPS) "$$extra"; \
	  find model $$hint -type f ! -name '.*' | LC_ALL=C sort | { sep=''; while read -r f; do \
	    printf '%s\n  {"path": "%s", "size": %d}' "$$sep" "$$f" $$(wc -c < "$$f"); sep=','; done; }; \
	  printf '\n]}\n'; } > files.json
	@echo "wrote $(WEB_OUT)/ ($$(du -sh $(WEB_OUT) | cut -f1)): serve it, e.g. python3 -m http.server -b 127.0.0.1 -d $(WEB_OUT) 8000, and open http://127.0.0.1:8000/"

WEB_SHOT   ?= $(patsubst %/,%,$(WEB_OUT))_check.png
web-check: web
	python3 tools/web_check.py --dir $(WEB_OUT) --prompt "$(WEB_PROMPT)" --screenshot $(WEB_SHOT) $(WEB_CHECK_ARGS)

# The page's worker and WASI shim under node, without a browser (1 step; .ci/run, on the fixtures).
web-smoke: web
	node --no-warnings tools/web_smoke.mjs $(WEB_OUT) "$(WEB_PROMPT)" 1

# Bit for bit: the quick pipeline replays (tokenizer, CLIP, UNet, VAE, DDIM and DPM-Solver++,
# the GIF and Y4M writers) by the native float32 build and by another build (SAME_BITS_EXE, run
# with SAME_BITS_RUN) must write the same bytes: mavref's float32 arithmetic is IEEE single
# precision, one rounding per operation, in a fixed order, on every platform.
SAME_BITS_CASES := pipeline_ddim_s3_imagegen pipeline_dpm_s5_hintmask
SAME_BITS_DIR   := build/same-bits
NATIVE32        := build/$(CCNAME)-f32-t1-n0-s0
same-bits:
	@$(MAKE) --no-print-directory PRECISION=32 THREADS=1 NATIVE=0 OPT=$(OPT_DEFAULT) $(NATIVE32)/mavref
	@mkdir -p $(SAME_BITS_DIR)
	@set -e; for c in $(SAME_BITS_CASES); do \
	  rm -f $(SAME_BITS_DIR)/native-$$c* $(SAME_BITS_DIR)/other-$$c*; \
	  $(NATIVE32)/mavref generate --replay vectors/f32/$$c.safetensors --out $(SAME_BITS_DIR)/native-$$c >/dev/null; \
	  $(SAME_BITS_RUN) $(SAME_BITS_EXE) generate --replay vectors/f32/$$c.safetensors --out $(SAME_BITS_DIR)/other-$$c >/dev/null; \
	  for s in .gif .y4m _latents.safetensors; do cmp $(SAME_BITS_DIR)/native-$$c$$s $(SAME_BITS_DIR)/other-$$c$$s; done; \
	  echo "same bytes as the native float32 build: $$c (GIF, Y4M, latents) from $(SAME_BITS_EXE)"; done

sanitize: $(BUILD)/mavref $(BUILD)/run_tests
	@echo "sanitized build in $(BUILD)"

# make bench: GEMM speed of a float32 NATIVE=1 OPT=-O3 threaded build (tools/bench.c), and OpenBLAS
# sgemm from a separate program when libopenblas-dev is installed (only for comparison: mavref
# never depends on it). The last lines are `NAME = NUMBER`. OpenBLAS picks its kernels by CPU
# model; where it does not know the CPU (0.3.21 on Zen 5 takes AVX2 kernels), compare with
# e.g. `OPENBLAS_CORETYPE=SkylakeX make bench` as well.
BENCH_VARS := NATIVE=1 OPT=-O3 PRECISION=32 THREADS=1

bench:
	@mkdir -p $(BUILDROOT)
	@$(MAKE) --no-print-directory $(BENCH_VARS) bench-run bench-model bench-peers bench-real 2>&1 | tee $(BUILDROOT)/bench.log
	@echo "---- summary"
	@grep -E '^[a-z0-9_]+ = ' $(BUILDROOT)/bench.log | sort -u -t= -k1,1
	@awk -F' = ' '{v[$$1]=$$2} \
	  function ratio(name, a, b) { if (v[a] != "" && v[b]+0 > 0) printf "%s = %.2f\n", name, v[a]/v[b]; else print name " = NA" } \
	  END{ ratio("unet_vs_jax", "unet_forward_s", "jax_unet_forward_s"); \
	       ratio("unet2d_vs_torch", "unet2d_64_s", "torch_unet2d_64_s"); \
	       ratio("unet2d_vs_jax", "unet2d_64_s", "jax_unet2d_64_s"); \
	       ratio("unet_full_vs_jax", "unet_full_8_s", "jax_unet_full_8_s"); \
	       if (v["generate_peak_rss_kb"]+0 > 0 && v["generate_weights_bytes"]+0 > 0) \
	         printf "generate_peak_rss_vs_weights = %.2f\n", v["generate_peak_rss_kb"]*1024/v["generate_weights_bytes"]; \
	       else print "generate_peak_rss_vs_weights = NA" }' $(BUILDROOT)/bench.log
	@awk -F' = ' '/^peak_gflops_nt = /{p=$$2} /^[a-z0-9_]+_gflops = /{n[$$1]=$$2} \
	  /^video_512x24x20_min = /{vm=$$2} /^video_512x24x20_gflop = /{vg=$$2} \
	  END{ for (k in n) { s=k; sub(/_gflops$$/, "_peak_share", s); if (p+0 > 0) printf "%s = %.3f\n", s, n[k]/p; } \
	       if (p+0 > 0 && vm+0 > 0) printf "video_vs_peak_time = %.2f\n", vm*60/(vg/p); else print "video_vs_peak_time = NA" }' $(BUILDROOT)/bench.log | sort

# The model figures: tokenizer rate, the real UNet forward at 32x32 latents, 8 frames, batch 2
# (mavref, then JAX on CPU from the exporter's environment when installed), and the peak
# memory of `mavref generate` at 512x512, 24 frames, one step (GNU time's %M, when installed),
# and one training forward + backward of the real UNet (every parameter's gradient) at 32x32
# latents, 8 frames, batch 1, keeping every stage input and with recomputation (two processes,
# so that each peak memory, VmHWM, is its own).
BENCH_HINT := $(BUILDROOT)/bench_hint.ppm
bench-model: $(BUILD)/bench_model $(BUILD)/mavref
	$(BUILD)/bench_model tokenize vectors/f32/tokenize_*.safetensors
	$(BUILD)/bench_model weights
	$(BUILD)/bench_model unet 2 8 32 32
	@if [ -x $(PY) ]; then $(PY) tools/bench_jax.py 2 8 32 32; else echo "no exporter environment: jax_unet_forward_s = NA"; fi
	$(BUILD)/bench_model train 1 8 32 32
	$(BUILD)/bench_model train 1 8 32 32 recompute
	@# the published UNet's format at the real size (issue 14): written by flax, read by mavref
	@if [ -x $(PY) ]; then $(PY) tools/bench_msgpack.py $(BUILDROOT)/bench_model_dir $(if $(filter 1,$(BENCH_SMALL)),--small) && \
	  $(BUILD)/bench_model load $(BUILDROOT)/bench_model_dir; rm -rf $(BUILDROOT)/bench_model_dir; \
	  else echo "no exporter environment: load_unet_msgpack_s = NA"; fi

# The job at the real size (issue 17): the full-size CFG step, sample (2,9,24,64,64); the VAE
# decode of 24 frames at 512x512 and the encode of one; one real training step (batch 1, 24
# frames, 64x64 latents, temporal layers only, recompute); a 2-step `mavref generate` at
# 512x512, 24 frames (peak memory, and the time of each stage, which give the 20-step video
# time video_512x24x20_min). The _gflops lines divide ref/flops.h's count by the wall time;
# `make bench` turns them into shares of the FMA peak it measured (_peak_share). Each of these
# takes minutes to an hour on a 2-core machine: BENCH_SMALL=1 runs them at a tiny size (2
# frames, 128x128 pixels) to check the wiring; its figures mean nothing.
ifeq ($(BENCH_SMALL),1)
  BENCH_PX := 128
  BENCH_FRAMES := 2
else
  BENCH_PX := 512
  BENCH_FRAMES := 24
endif
BENCH_LAT := $(shell expr $(BENCH_PX) / 8)
bench-real: $(BUILD)/bench_model $(BUILD)/mavref
	$(BUILD)/bench_model unet 2 $(BENCH_FRAMES) $(BENCH_LAT) $(BENCH_LAT) unet_full_step
	$(BUILD)/bench_model vae decode $(BENCH_FRAMES) $(BENCH_PX) $(BENCH_PX) vae_decode_512x24
	$(BUILD)/bench_model vae encode 1 $(BENCH_PX) $(BENCH_PX) vae_encode_512
	$(BUILD)/bench_model trainstep $(BENCH_FRAMES) $(BENCH_LAT) $(BENCH_LAT)
	@{ printf 'P6\n$(BENCH_PX) $(BENCH_PX)\n255\n'; head -c $$(($(BENCH_PX) * $(BENCH_PX) * 3)) /dev/zero | tr '\000' '\200'; } > $(BENCH_HINT)
	@if [ -x /usr/bin/time ]; then \
	  /usr/bin/time -f 'generate_peak_rss_kb = %M' $(BUILD)/mavref generate --prompt "a person dancing" \
	    --hint $(BENCH_HINT) --steps 2 --frames $(BENCH_FRAMES) --width $(BENCH_PX) --height $(BENCH_PX) --unet-seed 1 \
	    --vae-seed 2 --clip-seed 3 --out $(BUILDROOT)/bench_generate 2> $(BUILDROOT)/bench_generate.err; \
	  cat $(BUILDROOT)/bench_generate.err; \
	  sed -e 's/[:,()]/ /g' $(BUILDROOT)/bench_generate.err | awk ' \
	    $$1 == "work" { for (i = 2; i < NF; i++) { if ($$i == "text") clip = $$(i + 1); if ($$i == "hint") hint = $$(i + 1); \
	                                                if ($$i == "x") step = $$(i + 1); if ($$i == "frames") dec = $$(i + 1); } } \
	    $$1 == "times" { for (i = 2; i < NF; i++) { if ($$i == "text") tt = $$(i + 1); if ($$i == "hint") th = $$(i + 1); \
	                                                 if ($$i == "per") ps = $$(i - 2); if ($$i == "decode") td = $$(i + 1); } \
	      printf "generate_text_s = %s\ngenerate_hint_s = %s\ngenerate_step_s = %s\ngenerate_decode_s = %s\n", tt, th, ps, td; \
	      printf "video_512x24x20_min = %.1f\n", (tt + th + 20 * ps + td) / 60; \
	      printf "video_512x24x20_gflop = %.0f\n", clip + hint + 20 * step + dec; }'; \
	else echo "no /usr/bin/time: generate_peak_rss_kb = NA"; fi

# The peers at the real size (issue 17): SD 1.5's 2-D UNet on 64x64 latents, batch 2 (mavref,
# diffusers' PyTorch UNet2DConditionModel on CPU from the conformance environment, diffusers'
# FlaxUNet2DConditionModel on JAX's CPU from the exporter's), and the makeavid UNet on sample
# (2,9,8,64,64) (mavref, JAX): unet2d_vs_torch, unet2d_vs_jax, unet_full_vs_jax (mavref's time
# over the peer's: below 1 is faster). Every one on the same threads, and each the second of two
# calls (bench_model's `warm`; the first call pays the page faults of every buffer).
BENCH_PEER_FRAMES := $(if $(filter 1,$(BENCH_SMALL)),2,8)
bench-peers: $(BUILD)/bench_model
	$(BUILD)/bench_model unet2d 2 $(BENCH_LAT) $(BENCH_LAT) unet2d_64 warm
	@if [ -x $(TORCH_PY) ]; then $(TORCH_PY) tools/bench_torch.py 2 $(BENCH_LAT) $(BENCH_LAT) unet2d_64; \
	  else echo "no PyTorch environment (make conformance-env): torch_unet2d_64_s = NA"; fi
	@if [ -x $(PY) ]; then $(PY) tools/bench_jax.py 2d 2 $(BENCH_LAT) $(BENCH_LAT) unet2d_64; \
	  else echo "no exporter environment: jax_unet2d_64_s = NA"; fi
	$(BUILD)/bench_model unet 2 $(BENCH_PEER_FRAMES) $(BENCH_LAT) $(BENCH_LAT) unet_full_8 warm
	@if [ -x $(PY) ]; then $(PY) tools/bench_jax.py 2 $(BENCH_PEER_FRAMES) $(BENCH_LAT) $(BENCH_LAT) unet_full_8; \
	  else echo "no exporter environment: jax_unet_full_8_s = NA"; fi

$(BUILD)/bench_model: $(BUILD)/tools/bench_model.o $(BUILD)/libmavref.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

bench-run: $(BUILD)/bench
	@if $(CC) -std=c99 -O2 -I/usr/include/openblas -o $(BUILD)/bench_openblas tools/bench_openblas.c -lopenblas 2>/dev/null; then \
	  echo "OpenBLAS sgemm for comparison (tools/bench_openblas.c) ..."; \
	  $(BUILD)/bench_openblas > $(BUILD)/openblas.txt && $(BUILD)/bench $(BUILD)/openblas.txt; \
	else \
	  echo "OpenBLAS not installed: no comparison (apt-get install libopenblas-dev)"; \
	  $(BUILD)/bench; \
	fi

$(BUILD)/tools/%.o: tools/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# Only the objects it needs, so that the bench builds whatever state other operators are in.
BENCH_OBJ := $(addprefix $(BUILD)/ref/,gemm.o threads.o error.o)
$(BUILD)/bench: $(BUILD)/tools/bench.o $(BENCH_OBJ)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

# make fuzz FUZZER=<name> [FUZZ_TIME=seconds | FUZZ_RUNS=n]: a libFuzzer harness
# (tools/fuzz/fuzz_<name>.c) built with clang -fsanitize=fuzzer,address,undefined, leak
# detection on, started from its seed corpus tools/fuzz/corpus/<name>/; new inputs go to
# $(BUILDROOT)/fuzz-f$(PRECISION)/corpus-<name>/, crashes to $(BUILDROOT)/fuzz-f$(PRECISION)/.
# Needs clang's libFuzzer runtime (Debian: libclang-rt-14-dev or the clang package).
FUZZERS    := $(patsubst tools/fuzz/fuzz_%.c,%,$(wildcard tools/fuzz/fuzz_*.c))
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_BUILD := $(BUILDROOT)/fuzz-f$(PRECISION)
FUZZ_FLAGS := -std=c99 -pedantic -Wall -Wextra -Werror -g -O1 -DMAVREF_PRECISION=$(PRECISION) \
              -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_LIMIT := $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_TIME))

# the library objects are kept (not intermediates to delete) for the next harness
.PRECIOUS: $(FUZZ_BUILD)/ref/%.o
$(FUZZ_BUILD)/ref/%.o: ref/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tools/fuzz/fuzz_%.c tools/fuzz/fuzz_util.h $(patsubst ref/%.c,$(FUZZ_BUILD)/ref/%.o,$(LIB_SRC))
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) -lm

fuzz:
	@test -n "$(filter $(FUZZER),$(FUZZERS))" || { echo "FUZZER must be one of: $(FUZZERS)"; exit 2; }
	@$(MAKE) --no-print-directory $(FUZZ_BUILD)/fuzz_$(FUZZER)
	@mkdir -p $(FUZZ_BUILD)/corpus-$(FUZZER)
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_BUILD)/fuzz_$(FUZZER) -artifact_prefix=$(FUZZ_BUILD)/$(FUZZER)- \
	  $(FUZZ_LIMIT) $(FUZZ_ARGS) $(FUZZ_BUILD)/corpus-$(FUZZER) tools/fuzz/corpus/$(FUZZER)

# make valgrind: the quick unit tests and corpus under valgrind's memcheck (leaks included).
valgrind: $(BUILD)/run_tests
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  $(BUILD)/run_tests --vectors vectors --level quick $(TESTARGS)

# make check-spec: every section, file and function SPEC.md cites exists (python3, stdlib only).
check-spec:
	python3 tools/check_spec.py

# make conformance-env: the PyTorch environment of the conformance adapters (tools/backends/):
# Debian's CPU torch (apt-get install python3-torch) seen through a venv, plus the pins of
# tools/torch-requirements.lock (diffusers 0.16.1, transformers 4.30.2, ...).
TORCH_PY := tools/.torch-venv/bin/python
conformance-env:
	@/usr/bin/python3 -c 'import torch, numpy' || { echo "needs Debian's torch: apt-get install python3-torch"; exit 1; }
	/usr/bin/python3 -m venv --system-site-packages tools/.torch-venv
	$(TORCH_PY) -m pip install --quiet --no-deps -r tools/torch-requirements.lock
	HF_HUB_OFFLINE=1 $(TORCH_PY) -c 'import diffusers, transformers, tokenizers, safetensors, ftfy; from transformers import CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast; print("conformance-env: torch", __import__("torch").__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)'

# make conformance: the PyTorch adapters over the corpus (f32 and f64, `mavref check`),
# the table in out/conformance.md (README.md, section Conformance). CONF_LEVEL=quick: a short run;
# MAVREF_MAKEAVID_TORCH_IMPL=/path/to/makeavid-sd-tpu adds upstream's PyTorch port.
CONF_LEVEL ?= full
conformance: bin/mavref
	@test -x $(TORCH_PY) || { echo "run 'make conformance-env' first"; exit 1; }
	OMP_NUM_THREADS=2 MAVREF_THREADS=2 $(TORCH_PY) tools/backends/conformance.py --level $(CONF_LEVEL) $(CONFORMANCE_ARGS)

tools-env:
	python3 -m venv tools/.venv
	$(PY) -m pip install --quiet --no-deps -r tools/requirements.lock
	$(PY) -m pip check

vectors:
	@test -x $(PY) || { echo "run 'make tools-env' first"; exit 1; }
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/export_vectors.py --out vectors
	$(PY) tools/contract.py --vectors vectors

# The other implementations `mavref check` runs (tools/backends/): PyTorch from Debian
# (apt-get install python3-torch: 1.13.1 for /usr/bin/python3), the rest pinned from PyPI.
BACKENDS_PY := tools/backends/.venv/bin/python
backends-env:
	/usr/bin/python3 -m venv --system-site-packages tools/backends/.venv
	$(BACKENDS_PY) -m pip install --quiet safetensors==0.4.5 diffusers==0.16.1 huggingface_hub==0.14.1 transformers==4.30.2

# make conformance-hf [CHECK_LEVEL=full]: the ops each backend covers, both precisions; the tables go
# to $(BUILDROOT)/conformance-<backend>-f<precision>.txt. Failures are findings, not errors.
TORCH_FWD   := activation,dense,layernorm,groupnorm,conv2d,temporal_conv,geglu,attention_self,attention_cross,attention_temporal,attention_clip,upsample_nearest,timestep_embedding,sched_add_noise
TORCH_GRAD  := activation_grad,dense_grad,layernorm_grad,groupnorm_grad,conv2d_grad,temporal_conv_grad,geglu_grad,attention_self_grad,attention_cross_grad,attention_temporal_grad,upsample_nearest_grad,timestep_embedding_grad
TORCH_OPS   := $(TORCH_FWD),$(TORCH_GRAD),resnet,downsample,upsample,transformer
NUMPY_OPS   := activation,dense,layernorm,groupnorm,conv2d,geglu,upsample_nearest
# quick by default (one Python process per case: ~10 s each on a loaded 2-core machine)
CHECK_LEVEL ?= quick
CONFORMANCE_LEVEL := $(CHECK_LEVEL)
conformance-hf: $(BUILD)/mavref
	@test -x $(BACKENDS_PY) || { echo "run 'make backends-env' first"; exit 1; }
	@mkdir -p $(BUILDROOT)
	@for p in 32 64; do \
	  $(BUILD)/mavref check --backend '$(BACKENDS_PY) tools/backends/torch_hf.py {case} {out}' --ops '$(TORCH_OPS)' \
	    --precision $$p --level $(CONFORMANCE_LEVEL) --timeout 300 > $(BUILDROOT)/conformance-torch-f$$p.txt; \
	  $(BUILD)/mavref check --backend '$(BACKENDS_PY) tools/backends/numpy_ops.py {case} {out}' --ops '$(NUMPY_OPS)' \
	    --precision $$p --level $(CONFORMANCE_LEVEL) --timeout 300 > $(BUILDROOT)/conformance-numpy-f$$p.txt; \
	done; \
	python3 tools/conformance_table.py "diffusers/transformers f32=$(BUILDROOT)/conformance-torch-f32.txt" \
	  "diffusers/transformers f64=$(BUILDROOT)/conformance-torch-f64.txt" "numpy f32=$(BUILDROOT)/conformance-numpy-f32.txt" \
	  "numpy f64=$(BUILDROOT)/conformance-numpy-f64.txt"

# make flax-port-demo [FLAX_DEMO_LEVEL=full]: tools/backends/flax_port.py (the exporter's FLAX UNet
# as a `mavref check` adapter) in its variants over the unet cases, f32 and f64; the transcript goes
# to out/flax_port_demo.txt (committed: tools/backends/flax_port_demo.txt). Needs make tools-env.
FLAX_DEMO_LEVEL ?= quick
flax-port-demo: bin/mavref
	@test -x $(PY) || { echo "run 'make tools-env' first"; exit 1; }
	PY=$(PY) MAVREF=bin/mavref LEVEL=$(FLAX_DEMO_LEVEL) OUT=out/flax_port_demo.txt sh tools/backends/flax_port_demo.sh

# vectors/contract.json from the manifest and the files' headers (standard library only)
contract:
	python3 tools/contract.py --vectors vectors

# The checkpoint readers' fixtures: files written by flax.serialization.to_bytes and torch.save
# (Debian's python3-torch for /usr/bin/python3: apt-get install python3-torch), with the values
# the libraries hold, for tests/test_checkpoint.c.
ckpt-fixtures:
	@test -x $(PY) || { echo "run 'make tools-env' first"; exit 1; }
	JAX_PLATFORMS=cpu $(PY) tools/ckpt_fixtures.py vectors/checkpoint

# The main job on the embedded default: `mavref generate` replays a recorded FLAX pipeline run
# (a small makeavid-shaped configuration with procedural weights, shipped in vectors/), writes
# out/demo.gif and out/demo.y4m, and reports how closely its final latents match FLAX's.
DEMO_CASE := vectors/f$(PRECISION)/pipeline_dpm_s5_hintmask.safetensors
# DEMO_CHECK: the toy model (vectors/toy, issue 15) against the FLAX pipeline on the same
# weights, prompt and noise: replays the exporter's text-only case and prints how closely the
# final latents match (`make toy-cases` writes the cases).
DEMO_CHECK ?= ./bin/mavref generate --replay vectors/toy/pipeline_imagegen_f$(PRECISION).safetensors --out out/demo_flax --quiet
# make demo: the toy model of vectors/toy/ (trained by mavref, `make toy-model`) makes a video
# from text alone (its 2-D UNet draws the first frame), then one from a given first frame.
TOY_GEN := --model vectors/toy/makeavid --frames 12 --width 64 --height 64 --steps 12 --guidance 5 --fps 8 --gif-scale 4
demo: bin/mavref
	@mkdir -p out
	./bin/mavref generate $(TOY_GEN) --hint-model vectors/toy/hint --prompt "a red bar moving right" --seed 1 --out out/demo
	./bin/mavref toyworld --clips 1 --held-out --seed 1 --out out/demo_clip.safetensors --first-frame out/demo_first.ppm
	./bin/mavref generate $(TOY_GEN) --hint out/demo_first.ppm --prompt "a yellow bar moving down" --seed 2 --out out/demo_hint
	$(DEMO_CHECK)

# make toy-model: every weight of vectors/toy/ from scratch (tools/toy_model.sh, SPEC.md 10.5),
# with a float32 NATIVE=1 build: its GEMM kernel fuses multiply-adds (any x86-64 with FMA gives
# the same bits: -march=native with AVX-512 and -march=haswell were checked equal); the same
# bits as the committed files (vectors/toy/SHA256SUMS) for any thread count.
TOY_BUILD := build/$(CCNAME)-f32-t1-n1-s0
toy-model:
	@$(MAKE) --no-print-directory PRECISION=32 THREADS=1 NATIVE=1 OPT=$(OPT_DEFAULT) $(TOY_BUILD)/mavref
	sh tools/toy_model.sh $(TOY_BUILD)/mavref

# The FLAX pipeline on the toy model's folders (vectors/toy/makeavid, vectors/toy/hint: make
# toy-model), text only and with a toy-world first frame: vectors/toy/pipeline_*_f{64,32}
# (tools/toy_flax.py; float64 first, the float32 tolerance is measured against it).
toy-cases:
	@test -x $(PY) || { echo "run 'make tools-env' first"; exit 1; }
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/toy_flax.py f64
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/toy_flax.py f32

# make install PREFIX=/usr/local [PRECISION=64]: the library, its headers under
# PREFIX/include/mavref/, the command and a pkg-config file. The headers' `real` follows
# MAVREF_PRECISION, so mavref.pc passes the installed build's value to the compiler.
PREFIX ?= /usr/local
INSTALL_HEADERS := $(wildcard ref/*.h)
install: $(BUILD)/libmavref.a $(BUILD)/mavref
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/mavref $(DESTDIR)$(PREFIX)/bin
	cp $(BUILD)/libmavref.a $(DESTDIR)$(PREFIX)/lib/
	cp $(INSTALL_HEADERS) $(DESTDIR)$(PREFIX)/include/mavref/
	cp $(BUILD)/mavref $(DESTDIR)$(PREFIX)/bin/
	{ echo 'prefix=$(PREFIX)'; echo 'libdir=$${prefix}/lib'; echo 'includedir=$${prefix}/include'; echo; \
	  echo 'Name: mavref'; echo 'Description: portable C99 reference implementation of Make-A-Video SD ($(if $(filter 64,$(PRECISION)),float64,float32))'; \
	  echo 'Version: 0.1'; echo 'Cflags: -I$${includedir} -DMAVREF_PRECISION=$(PRECISION)'; \
	  echo 'Libs: -L$${libdir} -lmavref -lm$(if $(filter 1,$(THREADS)), -pthread)'; } > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mavref.pc

install-test:
	tools/example_install/test.sh $(PRECISION)

clean:
	rm -rf build bin

FORCE:

# make torch-env: the PyTorch side of the checkpoint fixtures, a venv over Debian's CPU torch
# (apt-get install python3-torch: 1.13.1) with diffusers 0.16.1 and transformers 4.30.2.
# make fixtures: vectors/model/ (small published-format folders, an LDM single file) and the
# parameters the Flax libraries load from them (vectors/model/expected/), see tools/fixtures_*.py.
PYT := tools/.venv-torch/bin/python
torch-env:
	/usr/bin/python3 -m venv --system-site-packages tools/.venv-torch
	$(PYT) -m pip install diffusers==0.16.1 huggingface_hub==0.14.1 transformers==4.30.2 safetensors==0.3.1

fixtures:
	rm -rf vectors/model tools/.cache/fixtures
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/fixtures_flax.py unet
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PYT) tools/fixtures_torch.py
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/fixtures_flax.py expected
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/fixtures_flax.py pipeline f32
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/fixtures_flax.py pipeline f64
