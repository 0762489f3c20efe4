#!/usr/bin/env bash
# Quantizes a generated ~1.9 GB bf16 sharded checkpoint to q4 in one pass
# and checks that peak RSS stays bounded: under the largest tensor (which
# the quantizer never holds whole) plus 256 MiB, the same limit as
# bench/convert_memory.sh. Prints throughput for rtn and search.
# Usage: bench/quantize_memory.sh [WORKDIR] (reuses WORKDIR/ckpt if present)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
ckpt=$work/ckpt
mkdir -p "$work"
go build -o "$work/gencheckpoint" ./bench/gencheckpoint
CGO_ENABLED=0 go build -trimpath -o "$work/kvant-quantize" ./cmd/quantize
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
	echo "generating the checkpoint in $ckpt"
	"$work/gencheckpoint" -o "$ckpt" -dim 2048 -layers 18 -heads 32 -kv-heads 8 -hidden 5632 -vocab 32000
fi
bytes=$(du -cb "$ckpt"/*.safetensors | tail -1 | cut -f1)
largest=$((32000 * 2048 * 2)) # the embedding and the head, bf16
limit=$((largest + 256 * 1024 * 1024))
cat "$ckpt"/*.safetensors >/dev/null # warm the page cache

fail=0
for method in rtn search; do
	/usr/bin/time -v "$work/kvant-quantize" "$ckpt" -o "$work/out-$method.kvant" --type q4 --method "$method" -q --no-hash \
		2>"$work/time-$method.txt" >"$work/report-$method.txt"
	rss_kb=$(grep 'Maximum resident set size' "$work/time-$method.txt" | awk '{print $NF}')
	secs=$(grep 'Elapsed (wall clock)' "$work/time-$method.txt" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
	cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/time-$method.txt")
	rss=$((rss_kb * 1024))
	out=$(stat -c %s "$work/out-$method.kvant")
	awk -v m="$method" -v bytes="$bytes" -v out="$out" -v rss="$rss" -v limit="$limit" -v s="$secs" -v cpu="$cpu" 'BEGIN {
		printf "q4 %-6s  %.2f GB bf16 -> %.2f GB, %.1f s wall, %.1f s CPU, %.0f MB/s of input, peak RSS %.0f MiB (limit %.0f MiB)\n",
			m, bytes/1e9, out/1e9, s, cpu, bytes/1e6/s, rss/1048576, limit/1048576
	}'
	tail -1 "$work/report-$method.txt"
	if [ "$rss" -gt "$limit" ]; then
		echo "FAIL: peak RSS above the limit"
		fail=1
	fi
	rm -f "$work/out-$method.kvant"
done
[ "$fail" = 0 ] && echo PASS
exit "$fail"
