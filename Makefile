# kvant: convert, quantize and run LLM checkpoints in pure Go.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/kvant-dev/kvant/convert.Version=$(VERSION)
# Static binaries: no cgo anywhere.
export CGO_ENABLED = 0

# Packages with fuzz targets, and how long each target runs in `make test`
# (short) and `make fuzz` (long).
FUZZ_SHORT ?= 5s
FUZZ_LONG  ?= 2m

.PHONY: all build test unit fuzz-short fuzz bench demo clean

all: build

# One binary per command directory: bin/kvant-convert, bin/kvant-quantize,
# bin/kvant-infer.
CMDS := $(notdir $(patsubst %/,%,$(dir $(wildcard cmd/*/main.go))))

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		echo "go build -o $(BIN)/kvant-$$c ./cmd/$$c"; \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kvant-$$c ./cmd/$$c || exit 1; \
	done

# The whole suite: vet, unit tests, the end-to-end tests again under every
# other kernel variant, short fuzz runs, the race detector. About 10 minutes
# on 2 cores.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...
	$(MAKE) --no-print-directory test-kernels
	$(MAKE) --no-print-directory fuzz-short
	$(MAKE) --no-print-directory race

# The runner, quantization, validation and export tests with each kernel
# variant the CPU supports forced by KVANT_KERNELS (the default run above
# used the best one). Unsupported variants fall back with a warning, so
# they are skipped here instead.
KERNEL_TESTS := ./model/ ./infer/ ./eval/ ./quant/... ./export/
test-kernels:
	@for v in $$($(GO) run ./bench/stream -list-kernels); do \
		echo "KVANT_KERNELS=$$v go test $(KERNEL_TESTS)"; \
		KVANT_KERNELS=$$v $(GO) test -count=1 -timeout 5m $(KERNEL_TESTS) || exit 1; \
	done

# Every fuzz target, run briefly. Each `go test -fuzz` run takes one target.
fuzz-short:
	@./scripts/fuzz.sh $(FUZZ_SHORT)

fuzz:
	@./scripts/fuzz.sh $(FUZZ_LONG)

.PHONY: race scale test-kernels

# The parallel code under the race detector: the quantization pipeline,
# the kernels' worker pool, format's parallel Verify and the runner that
# uses them. -short keeps it short: 40 s with a warm build cache, 3.4 min
# cold on a loaded 2-core machine (mostly compiling for -race). The race
# detector needs cgo, so only these test binaries are built with it.
race:
	@command -v $${CC:-gcc} >/dev/null || { echo "race: the race detector needs cgo and a C compiler; install gcc"; exit 1; }
	CGO_ENABLED=1 $(GO) test -race -short -count=1 -timeout 6m ./quant/... ./kernels/ ./format/ ./model/ ./infer/

# Convert and quantize a 7B-shaped dense checkpoint and quantize a
# 70B-shaped sparse one, checking peak RSS (docs/scale.md). Needs about
# 45 GB of free disk and an hour; SCALE_DIR sets the work directory.
scale:
	CGO_ENABLED=0 ./bench/scale.sh $(or $(SCALE_DIR),/tmp/kvant-scale)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# The README's first command: build, convert the embedded model, quantize it
# to q8 and q4, compare each with the original (table and HTML report) and
# generate with each. No ../shared, no network; about 30 s on 2 cores.
demo: build
	@./scripts/demo.sh

clean:
	rm -rf $(BIN) out
