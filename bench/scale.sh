#!/usr/bin/env bash
# Scale run (make scale): converts and quantizes a 7B-shaped checkpoint of
# real (dense, pseudo-random) bf16 data and quantizes a Llama-2-70B-shaped
# sparse checkpoint, measuring peak RSS and throughput of each step with
# /usr/bin/time -v. Fails if a conversion's peak RSS reaches 2 GiB, if an
# output does not verify, or if the disk is too small to start a step.
# docs/scale.md explains the shapes and records the figures.
#
# Usage: bench/scale.sh [WORKDIR]     (default /tmp/kvant-scale)
# SCALE_PARTS selects the parts, default "7b 70b".
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/kvant-scale}
parts=${SCALE_PARTS:-7b 70b}
limit=$((2 * 1024 * 1024 * 1024)) # peak RSS limit, bytes
gib=$((1024 * 1024 * 1024))
mkdir -p "$work"
results=$work/results.txt
: >"$results"

echo "building into $work/bin"
mkdir -p "$work/bin"
export CGO_ENABLED=0
go build -o "$work/bin/gencheckpoint" ./bench/gencheckpoint
go build -trimpath -o "$work/bin/kvant-convert" ./cmd/convert
go build -trimpath -o "$work/bin/kvant-quantize" ./cmd/quantize
bin=$work/bin

say() { echo "$*" | tee -a "$results"; }

# need BYTES WHAT: fail unless the work directory's file system has BYTES
# free plus a 5 GiB margin for everyone else on the machine.
need() {
	local avail
	avail=$(df --output=avail -B1 "$work" | tail -1 | tr -d ' ')
	if [ "$avail" -lt $(($1 + 5 * gib)) ]; then
		echo "FAIL: $2 needs $(($1 / gib)) GiB + 5 GiB margin, $work has $((avail / gib)) GiB free" >&2
		exit 1
	fi
}

# measure LABEL INPUT_BYTES LIMIT CMD...: runs CMD under /usr/bin/time -v
# and records wall time, input throughput and peak RSS; with LIMIT "limit"
# it fails at 2 GiB. Verification is measured with "nolimit": it
# memory-maps the file, so its RSS counts the clean, shared page-cache pages
# it has touched (up to the file's size), not memory it allocated.
measure() {
	local label=$1 bytes=$2 check=$3
	shift 3
	local tv=$work/time-$label.txt
	if ! /usr/bin/time -v "$@" >"$work/out-$label.txt" 2>"$tv"; then
		cat "$tv" "$work/out-$label.txt" >&2
		echo "FAIL: $label: command failed" >&2
		exit 1
	fi
	local rss_kb secs
	rss_kb=$(grep 'Maximum resident set size' "$tv" | awk '{print $NF}')
	secs=$(grep 'Elapsed (wall clock)' "$tv" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
	awk -v l="$label" -v b="$bytes" -v s="$secs" -v r="$rss_kb" 'BEGIN {
		printf "%-24s %8.1f s  %6.3f GB/s of input (%.2f GB)  peak RSS %5.0f MiB\n", l, s, b/1e9/s, b/1e9, r/1024 }' | tee -a "$results"
	if [ "$check" = limit ] && [ $((rss_kb * 1024)) -ge "$limit" ]; then
		echo "FAIL: $label: peak RSS $((rss_kb / 1024)) MiB, limit 2048 MiB" >&2
		exit 1
	fi
}

shard_bytes() { du -cb --apparent-size "$1"/*.safetensors | tail -1 | cut -f1; }
disk_bytes() { du -c -B1 "$1"/*.safetensors | tail -1 | cut -f1; }

say "kvant scale run, $(date -u +%FT%TZ), $(nproc) CPUs, $(git describe --always --dirty 2>/dev/null || echo dev)"

for part in $parts; do
	case $part in
	7b)
		# Llama-2-7B's shape, dense data: 13.5 GB of bf16 written for
		# real, converted to bf16 (the source's dtype) and quantized.
		ck=$work/ckpt-7b
		need $((30 * gib)) "the 7B part (13.5 GB checkpoint, 13.5 GB conversion)"
		rm -rf "$ck"
		t0=$(date +%s.%N)
		"$bin/gencheckpoint" -o "$ck" -dim 4096 -layers 32 -heads 32 -kv-heads 32 -hidden 11008 -vocab 32000 -shard-size 10000000000
		t1=$(date +%s.%N)
		in=$(shard_bytes "$ck")
		say "$(awk -v a="$t0" -v b="$t1" -v n="$in" 'BEGIN { printf "7B dense checkpoint: %.2f GB in %.1f s", n/1e9, b-a }')"
		measure 7b-convert "$in" limit "$bin/kvant-convert" "$ck" -o "$work/7b.kvant" -q --no-hash
		measure 7b-convert-verify "$(stat -c %s "$work/7b.kvant")" nolimit "$bin/kvant-convert" verify "$work/7b.kvant" -q
		rm -f "$work/7b.kvant"
		measure 7b-quantize-q4 "$in" limit "$bin/kvant-quantize" "$ck" -o "$work/7b-q4.kvant" --type q4 -q --no-hash
		say "7B q4 output: $(stat -c %s "$work/7b-q4.kvant") bytes"
		measure 7b-q4-verify "$(stat -c %s "$work/7b-q4.kvant")" nolimit "$bin/kvant-convert" verify "$work/7b-q4.kvant" -q
		rm -rf "$work/7b-q4.kvant" "$ck"
		;;
	70b)
		# Llama-2-70B's shape, sparse: 138 GB that reads as written but
		# takes a few MB of disk. Its bf16 conversion would be 138 GB
		# of real disk, so only the one-pass quantization runs here.
		ck=$work/ckpt-70b
		need $((42 * gib)) "the 70B part (a ~39 GB q4 output)"
		rm -rf "$ck"
		t0=$(date +%s.%N)
		"$bin/gencheckpoint" -o "$ck" -sparse -dim 8192 -layers 80 -heads 64 -kv-heads 8 -hidden 28672 -vocab 32000 -shard-size 10000000000
		t1=$(date +%s.%N)
		in=$(shard_bytes "$ck")
		say "$(awk -v a="$t0" -v b="$t1" -v n="$in" -v d="$(disk_bytes "$ck")" 'BEGIN { printf "70B sparse checkpoint: %.2f GB (%.1f MB on disk) in %.1f s", n/1e9, d/1e6, b-a }')"
		measure 70b-quantize-q4 "$in" limit "$bin/kvant-quantize" "$ck" -o "$work/70b-q4.kvant" --type q4 -q --no-hash
		say "70B q4 output: $(stat -c %s "$work/70b-q4.kvant") bytes"
		measure 70b-q4-verify "$(stat -c %s "$work/70b-q4.kvant")" nolimit "$bin/kvant-convert" verify "$work/70b-q4.kvant" -q
		rm -rf "$work/70b-q4.kvant" "$ck"
		;;
	*)
		echo "unknown part $part (want 7b or 70b)" >&2
		exit 2
		;;
	esac
done
say "PASS: convert and quantize under 2 GiB peak RSS, every output verified"
rm -rf "$work/bin"
