package kernels

import "fmt"

// The products below are GemvF32, MulRowsF16 with one activation row,
// WeightedSumF32 and WeightedSumF16, with the same results bit for bit,
// that also prefetch next: an array of the same shape as the one they
// read (w or v), whose same elements they ask the memory system for as
// they go, a row (or a position) at a time. next may be nil (no
// prefetching); otherwise it must hold at least as many elements as the
// product reads of w or v, or they panic.
//
// Decoding's attention is where it pays: a head's scores read its cached
// keys, then its output reads its values, each a short run fetched from
// DRAM with arithmetic in between, so each run waits for its own lines
// while the memory bus idles. Given the head's values as next, the scores
// have them requested while the keys are multiplied; given the next head's
// keys, the output has those requested while the values are summed.
// Paired decode measurements (median tok/s ratio of 10–16 alternations
// within one process, two sessions): 110M-shaped q4 model +3.2% and +5.8%
// at 2 threads, +5.1% and +4.1% at 1; q8 +2.4% to +3.2%; 850M-shaped
// (grouped-query, attention a smaller share) +0.2% to +1.7%; at a
// 1000-token context, 110M q4 +5.8% at 2 threads and +3.9% at 1.
// The pure-Go variant cannot prefetch and ignores next.

// GemvF32Next is GemvF32 that also prefetches next[:rows*cols].
func GemvF32Next(out, w []float32, rows, cols int, x, next []float32) {
	checkNext("GemvF32Next", next, rows*cols)
	if next == nil || active.dotF32RowsNext == nil {
		GemvF32(out, w, rows, cols, x)
		return
	}
	checkMul("GemvF32Next", len(out), rows, len(w), rows, cols, len(x), 1)
	active.dotF32RowsNext(out, w, rows, cols, x, next)
}

// GemvF16Next is MulRowsF16 with one activation row (out[r] = the dot
// product of the r-th f16 row of w with x) that also prefetches
// next[:rows*cols].
func GemvF16Next(out []float32, w []uint16, rows, cols int, x []float32, next []uint16) {
	checkNext("GemvF16Next", next, rows*cols)
	if next == nil || active.dotF16RowsNext == nil {
		MulRowsF16(out, rows, w, rows, cols, x, 1, nil)
		return
	}
	checkMul("GemvF16Next", len(out), rows, len(w), rows, cols, len(x), 1)
	active.dotF16RowsNext(out, w, rows, cols, x, next)
}

// WeightedSumF32Next is WeightedSumF32 that also prefetches the same
// elements of next.
func WeightedSumF32Next(out, a, v []float32, stride int, next []float32) {
	weightedSumNext("WeightedSumF32Next", out, a, v, stride, next, active.weightedSumNext, WeightedSumF32)
}

// WeightedSumF16Next is WeightedSumF16 that also prefetches the same
// elements of next.
func WeightedSumF16Next(out, a []float32, v []uint16, stride int, next []uint16) {
	weightedSumNext("WeightedSumF16Next", out, a, v, stride, next, active.weightedSumF16Next, WeightedSumF16)
}

// weightedSumNext runs the variant's prefetching weighted sum, or plain
// (the exported product) without next or without such a kernel.
func weightedSumNext[E float32 | uint16](kernel string, out, a []float32, v []E, stride int, next []E,
	prefetching func(out, a []float32, v []E, stride int, next []E),
	plain func(out, a []float32, v []E, stride int)) {
	if len(a) > 0 {
		checkNext(kernel, next, (len(a)-1)*stride+len(out))
	}
	if next == nil || prefetching == nil || len(a) == 0 || len(out) == 0 {
		plain(out, a, v, stride)
		return
	}
	checkWeightedSum(kernel, len(out), len(a), len(v), stride)
	prefetching(out, a, v, stride, next)
}

// checkNext panics if next is neither nil nor at least need elements long:
// in every variant, so that a caller's mistake shows under purego too.
func checkNext[E float32 | uint16](kernel string, next []E, need int) {
	if next != nil && len(next) < need {
		panic(fmt.Sprintf("kernels: %s: next holds %d elements, the product reads %d", kernel, len(next), need))
	}
}
