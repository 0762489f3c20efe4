#!/usr/bin/env bash
# The README's first command. Works on a fresh clone with no ../shared and no
# network: everything it uses is committed in testdata/. It converts the
# project's own model, quantizes it to q8 and q4, measures what each cost
# against the original, writes an HTML report, and generates with each.
set -euo pipefail
cd "$(dirname "$0")/.."
out=out/demo
mkdir -p "$out"
src=testdata/tiny-llama/st-bf16
text=testdata/tiny-llama/heldout_kjv.txt
prompt="And the LORD said unto Moses,"

step() { printf '\n== %s\n' "$*"; }

step "convert the embedded model ($src: Hugging Face directory, sharded bf16 safetensors)"
bin/kvant-convert -q "$src" -o "$out/tiny-llama.kvant" --dtype f32
bin/kvant-convert verify -q "$out/tiny-llama.kvant"

step "quantize it to q8 and q4 (groups of 32, error-minimising scale search)"
for t in q8 q4; do
	bin/kvant-quantize -q "$out/tiny-llama.kvant" -o "$out/tiny-llama-$t.kvant" --type "$t" >"$out/quantize-$t.txt"
	tail -n 1 "$out/quantize-$t.txt"
done

step "compare each with the original on held-out text ($text, llama.cpp-style windows of 128 tokens)"
bin/kvant-infer compare --base "$out/tiny-llama.kvant" --model "$out/tiny-llama-q8.kvant" -f "$text" --ctx 128 \
	--save-base "$out/base.kvb" --json >"$out/compare-q8.json" 2>/dev/null
bin/kvant-infer compare --base-logits "$out/base.kvb" --model "$out/tiny-llama-q4.kvant" -f "$text" --ctx 128 \
	--report "$out/report-q4.html" --json >"$out/compare-q4.json" 2>/dev/null
go run ./scripts/demotable "$out/compare-q8.json" "$out/compare-q4.json"
echo "HTML report: $out/report-q4.html"

step "generate from \"$prompt\" (greedy, 24 tokens)"
for m in tiny-llama tiny-llama-q8 tiny-llama-q4; do
	printf '%-16s' "$m:"
	bin/kvant-infer run -m "$out/$m.kvant" -p "$prompt" -n 24 --temp 0 2>/dev/null | tr '\n' ' '
	echo
done
