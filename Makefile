# mavref: a portable C99 reference implementation of Make-A-Video SD.
#
#   make                  build bin/mavref and the library (gcc, -O2, float32, pthreads)
#   make test             build and run every test and the golden corpus of this precision
#   make PRECISION=64     float64 build (runs the float64 corpus)
#   make THREADS=0        build without pthreads
#   make CC=clang         another compiler (any C99 compiler; warnings are errors)
#   make sanitize test    ASan + UBSan build, then the tests
#   make NATIVE=1         machine-specific code generation (-march=native, -O3); never the default
#   make bench            GEMM GFLOP/s (NATIVE=1 build) against the FMA peak and OpenBLAS
#   make tools-env        create the exporter's Python environment in tools/.venv (pinned)
#   make vectors          regenerate vectors/ and vectors/manifest.txt from the FLAX model
#   make demo             the main job on the embedded default
#   make clean
#
# Never add -Ofast, -ffast-math or any of their parts: this is a numerical reference.

PRECISION ?= 32
THREADS   ?= 1
NATIVE    ?= 0
OPT_DEFAULT := $(if $(filter 1,$(NATIVE)),-O3,-O2)
OPT       ?= $(OPT_DEFAULT)
CC        ?= cc

SAN := $(if $(filter sanitize,$(MAKECMDGOALS)),1,0)

CFLAGS_BASE := -std=c99 -pedantic -Wall -Wextra -Werror $(OPT) -DMAVREF_PRECISION=$(PRECISION)
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

LIB_SRC  := $(filter-out ref/cli.c,$(wildcard ref/*.c))
LIB_OBJ  := $(patsubst ref/%.c,$(BUILD)/ref/%.o,$(LIB_SRC))
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(TEST_SRC))
HEADERS  := $(wildcard ref/*.h tests/*.h)

PY := tools/.venv/bin/python

.PHONY: all test cross-test sanitize clean tools-env vectors demo bench bench-run FORCE

all: bin/mavref

$(BUILD)/ref/%.o: ref/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libmavref.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/mavref: $(BUILD)/ref/cli.o $(BUILD)/libmavref.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(BUILD)/libmavref.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# bin/ always holds the binaries of the configuration built last.
bin/mavref: $(BUILD)/mavref FORCE
	@mkdir -p bin
	cp $< $@

bin/run_tests: $(BUILD)/run_tests FORCE
	@mkdir -p bin
	cp $< $@

test: $(BUILD)/mavref $(BUILD)/run_tests
	$(TEST_RUNNER) $(BUILD)/run_tests --vectors vectors $(TESTARGS)

# Cross-architecture tests under qemu-user, with Debian's cross compilers (static binaries):
#   make cross-test ARCH=s390x      (big-endian)     ARCH=i386 (32-bit size_t)
#   make cross-test ARCH=aarch64    ARCH=riscv64
# Needs: apt-get install gcc-$(triplet) qemu-user. LEVEL=full runs the whole corpus.
CROSS_aarch64 := aarch64-linux-gnu
CROSS_s390x   := s390x-linux-gnu
CROSS_riscv64 := riscv64-linux-gnu
CROSS_i386    := i686-linux-gnu
QEMU_aarch64  := qemu-aarch64
QEMU_s390x    := qemu-s390x
QEMU_riscv64  := qemu-riscv64
QEMU_i386     := qemu-i386
LEVEL ?= quick
cross-test:
	@test -n "$(CROSS_$(ARCH))" || { echo "ARCH must be one of: aarch64 s390x riscv64 i386"; exit 2; }
	$(MAKE) test CC=$(CROSS_$(ARCH))-gcc BUILDROOT=build/cross-$(ARCH) LDFLAGS="-static" \
	  TEST_RUNNER=$(QEMU_$(ARCH)) TESTARGS="--level $(LEVEL) $(TESTARGS)"

sanitize: $(BUILD)/mavref $(BUILD)/run_tests
	@echo "sanitized build in $(BUILD)"

# make bench: GEMM speed of a float32 NATIVE=1 -O3 threaded build (tools/bench.c), and OpenBLAS
# sgemm from a separate program when libopenblas-dev is installed (only for comparison: mavref
# never depends on it). The last lines are `NAME = NUMBER`.
BENCH_VARS := NATIVE=1 OPT=-O3 PRECISION=32 THREADS=1

bench:
	@$(MAKE) --no-print-directory $(BENCH_VARS) bench-run

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

tools-env:
	python3 -m venv tools/.venv
	$(PY) -m pip install --quiet --no-deps -r tools/requirements.lock
	$(PY) -m pip check

vectors:
	@test -x $(PY) || { echo "run 'make tools-env' first"; exit 1; }
	JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) tools/export_vectors.py --out vectors

clean:
	rm -rf build bin

FORCE:
