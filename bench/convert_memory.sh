#!/usr/bin/env bash
# Converts a generated ~1.9 GB bf16 sharded checkpoint and checks that peak
# RSS stays under the largest tensor plus 256 MiB; compares throughput with
# `cat` of the same files to /dev/null. Usage: bench/convert_memory.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
ckpt=$work/ckpt
mkdir -p "$work"
go build -o "$work/gencheckpoint" ./bench/gencheckpoint
make -s build >/dev/null
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
	echo "generating the checkpoint in $ckpt"
	"$work/gencheckpoint" -o "$ckpt" -dim 2048 -layers 18 -heads 32 -kv-heads 8 -hidden 5632 -vocab 32000
fi
bytes=$(du -cb "$ckpt"/*.safetensors | tail -1 | cut -f1)
largest=$((32000 * 2048 * 2)) # the embedding and the head, bf16
limit=$((largest + 256 * 1024 * 1024))

# Warm the page cache identically for both runs, then time cat.
cat "$ckpt"/*.safetensors >/dev/null
t0=$(date +%s.%N); cat "$ckpt"/*.safetensors >/dev/null; t1=$(date +%s.%N)
cat_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

# A copy to disk with fsync is the fair floor for a converter, which must
# write and sync its output.
t0=$(date +%s.%N); cat "$ckpt"/*.safetensors >"$work/copy.bin"; sync "$work/copy.bin"; t1=$(date +%s.%N)
copy_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
rm -f "$work/copy.bin"

/usr/bin/time -v bin/kvant-convert "$ckpt" -o "$work/out.kvant" -q --no-hash 2>"$work/time.txt" >/dev/null
rss_kb=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
conv_s=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
rss=$((rss_kb * 1024))
shards=$(ls "$ckpt"/*.safetensors | wc -l)
awk -v bytes="$bytes" -v shards="$shards" -v largest="$largest" -v rss="$rss" -v limit="$limit" -v conv="$conv_s" -v cat="$cat_s" -v copy="$copy_s" 'BEGIN {
	printf "checkpoint:   %.2f GB in %d shards, largest tensor %.0f MiB\n", bytes/1e9, shards, largest/1048576
	printf "peak RSS:     %.0f MiB (limit: largest tensor + 256 MiB = %.0f MiB)\n", rss/1048576, limit/1048576
	printf "convert:      %.2f s, %.0f MB/s\n", conv, bytes/1e6/conv
	printf "cat:          %.2f s, %.0f MB/s (page cache warm for both)\n", cat, bytes/1e6/cat
	printf "cat+fsync:    %.2f s, %.0f MB/s (copy to a file on the same disk)\n", copy, bytes/1e6/copy
	printf "convert/cat:  %.1fx the time of cat to /dev/null, %.2fx the time of a synced copy\n", conv/cat, conv/copy
}'
if [ "$rss" -gt "$limit" ]; then
	echo "FAIL: peak RSS above the limit"
	exit 1
fi
echo "PASS"
