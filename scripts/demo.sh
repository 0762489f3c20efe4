#!/usr/bin/env bash
# The README's first command. Works on a fresh clone with no ../shared and no
# network: everything it uses is committed in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=out/demo
mkdir -p "$out"
src=testdata/tiny-llama/st-bf16

echo "== convert the embedded model ($src: Hugging Face directory, sharded bf16 safetensors)"
bin/kvant-convert "$src" -o "$out/tiny-llama.kvant" --dtype f32
echo
echo "== inspect it"
bin/kvant-convert inspect "$out/tiny-llama.kvant" >"$out/inspect.txt"
sed -n 1,12p "$out/inspect.txt"
echo "   ..."
tail -n 1 "$out/inspect.txt"
echo
echo "== verify every tensor's checksum"
bin/kvant-convert verify -q "$out/tiny-llama.kvant"
