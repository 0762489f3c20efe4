#!/usr/bin/env bash
# Prints, per kernel and variant, the median throughput in GB/s of weights
# (go test -bench over package kernels, -count runs) and the speed-up over
# the pure-Go generic variant; then the machine's memory read bandwidth
# (bench/stream, a STREAM-like sum over a 1 GiB array with 1 and 2
# goroutines) measured in the same run, the ceiling for the memory-bound
# Gemv rows.
#
# Usage: bench/kernels.sh [COUNT [BENCH_REGEXP [BENCHTIME]]]
#   COUNT        runs per benchmark, median reported (default 5)
#   BENCH_REGEXP go test -bench pattern (default .)
#   BENCHTIME    go test -benchtime (default 0.3s)
# The raw go test output is kept in $TMPDIR/kvant-kernels-bench.txt (benchstat
# reads it). With RAW=FILE, the table is made from FILE, an earlier run's
# output, without running the benchmarks again.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
pattern=${2:-.}
benchtime=${3:-0.3s}
raw=${TMPDIR:-/tmp}/kvant-kernels-bench.txt

echo "# kernels: variant chosen here: $(go run ./bench/stream -print-kernels)"
if [ -n "${RAW:-}" ]; then
	raw=$RAW
else
	go test -run '^$' -bench "$pattern" -benchtime "$benchtime" -count "$count" ./kernels >"$raw"
fi
grep '^cpu:' "$raw" | head -1 || true

awk '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}
/^Benchmark/ && /MB\/s/ {
	name = $1
	sub(/^Benchmark/, "", name)
	sub(/-[0-9]+$/, "", name)
	v = name
	sub(/.*\//, "", v)
	if (v !~ /^(generic|avx2|avx512|vnni)$/) { k = name; v = "generic" } else { k = substr(name, 1, length(name) - length(v) - 1) }
	for (i = 2; i <= NF; i++) if ($(i + 1) == "MB/s") mbs = $i
	if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
	vals[k, v] = vals[k, v] " " mbs
}
END {
	nv = split("generic avx2 avx512 vnni", vs, " ")
	printf "\n%-28s", "kernel (GB/s of weights)"
	for (i = 1; i <= nv; i++) printf " %16s", vs[i]
	printf "\n"
	for (j = 1; j <= nk; j++) {
		k = order[j]
		printf "%-28s", k
		g = ((k, "generic") in vals) ? median(vals[k, "generic"]) : 0
		for (i = 1; i <= nv; i++) {
			if (!((k, vs[i]) in vals)) { printf " %16s", "-"; continue }
			m = median(vals[k, vs[i]])
			if (i > 1 && g > 0) printf " %8.2f (%4.1fx)", m / 1000, m / g
			else printf " %16.2f", m / 1000
		}
		printf "\n"
	}
}' "$raw"
echo
go run ./bench/stream -mib 1024 -threads 1,2 -passes 5
