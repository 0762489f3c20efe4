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

# The whole suite: vet, unit tests, short fuzz runs. Under 10 minutes on 2 cores.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...
	$(MAKE) --no-print-directory fuzz-short

# Every fuzz target, run briefly. Each `go test -fuzz` run takes one target.
fuzz-short:
	@./scripts/fuzz.sh $(FUZZ_SHORT)

fuzz:
	@./scripts/fuzz.sh $(FUZZ_LONG)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# The README's first command: build, then convert and inspect the embedded
# model. Later issues extend it (quantize, compare, generate).
demo: build
	@./scripts/demo.sh

clean:
	rm -rf $(BIN) out
