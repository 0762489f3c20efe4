#!/usr/bin/env bash
# Decode and prefill speed of kvant-infer on generated models of the 110M
# shape (llama2.c's stories110M: dim 768, 12 layers, 12 heads, hidden 2048,
# vocab 32000, tied embeddings) and the 850M shape (dim 2048, 16 layers, 32
# heads, 8 kv heads, hidden 5632, vocab 32000), in f32, f16, q8 and q4, at 1
# and 2 threads, with the machine's read bandwidth measured in the same run;
# the quantized ones also at a 1000-token context. Keys and values are cached
# as f16 (kvant-infer run's default, as llama.cpp) unless a section says f32.
# Usage: bench/models.sh [WORKDIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-${TMPDIR:-/tmp}/kvant-models}
rounds=${2:-5}
mkdir -p "$work"
make -s build >/dev/null
go build -o "$work/gencheckpoint" ./bench/gencheckpoint

shape() {
	local name=$1; shift
	if [ ! -f "$work/$name/config.json" ]; then
		"$work/gencheckpoint" -o "$work/$name" "$@"
		# The 110M shape ties its head to the embedding.
		if [ "$name" = 110m ]; then
			sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": true/' "$work/$name/config.json"
		fi
	fi
	for t in f32 f16; do
		[ -f "$work/$name-$t.kvant" ] || bin/kvant-convert -q --no-hash "$work/$name" -o "$work/$name-$t.kvant" --dtype "$t" >/dev/null
	done
	for t in q8 q4; do
		[ -f "$work/$name-$t.kvant" ] || bin/kvant-quantize -q --no-hash "$work/$name-f32.kvant" -o "$work/$name-$t.kvant" --type "$t" --method rtn >/dev/null
	done
}
shape 110m -dim 768 -layers 12 -heads 12 -kv-heads 12 -hidden 2048 -vocab 32000
shape 850m -dim 2048 -layers 16 -heads 32 -kv-heads 8 -hidden 5632 -vocab 32000

# Each bench/models run measures the read bandwidth in every round, next
# to the models, and reports each decode's share of it.
echo "== mapped weights (the default), all types"
go run ./bench/models -rounds "$rounds" -threads 1,2 \
	"$work"/110m-{f32,f16,q8,q4}.kvant "$work"/850m-{f32,f16,q8,q4}.kvant
echo
echo "== 850M q8 and q4, mapped and --preload (weights read into huge-page memory) interleaved"
go run ./bench/models -rounds "$rounds" -threads 1,2 -load mapped,preload "$work"/850m-{q8,q4}.kvant
echo
echo "== quantized models, f16 (the default) and f32 KV cache (--kv-cache f32) interleaved, mapped weights"
go run ./bench/models -rounds "$rounds" -threads 1,2 -kv f16,f32 "$work"/110m-{q8,q4}.kvant "$work"/850m-{q8,q4}.kvant
echo
echo "== llama-bench's decode test (tg128): 128 tokens from an empty context, quantized models, mapped weights"
go run ./bench/models -rounds "$rounds" -threads 1,2 -prompt 1 -gen 128 "$work"/110m-{q8,q4}.kvant "$work"/850m-{q8,q4}.kvant
echo
echo "== decode at a 1000-token context, f16 (the default) and f32 KV cache interleaved, mapped weights"
go run ./bench/models -rounds 3 -threads 1,2 -kv f16,f32 -prompt 1000 "$work"/110m-{q8,q4}.kvant "$work"/850m-q4.kvant
